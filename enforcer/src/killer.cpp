#include "cryptnono/enforcer/killer.h"

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

namespace cryptnono::enforcer {

namespace {

// glibc 2.36 has wrappers, older ones do not; the syscalls exist since Linux 5.3.
int sys_pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int sys_pidfd_send_signal(int fd, int sig) { return static_cast<int>(::syscall(SYS_pidfd_send_signal, fd, sig, nullptr, 0)); }

KillOutcome ok() { return {KillStatus::kOk, {}}; }
KillOutcome exited() { return {KillStatus::kExited, "process exited"}; }
KillOutcome error(const std::string& what, int err) { return {KillStatus::kError, what + ": " + std::strerror(err)}; }

// Signal 0 checks existence and permission without sending anything. A pidfd names one
// process for good, so "alive" here means the very process the pidfd was opened for.
KillOutcome check_alive(int pidfd, pid_t pid) {
  if (sys_pidfd_send_signal(pidfd, 0) == 0) return ok();
  if (errno == ESRCH) return exited();
  if (errno == EPERM) return {KillStatus::kError, "not permitted to signal pid " + std::to_string(pid) + " (CAP_KILL missing?)"};
  return error("pidfd_send_signal", errno);
}

class PidfdTarget : public Target {
 public:
  PidfdTarget(UniqueFd fd, pid_t pid, const ProcReader& proc, size_t max_bytes)
      : fd_(std::move(fd)), pid_(pid), proc_(proc), max_bytes_(max_bytes) {}

  KillOutcome read_cmdline(std::string& out) override {
    auto text = proc_.cmdline(pid_, max_bytes_);
    auto alive = check_alive(fd_.get(), pid_);
    if (alive.status != KillStatus::kOk) return alive;
    if (!text) return {KillStatus::kError, text.error().message};
    out = std::move(*text);
    return ok();
  }

  KillOutcome kill() override {
    if (sys_pidfd_send_signal(fd_.get(), SIGKILL) == 0) return ok();
    if (errno == ESRCH) return exited();
    if (errno == EPERM) return {KillStatus::kError, "not permitted to kill pid " + std::to_string(pid_) + " (CAP_KILL missing?)"};
    return error("pidfd_send_signal", errno);
  }

 private:
  UniqueFd fd_;
  pid_t pid_;
  const ProcReader& proc_;
  size_t max_bytes_;
};

}  // namespace

void PidfdKiller::protect_executables(const std::vector<std::string>& paths) {
  for (const auto& path : paths) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) protected_exes_.emplace_back(st.st_dev, st.st_ino);
  }
}

PidfdKiller::PidfdKiller(ProcReader proc, pid_t self, uint64_t ticks_per_second, size_t max_cmdline_bytes)
    : proc_(std::move(proc)), self_(self), hz_(ticks_per_second), max_cmdline_bytes_(max_cmdline_bytes) {}

Opened PidfdKiller::open(pid_t pid, uint64_t start_boot_ns) {
  Opened result;
  if (pid <= 1) {
    result.outcome = {KillStatus::kProtected, "protected: pid " + std::to_string(pid)};
    return result;
  }
  if (pid == self_) {
    result.outcome = {KillStatus::kProtected, "protected: the enforcer itself"};
    return result;
  }
  if (start_boot_ns == 0) {
    result.outcome = {KillStatus::kError, "event has no start time: cannot verify the process"};
    return result;
  }
  // The pidfd first: from here on it names one process, whatever happens to the number.
  UniqueFd fd(sys_pidfd_open(pid));
  if (!fd) {
    result.outcome = errno == ESRCH ? exited() : error("pidfd_open(" + std::to_string(pid) + ")", errno);
    return result;
  }
  auto st = proc_.stat(pid);
  if (!st) {
    auto alive = check_alive(fd.get(), pid);
    result.outcome = alive.status == KillStatus::kOk ? KillOutcome{KillStatus::kError, st.error().message} : alive;
    return result;
  }
  if (st->state == 'Z' || st->state == 'X') {
    result.outcome = exited();
    return result;
  }
  if (st->start_ticks != boot_ns_to_ticks(start_boot_ns, hz_)) {
    result.outcome = {KillStatus::kReused, "pid reused (start time differs)"};
    return result;
  }
  if ((st->flags & kPfKthread) != 0) {
    result.outcome = {KillStatus::kProtected, "protected: kernel thread"};
    return result;
  }
  if (!protected_exes_.empty()) {
    struct stat exe {};
    if (::stat(proc_.path(pid, "exe").c_str(), &exe) == 0) {
      for (const auto& [dev, ino] : protected_exes_) {
        if (exe.st_dev == dev && exe.st_ino == ino) {
          result.outcome = {KillStatus::kProtected, "protected: one of the agent's own programs"};
          return result;
        }
      }
    }
  }
  if (!protected_cgroup_.empty()) {
    auto cgroup = proc_.cgroup(pid);
    if (cgroup && cgroup->rfind(protected_cgroup_, 0) == 0) {
      result.outcome = {KillStatus::kProtected, "protected: in the agent's own pod"};
      return result;
    }
  }
  // Still alive after the stat read: the stat we read was of the pidfd's process (its
  // pid cannot have been reused while it lived).
  result.outcome = check_alive(fd.get(), pid);
  if (result.outcome.status != KillStatus::kOk) return result;
  result.target = std::make_unique<PidfdTarget>(std::move(fd), pid, proc_, max_cmdline_bytes_);
  return result;
}

}  // namespace cryptnono::enforcer
