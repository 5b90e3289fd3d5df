#include "cryptnono/caps.h"

#include <sys/prctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace cryptnono {

namespace {
struct CapHandle {
  cap_t caps;
  ~CapHandle() {
    if (caps != nullptr) cap_free(caps);
  }
};
}  // namespace

Result<void> drop_capabilities(const std::vector<cap_value_t>& keep) {
  auto kept = [&](cap_value_t c) { return std::find(keep.begin(), keep.end(), c) != keep.end(); };
  // The bounding set can only be shrunk while CAP_SETPCAP is still effective, so it goes
  // first. Without CAP_SETPCAP (already dropped by the runtime) EPERM is expected and fine.
  for (cap_value_t c = 0; c <= CAP_LAST_CAP; ++c) {
    if (kept(c) || !CAP_IS_SUPPORTED(c)) continue;
    if (cap_drop_bound(c) != 0 && errno != EPERM && errno != EINVAL)
      return fail(std::string("cannot drop bounding capability: ") + std::strerror(errno));
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    return fail(std::string("cannot clear ambient capabilities: ") + std::strerror(errno));
  CapHandle h{cap_init()};  // all clear
  if (h.caps == nullptr) return fail("cap_init failed");
  if (!keep.empty()) {
    for (auto flag : {CAP_EFFECTIVE, CAP_PERMITTED}) {
      if (cap_set_flag(h.caps, flag, static_cast<int>(keep.size()), keep.data(), CAP_SET) != 0)
        return fail("cap_set_flag failed");
    }
  }
  if (cap_set_proc(h.caps) != 0) return fail(std::string("cannot set capabilities: ") + std::strerror(errno));
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return fail(std::string("cannot set no_new_privs: ") + std::strerror(errno));
  return {};
}

bool has_capability(cap_value_t cap) {
  CapHandle h{cap_get_proc()};
  if (h.caps == nullptr) return false;
  cap_flag_value_t v = CAP_CLEAR;
  return cap_get_flag(h.caps, cap, CAP_EFFECTIVE, &v) == 0 && v == CAP_SET;
}

std::string effective_capabilities() {
  std::string out;
  for (cap_value_t c = 0; c <= CAP_LAST_CAP; ++c) {
    if (!CAP_IS_SUPPORTED(c) || !has_capability(c)) continue;
    char* name = cap_to_name(c);
    if (!out.empty()) out += ",";
    out += name != nullptr ? name : std::to_string(c);
    cap_free(name);
  }
  return out.empty() ? "none" : out;
}

}  // namespace cryptnono
