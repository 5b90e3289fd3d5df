// Opt-in real-time scheduling and CPU pinning for the agent's own threads
// (`--rt-priority`, `--cpus` in the collector and the enforcers).
//
// Why opt-in: on a 2-vCPU guest, pinning every thread of the pipeline to one CPU and
// running it SCHED_FIFO brought the killer-side p99 under an exec storm from 10.5 ms to
// 1.19 ms (BENCHMARKS.md, part 2), but a SCHED_FIFO thread that ever spins starves
// everything else of lower priority on its CPU (the kernel's RT throttling still leaves
// 5% by default). The agent's threads only run on events, and long CPU-bound work (a
// config reload) leaves the real-time class first (leave_realtime_scheduling).
//
// Thread safety: the functions act on the calling process's threads through the kernel
// and keep no state; they may be called from any thread.
#pragma once

#include <sched.h>

#include <string>
#include <string_view>

#include "cryptnono/result.h"

namespace cryptnono {

inline constexpr int kMinRtPriority = 1;   // SCHED_FIFO's range on Linux (sched(7))
inline constexpr int kMaxRtPriority = 99;

// Parses a CPU list as the kernel writes them (cpuset.cpus, Cpus_allowed_list, taskset
// -c): comma-separated CPU numbers and inclusive ranges, e.g. "1" or "0-1,3". Spaces
// around items are allowed. Refuses an empty list, a descending or open range, a number
// beyond CPU_SETSIZE - 1, and anything else, with a message naming the offending item.
Result<cpu_set_t> parse_cpu_list(std::string_view list);

// The canonical list form of `set` ("0-1,3"); "" for an empty set.
std::string format_cpu_list(const cpu_set_t& set);

// Range checks for the flags, before anything is loaded: `rt_priority` 0 (off) or
// kMinRtPriority..kMaxRtPriority, `cpus` "" (off) or a valid list. The message names the
// flag (--rt-priority, --cpus).
Result<void> validate_scheduling(int rt_priority, const std::string& cpus);

// Applies the CPU affinity `cpus` (a list as above; "" leaves the affinity alone) and,
// when rt_priority > 0, SCHED_FIFO at that priority (0 leaves the policy alone) to EVERY
// thread of this process (each tid in /proc/self/task, listed again until no new thread
// shows up, since a thread may start one meanwhile). Threads created afterwards inherit
// both from their creator (clone(2) copies policy, priority and affinity; ZeroMQ leaves
// them alone unless its context options ask otherwise).
//
// Needs CAP_SYS_NICE for SCHED_FIFO (or an RLIMIT_RTPRIO of at least rt_priority); the
// affinity needs nothing within the process. Call it before dropping capabilities. Each
// thread's affinity is read back: CPUs outside the process's cpuset (the container's
// CPUs) are refused instead of silently ignored, as the kernel would.
Result<void> apply_scheduling(int rt_priority, const std::string& cpus);

// Puts the calling thread back in the normal policy (SCHED_OTHER, its nice value kept),
// keeping its affinity. Needs no privilege. For threads that do long CPU-bound work (the
// enforcer's config reload compiles for seconds) and must not hold a real-time CPU.
// Does nothing when the thread is not real-time.
Result<void> leave_realtime_scheduling();

// "SCHED_FIFO 50, CPUs 1" / "SCHED_OTHER, CPUs 0-1" for the calling thread (log lines).
std::string describe_scheduling();

}  // namespace cryptnono
