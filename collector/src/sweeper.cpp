#include "cryptnono/collector/sweeper.h"

#include <algorithm>
#include <limits>

namespace cryptnono::collector {

std::optional<ScannedProcess> Sweeper::scan(pid_t pid, SweepResult* result) const {
  SweepResult ignored;
  SweepResult& r = result != nullptr ? *result : ignored;
  if (pid == options_.self) return std::nullopt;
  auto st = proc_.stat(pid);
  if (!st) {
    ++r.vanished;
    return std::nullopt;
  }
  if ((st->flags & kPfKthread) != 0) {
    ++r.kernel_threads;
    return std::nullopt;
  }
  ScannedProcess p;
  bool truncated = false;
  auto cmdline = proc_.cmdline(pid, options_.max_argv_bytes, &truncated);
  if (!cmdline) {
    ++r.vanished;
    return std::nullopt;
  }
  // Kernel threads have no argument area; neither do zombies, which cannot run anything.
  if (cmdline->empty()) {
    ++r.kernel_threads;
    return std::nullopt;
  }
  auto ids = proc_.ids(pid);
  if (!ids) {
    ++r.vanished;
    return std::nullopt;
  }
  p.pid = pid;
  p.ppid = st->ppid;
  p.uid = ids->first;
  p.gid = ids->second;
  const uint64_t hz = std::max<uint64_t>(options_.ticks_per_second, 1);
  p.start_boot_ns = st->start_ticks * (1'000'000'000ull / hz);
  p.comm = std::move(st->comm);
  p.argv = std::move(*cmdline);
  p.argv_truncated = truncated;
  p.argv_full_length = static_cast<uint32_t>(std::min<size_t>(p.argv.size(), std::numeric_limits<uint32_t>::max()));
  // exe needs ptrace-read access to the process: without it (other users' processes once
  // capabilities are dropped) the filename stays empty and argv[0] stands for it.
  if (auto exe = proc_.exe(pid)) p.filename = std::move(*exe);
  if (auto cg = proc_.cgroup(pid)) p.cgroup_name = cgroup_tail(*cg, options_.cgroup_components);
  ++r.reported;
  return p;
}

SweepResult Sweeper::sweep(const std::function<void(const ScannedProcess&)>& report) const {
  SweepResult r;
  for (pid_t pid : proc_.list_pids()) {
    if (auto p = scan(pid, &r)) report(*p);
  }
  return r;
}

}  // namespace cryptnono::collector
