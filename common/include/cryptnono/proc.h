// Reading /proc, behind a root path that tests can point at a fixture tree. Shared by
// the collector's sweep and the enforcer's identity check and full-cmdline reads.
// Thread-safe (holds only the root path).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cryptnono/result.h"

namespace cryptnono {

struct ProcStat {
  pid_t pid = 0;
  std::string comm;
  char state = '?';
  pid_t ppid = 0;
  uint64_t flags = 0;             // task flags (PF_KTHREAD = 0x00200000)
  uint64_t start_ticks = 0;       // field 22: start time since boot in clock ticks
};

inline constexpr uint64_t kPfKthread = 0x00200000;

class ProcReader {
 public:
  explicit ProcReader(std::string root = "/proc") : root_(std::move(root)) {}

  const std::string& root() const { return root_; }
  // Numeric entries of the root, ascending.
  std::vector<pid_t> list_pids() const;
  Result<ProcStat> stat(pid_t pid) const;
  // Raw NUL-separated argument area as /proc shows it (may have been rewritten by the
  // process). Reads at most max_bytes; `truncated` set when more was there.
  Result<std::string> cmdline(pid_t pid, size_t max_bytes = 8u << 20, bool* truncated = nullptr) const;
  // Real uid and gid from the status file.
  Result<std::pair<uint32_t, uint32_t>> ids(pid_t pid) const;
  // The cgroup path, preferring the v2 (0::) line, else the first v1 line with a path.
  Result<std::string> cgroup(pid_t pid) const;
  Result<std::string> exe(pid_t pid) const;
  // "<root>/<pid>/<leaf>"
  std::string path(pid_t pid, const char* leaf) const;

 private:
  std::string root_;
};

// Clock ticks per second (sysconf(_SC_CLK_TCK), 100 on Linux).
uint64_t clock_ticks_per_second();
// task->start_boottime in ns -> the tick value /proc/<pid>/stat shows (the kernel floors).
inline uint64_t boot_ns_to_ticks(uint64_t ns, uint64_t hz) { return ns / (1'000'000'000ull / hz); }

// Keeps the last `components` components of a cgroup path ("/a/b/c/d" -> "b/c/d" for 3).
std::string cgroup_tail(const std::string& path, int components = 4);

}  // namespace cryptnono
