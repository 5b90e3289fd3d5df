#include "cryptnono/exporter/container.h"

#include <vector>

namespace cryptnono::exporter {

namespace {

bool is_hex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

std::string_view strip_suffix(std::string_view s, std::string_view suffix) {
  if (s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix) s.remove_suffix(suffix.size());
  return s;
}

std::vector<std::string_view> components(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    size_t slash = path.find('/');
    auto part = path.substr(0, slash);
    if (!part.empty()) out.push_back(part);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

// A pod UID is a UUID (8-4-4-4-12 hex); static pods use a 32-hex config hash instead.
// The systemd driver writes '-' as '_' because '-' separates slice levels.
std::string pod_uid_from(std::string_view candidate) {
  if (candidate.size() != 36 && candidate.size() != 32) return {};
  std::string uid;
  uid.reserve(candidate.size());
  for (size_t i = 0; i < candidate.size(); ++i) {
    char c = candidate[i] == '_' ? '-' : candidate[i];
    bool dash_here = candidate.size() == 36 && (i == 8 || i == 13 || i == 18 || i == 23);
    bool ok = dash_here ? c == '-' : ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!ok) return {};
    uid.push_back(c);
  }
  return uid;
}

// "pod<uid>" (cgroupfs) or "kubepods[-<qos>]-pod<uid>.slice" (systemd).
std::string pod_uid_of_component(std::string_view component) {
  if (starts_with(component, "pod")) return pod_uid_from(component.substr(3));
  if (!starts_with(component, "kubepods")) return {};
  auto name = strip_suffix(component, ".slice");
  size_t pos = name.rfind("-pod");
  if (pos == std::string_view::npos) return {};
  return pod_uid_from(name.substr(pos + 4));
}

struct IdMatch {
  std::string_view runtime;
  std::string_view id;
};

// The container a single component names, if any. `parent` disambiguates a bare id.
IdMatch container_of_component(std::string_view component, std::string_view parent) {
  auto name = strip_suffix(component, ".scope");
  struct Prefix {
    std::string_view prefix;
    std::string_view runtime;
  };
  static constexpr Prefix kPrefixes[] = {
      {"cri-containerd-", "containerd"},
      {"crio-", "cri-o"},
      {"docker-", "docker"},
      {"libpod-", "podman"},
  };
  for (const auto& p : kPrefixes) {
    // Conmon's scope has an id too but holds the monitor, not the container: its id
    // fails the 64-hex check ("conmon-<id>").
    if (starts_with(name, p.prefix) && is_hex64(name.substr(p.prefix.size()))) {
      return {p.runtime, name.substr(p.prefix.size())};
    }
  }
  if (is_hex64(name)) {
    if (parent == "docker") return {"docker", name};
    // cgroupfs driver (Kubernetes: containerd or CRI-O; or containerd namespaces like
    // /default/<id>): the name does not say which runtime.
    return {"", name};
  }
  return {};
}

}  // namespace

ContainerRef parse_cgroup(std::string_view cgroup_name) {
  ContainerRef ref;
  auto parts = components(cgroup_name);
  bool under_kubepods = false;
  for (auto part : parts) {
    if (starts_with(part, "kubepods")) under_kubepods = true;
    if (ref.pod_uid.empty()) ref.pod_uid = pod_uid_of_component(part);
  }
  // A bare "pod<uid>" component only means a pod under a kubepods hierarchy (a truncated
  // name may have lost "kubepods" but keeps the pod's slice, which carries it).
  if (!ref.pod_uid.empty()) under_kubepods = true;
  // From the deepest component up: the first container found is the process's own; the
  // next different one (Docker-in-Docker: the pod's container running dockerd) is kept as
  // the outer container. Anything above that does not matter.
  for (size_t i = parts.size(); i-- > 0;) {
    auto match = container_of_component(parts[i], i > 0 ? parts[i - 1] : std::string_view{});
    if (match.id.empty()) continue;
    if (ref.container_id.empty()) {
      ref.container_id = std::string(match.id);
      ref.runtime = std::string(match.runtime);
    } else if (match.id != ref.container_id) {
      ref.outer_container_id = std::string(match.id);
      ref.outer_runtime = std::string(match.runtime);
      break;
    }
  }
  if (ref.container_id.empty()) return ref;
  if (ref.runtime == "docker") {
    ref.container_type = "docker";
  } else if (ref.runtime == "podman") {
    ref.container_type = "podman";
  } else if (ref.runtime == "containerd" || ref.runtime == "cri-o" || under_kubepods) {
    // cryptnono reports Kubernetes containers reached through the CRI as "cri".
    ref.container_type = "cri";
  }
  return ref;
}

}  // namespace cryptnono::exporter
