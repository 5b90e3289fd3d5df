// The /proc sweep: finds processes the exec probe cannot have seen (they predate the
// collector, or rewrote their command line since) and reports each as a
// ScannedProcess. Reads through a ProcReader, so tests point it at a fixture tree.
// Not thread-safe (use from one thread); holds no state between sweeps.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>

#include "cryptnono/collector/events.h"
#include "cryptnono/proc.h"

namespace cryptnono::collector {

struct SweepOptions {
  size_t max_argv_bytes = 8u << 20;  // per process; more is flagged truncated
  pid_t self = 0;                    // skipped (the collector itself); 0: skip nothing
  uint64_t ticks_per_second = 100;   // for start ticks -> boot ns
  int cgroup_components = 4;
};

struct SweepResult {
  size_t reported = 0;
  size_t kernel_threads = 0;  // skipped: PF_KTHREAD or empty cmdline (also zombies)
  size_t vanished = 0;        // exited (or became unreadable) while being read
};

class Sweeper {
 public:
  Sweeper(const ProcReader& proc, SweepOptions options) : proc_(proc), options_(options) {}

  // Calls `report` once per user process, in pid order; the ScannedProcess is valid
  // during the call only.
  SweepResult sweep(const std::function<void(const ScannedProcess&)>& report) const;

  // Reads one process; nullopt when it is a kernel thread, itself, or gone.
  std::optional<ScannedProcess> scan(pid_t pid, SweepResult* result = nullptr) const;

 private:
  const ProcReader& proc_;
  SweepOptions options_;
};

}  // namespace cryptnono::collector
