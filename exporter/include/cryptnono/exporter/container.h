// Which container (and pod) a process ran in, from its cgroup name alone, plus the seam
// where richer enrichment (pod labels, image, from the container runtime) plugs in.
//
// Cgroup names this understands (the collector sends up to the last four components):
//   containerd, systemd driver:  kubepods.slice/kubepods-burstable.slice/
//                                kubepods-burstable-pod<uid with _>.slice/cri-containerd-<64hex>.scope
//   containerd/CRI-O, cgroupfs:  /kubepods/<qos>/pod<uid>/<64hex>   (guaranteed QoS: /kubepods/pod<uid>/<64hex>)
//   CRI-O, systemd driver:       .../kubepods-<qos>-pod<uid>.slice/crio-<64hex>.scope
//   CRI-O, cgroupfs:             /kubepods/<qos>/pod<uid>/crio-<64hex>
//   Docker:                      /system.slice/docker-<64hex>.scope, /docker/<64hex>
//   Podman:                      /machine.slice/libpod-<64hex>.scope
// The deepest component that names a container wins, so a process in a nested cgroup
// inside a container (e.g. .../cri-containerd-<id>.scope/init.scope) still maps to it.
// CRI-O's and podman's conmon monitors (crio-conmon-*, libpod-conmon-*) are not containers.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace cryptnono::exporter {

struct ContainerRef {
  std::string runtime;         // "containerd", "cri-o", "docker", "podman", "" (unknown/none)
  std::string container_type;  // cryptnono's field: "cri" (Kubernetes CRI), "docker", "podman", "" (none)
  std::string container_id;    // 64 lowercase hex, "" when not in a container
  std::string pod_uid;         // "d2ed6416-812f-413b-ba53-e62d11646809", "" outside a pod
};

// Pure; never throws; any input (hostile or truncated) gives a best-effort answer.
ContainerRef parse_cgroup(std::string_view cgroup_name);

// What a runtime lookup adds to a decision line: cryptnono's `labels` and `image`.
struct Enrichment {
  std::map<std::string, std::string> labels;
  std::string image;
};

// Looks up pod labels and image for a container. Called on the exporter's loop thread for
// each decision it logs, so an implementation must answer from a cache and refresh it
// elsewhere: it must never block the loop on the container runtime.
class Enricher {
 public:
  virtual ~Enricher() = default;
  virtual Enrichment enrich(const ContainerRef& container) = 0;
};

// Until the container-runtime client lands (a later issue): empty labels and image.
class NoopEnricher final : public Enricher {
 public:
  Enrichment enrich(const ContainerRef&) override { return {}; }
};

}  // namespace cryptnono::exporter
