// Clocks shared by every stage. CLOCK_BOOTTIME is the kernel's bpf_ktime_get_boot_ns()
// and task->start_boottime base, so exec -> decision -> kill latencies compare across
// processes; CLOCK_REALTIME is only for timestamps people read.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

namespace cryptnono {

inline uint64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}
inline uint64_t boot_ns() { return clock_ns(CLOCK_BOOTTIME); }
inline uint64_t wall_ns() { return clock_ns(CLOCK_REALTIME); }

// RFC 3339 UTC with microseconds, as cryptnono's logs: 2024-01-31T16:59:32.990489Z
std::string format_timestamp(uint64_t wall_ns);

// The node name: $NODE_NAME (set from the downward API in Kubernetes), else the hostname.
std::string node_name();

}  // namespace cryptnono
