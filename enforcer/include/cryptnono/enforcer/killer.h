// Killing a process safely. A pid names a process only until it exits and the number is
// reused, so every kill goes through a pidfd after checking that the process behind it
// is the one the event named (its pidfs inode number when the event has one, else its
// start time). The decision logic talks to the Killer
// interface so it can be unit-tested without privileges; PidfdKiller is the real one.
#pragma once

#include <sys/types.h>

#include <utility>
#include <vector>

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cryptnono/fd.h"

#include "cryptnono/proc.h"

namespace cryptnono::enforcer {


enum class KillStatus {
  kOk,         // verified / read / signal sent
  kExited,     // the process is gone (or a zombie)
  kReused,     // the pid now names another process (pidfs inode or start time differs)
  kProtected,  // never killed: pid <= 1, the enforcer itself, kernel threads
  kError,      // anything else (reason says what)
};

struct KillOutcome {
  KillStatus status = KillStatus::kError;
  std::string reason;  // empty for kOk; "process exited", "protected: pid 1", ...
};

// A process whose identity was verified. Each call re-checks that it is still alive.
class Target {
 public:
  virtual ~Target() = default;
  // Reads the full NUL-separated argument area from /proc/<pid>/cmdline into `out`, then
  // confirms the process is still alive, so what was read was this process's.
  virtual KillOutcome read_cmdline(std::string& out) = 0;
  // Sends SIGKILL.
  virtual KillOutcome kill() = 0;
  // After kill(): blocks until the process has exited or the killer's exit wait is over,
  // and returns CLOCK_BOOTTIME ns when it was seen gone (0: not within the wait, or no
  // wait). Sleeping here hands the CPU to the dying process, which may be on this one.
  virtual uint64_t wait_exited() { return 0; }
};

// What an exec event says about its process beyond pid and start time (0: not known).
struct EventIdentity {
  uint64_t pidfs_ino = 0;  // the inode number pidfs gives it (Linux 6.9+)
  uint64_t exe_ino = 0;    // the exec'd file: inode number and the kernel's s_dev
  uint32_t exe_dev = 0;    //   (MKDEV encoding, major << 20 | minor)
};

struct Opened {
  KillOutcome outcome;
  std::unique_ptr<Target> target;  // set only when outcome.status == kOk
};

class Killer {
 public:
  virtual ~Killer() = default;
  // Opens the process `pid` and verifies it is the one an event named: by `id.pidfs_ino`
  // (the inode number pidfs gives it, exact) when the event has one and the kernel has
  // pidfs, else by `start_boot_ns` (CLOCK_BOOTTIME ns, compared at clock-tick resolution
  // as /proc shows it). `id.exe_*` name the file the event's exec ran, for the protection
  // of the agent's own programs.
  virtual Opened open(pid_t pid, uint64_t start_boot_ns, const EventIdentity& id = {}) = 0;
};

// The real killer: pidfd_open; fstat of the pidfd (its inode number against the event's
// pidfs_ino) or, without one, the start time in /proc/<pid>/stat; pidfd_send_signal.
// Sending SIGKILL to another user's process needs CAP_KILL. Thread-safe.
class PidfdKiller : public Killer {
 public:
  explicit PidfdKiller(ProcReader proc, pid_t self, uint64_t ticks_per_second = clock_ticks_per_second(),
                       size_t max_cmdline_bytes = 8u << 20);
  Opened open(pid_t pid, uint64_t start_boot_ns, const EventIdentity& id = {}) override;
  // Whether pidfds are pidfs files here (Linux 6.9+), so an inode number names a process.
  bool pidfs() const { return pidfs_; }
  // How long Target::wait_exited() waits for a killed process to exit (0: not at all).
  void wait_for_exit_us(unsigned us) { exit_wait_us_ = us; }

  // The agent's own processes are never killed, whatever the config says:
  //  - processes running one of these executables (compared by device and inode, so a
  //    copy or a look-alike name is not protected): the exec'd file an event names when
  //    stat() reports these programs as the kernel knows them (their device is their
  //    mount's, see exe_identity_trusted()), else a stat of /proc/<pid>/exe (a process
  //    whose /proc/<pid>/exe this enforcer may not read is not recognised that way);
  //  - processes whose cgroup path starts with this prefix: in Kubernetes, the agent's own
  //    pod (all its containers), which covers stages running as another uid.
  // Each check costs at most a stat or a read of /proc on the kill path only.
  void protect_executables(const std::vector<std::string>& paths);
  // Whether every protected program's stat() device is its mount's superblock device
  // (mountinfo), so an event's exe_dev/exe_ino compare with stat() directly. Not so on
  // e.g. a btrfs subvolume (stat reports a per-subvolume device).
  bool exe_identity_trusted() const { return exe_identity_trusted_; }
  void protect_cgroup_prefix(std::string prefix) { protected_cgroup_ = std::move(prefix); }

 private:
  ProcReader proc_;
  std::vector<std::pair<dev_t, ino_t>> protected_exes_;
  bool exe_identity_trusted_ = false;
  std::string protected_cgroup_;
  pid_t self_;
  bool pidfs_ = false;
  unsigned exit_wait_us_ = 0;
  uint64_t hz_;
  size_t max_cmdline_bytes_;
};

}  // namespace cryptnono::enforcer
