// Clients of the container runtimes the exporter asks "which pod, which image?":
// the Kubernetes CRI (gRPC over containerd's or CRI-O's unix socket) and Docker's HTTP
// API (a node's dockerd, or the dockerd of a Docker-in-Docker pod such as BinderHub's).
//
// Calls block, bounded by the timeout they are given; they are made only from the
// enricher's worker thread (enricher.h), never on the exporter's loop and never on the
// kill path. A client object is used by one thread at a time.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "cryptnono/result.h"

namespace cryptnono::exporter {

// What the runtime says about one container: its labels (for a Kubernetes container the
// kubelet's io.kubernetes.{pod.name,pod.namespace,pod.uid,container.name}) and a human
// image name ("quay.io/org/image:tag"; a digest or an id only when no name is known).
struct ContainerInfo {
  std::map<std::string, std::string> labels;
  std::string image;
};

// Why a lookup failed, as a short word (a metric label) plus the runtime's message.
struct LookupError {
  std::string kind;     // "not_found", "unavailable", "timeout", "error"
  std::string message;  // one line, for the log's reason field
};

template <class T>
using LookupResult = tl::expected<T, LookupError>;

class RuntimeClient {
 public:
  virtual ~RuntimeClient() = default;
  // Everything the runtime knows about `container_id` (64 hex), within `timeout` for all
  // the calls it takes.
  virtual LookupResult<ContainerInfo> inspect(const std::string& container_id, std::chrono::milliseconds timeout) = 0;
  // "cri" or "docker": the metric label and the prefix of error messages.
  virtual std::string_view kind() const = 0;
};

// Labels copied from a runtime are bounded: a container's labels come from its image
// (Docker: any Dockerfile LABEL), so a hostile image could otherwise flood the log line.
inline constexpr size_t kMaxLabels = 64;
inline constexpr size_t kMaxLabelKeyBytes = 256;
inline constexpr size_t kMaxLabelValueBytes = 1024;
inline constexpr size_t kMaxImageBytes = 1024;

// Adds (key, value) unless a bound is hit; returns whether it was added.
bool add_label(std::map<std::string, std::string>& labels, std::string_view key, std::string_view value);

// True for what is an image id rather than a name: "sha256:<hex>" or bare 64 hex.
bool is_image_id(std::string_view image);

// "unix:///run/containerd/containerd.sock" or "/run/containerd/containerd.sock" -> the
// path; an error for anything else (tcp endpoints are refused: the API is unauthenticated).
Result<std::string> unix_socket_path(std::string_view endpoint);

// The CRI client. `endpoint` as accepted by unix_socket_path. Connects lazily (the
// runtime may start after the exporter) and reconnects within seconds after a restart.
std::unique_ptr<RuntimeClient> make_cri_client(const std::string& socket_path);

// The Docker Engine API client (GET /containers/<id>/json, then /images/<id>/json when
// the container names its image only by id).
std::unique_ptr<RuntimeClient> make_docker_client(const std::string& socket_path);

}  // namespace cryptnono::exporter
