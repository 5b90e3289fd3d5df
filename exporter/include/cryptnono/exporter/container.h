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
//   Docker-in-Docker in a pod:   .../pod<uid>/<outer 64hex>/docker/<inner 64hex> (cgroupfs), or
//   (BinderHub's dind)           ...-pod<uid>.slice/cri-containerd-<outer>.scope/docker/<inner>,
//                                .../cri-containerd-<outer>.scope/system.slice/docker-<inner>.scope
// The deepest component that names a container wins, so a process in a nested cgroup
// inside a container (e.g. .../cri-containerd-<id>.scope/init.scope) still maps to it, and
// in Docker-in-Docker the inner (Docker) container is the one to look up; the pod's own
// container, when the name still shows it, is kept as `outer_container_id`.
// CRI-O's and podman's conmon monitors (crio-conmon-*, libpod-conmon-*) are not containers.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace cryptnono::exporter {

struct ContainerRef {
  std::string runtime;         // "containerd", "cri-o", "docker", "podman", "" (unknown/none)
  std::string container_type;  // cryptnono's field: "cri" (Kubernetes CRI), "docker", "podman", "" (none)
  std::string container_id;    // 64 lowercase hex, "" when not in a container
  std::string pod_uid;         // "d2ed6416-812f-413b-ba53-e62d11646809", "" outside a pod
  // Docker-in-Docker: the container that holds the inner runtime (the pod's container),
  // "" when there is no nesting or the name was cut above it.
  std::string outer_container_id;
  std::string outer_runtime;
};

// Pure; never throws; any input (hostile or truncated) gives a best-effort answer.
ContainerRef parse_cgroup(std::string_view cgroup_name);

// What a runtime lookup adds to a decision line: cryptnono's `labels` and `image`, or why
// there is nothing to add.
struct Enrichment {
  std::map<std::string, std::string> labels;
  std::string image;
  // Non-empty when the lookup failed: "container-lookup-failed: <why>" is appended to the
  // line's `reason`. labels/image may still hold what was found before the failure.
  std::string failure;
};

// Looks up pod labels and image for a container. Called on the exporter's loop thread for
// each decision it logs; it must never block that loop on the container runtime.
// Not thread-safe: one caller (the loop).
class Enricher {
 public:
  virtual ~Enricher() = default;
  // The answer when it is known now (cached, or nothing to look up); std::nullopt when a
  // lookup had to be started (or is already running): ask again once ready_fd() is
  // readable or the caller's own deadline has passed.
  virtual std::optional<Enrichment> try_enrich(const ContainerRef& container) = 0;
  // Asks again for a container try_enrich() answered std::nullopt for: the same answer,
  // but not counted as a new cache hit or miss.
  virtual std::optional<Enrichment> recheck(const ContainerRef& container) { return try_enrich(container); }
  // Becomes readable when answers arrive (an eventfd); -1 for enrichers that always
  // answer at once. The caller calls drain() when it is readable.
  virtual int ready_fd() const { return -1; }
  virtual void drain() {}
};

// No runtime at all (--cri-socket '' --docker-socket ''): empty labels and image.
class NoopEnricher final : public Enricher {
 public:
  std::optional<Enrichment> try_enrich(const ContainerRef&) override { return Enrichment{}; }
};

}  // namespace cryptnono::exporter
