#include "cryptnono/enforcer/killer.h"

#include <poll.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>

#include "cryptnono/clock.h"

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

// A pidfd polls readable once its process has exited (a zombie included): no signal, no
// /proc read.
KillOutcome check_running(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  int n = ::poll(&p, 1, 0);
  if (n < 0) return error("poll(pidfd)", errno);
  return n > 0 && (p.revents & POLLIN) != 0 ? exited() : ok();
}

// include/uapi/linux/magic.h
constexpr long kPidfsMagic = 0x50494446;

class PidfdTarget : public Target {
 public:
  PidfdTarget(UniqueFd fd, pid_t pid, const ProcReader& proc, size_t max_bytes, unsigned exit_wait_us)
      : fd_(std::move(fd)), pid_(pid), proc_(proc), max_bytes_(max_bytes), exit_wait_us_(exit_wait_us) {}

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

  uint64_t wait_exited() override {
    if (exit_wait_us_ == 0) return 0;
    // A pidfd polls readable once every thread of the process has exited.
    pollfd p{fd_.get(), POLLIN, 0};
    timespec limit{static_cast<time_t>(exit_wait_us_ / 1'000'000), static_cast<long>(exit_wait_us_ % 1'000'000) * 1000};
    int n = ::ppoll(&p, 1, &limit, nullptr);
    return n > 0 && (p.revents & POLLIN) != 0 ? boot_ns() : 0;
  }

 private:
  UniqueFd fd_;
  pid_t pid_;
  const ProcReader& proc_;
  size_t max_bytes_;
  unsigned exit_wait_us_;
};

// Each mount's superblock device (the "major:minor" of mountinfo), by mount id.
std::map<uint64_t, dev_t> mount_devices(const std::string& mountinfo_path) {
  std::map<uint64_t, dev_t> out;
  std::ifstream in(mountinfo_path);
  std::string line;
  while (std::getline(in, line)) {
    // "<mount id> <parent id> <major>:<minor> <root> <mount point> ..."
    unsigned long long id = 0;
    unsigned major_no = 0, minor_no = 0;
    if (std::sscanf(line.c_str(), "%llu %*u %u:%u", &id, &major_no, &minor_no) == 3) out[id] = makedev(major_no, minor_no);
  }
  return out;
}

// Whether stat() of `path` reports the device of the superblock its mount is on, as the
// kernel's inode->i_sb->s_dev.
bool stat_device_is_the_mounts(const std::string& path, dev_t st_dev, const std::map<uint64_t, dev_t>& mounts) {
  struct statx sx {};
  if (::statx(AT_FDCWD, path.c_str(), 0, STATX_MNT_ID, &sx) != 0 || (sx.stx_mask & STATX_MNT_ID) == 0) return false;
  auto it = mounts.find(sx.stx_mnt_id);
  return it != mounts.end() && it->second == st_dev;
}

// The kernel's s_dev (MKDEV: major << 20 | minor) as user space encodes a device.
dev_t user_dev(uint32_t kernel_dev) { return makedev(kernel_dev >> 20, kernel_dev & 0xfffffu); }

}  // namespace

void PidfdKiller::protect_executables(const std::vector<std::string>& paths) {
  const auto mounts = mount_devices(proc_.path(::getpid(), "mountinfo"));
  bool trusted = true;
  for (const auto& path : paths) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    protected_exes_.emplace_back(st.st_dev, st.st_ino);
    trusted = trusted && stat_device_is_the_mounts(path, st.st_dev, mounts);
  }
  exe_identity_trusted_ = trusted && !protected_exes_.empty();
}

PidfdKiller::PidfdKiller(ProcReader proc, pid_t self, uint64_t ticks_per_second, size_t max_cmdline_bytes)
    : proc_(std::move(proc)), self_(self), hz_(ticks_per_second), max_cmdline_bytes_(max_cmdline_bytes) {
  // Since Linux 6.9 a pidfd is a pidfs file whose inode number is its struct pid's, never
  // reused while the system runs (64-bit); before, every pidfd shared one anonymous inode.
  UniqueFd own(sys_pidfd_open(::getpid()));
  struct statfs fs {};
  pidfs_ = own && ::fstatfs(own.get(), &fs) == 0 && static_cast<long>(fs.f_type) == kPidfsMagic &&
           sizeof(ino_t) >= 8;
}

Opened PidfdKiller::open(pid_t pid, uint64_t start_boot_ns, const EventIdentity& id) {
  const uint64_t pidfs_ino = id.pidfs_ino;
  Opened result;
  if (pid <= 1) {
    result.outcome = {KillStatus::kProtected, "protected: pid " + std::to_string(pid)};
    return result;
  }
  if (pid == self_) {
    result.outcome = {KillStatus::kProtected, "protected: the enforcer itself"};
    return result;
  }
  const bool by_inode = pidfs_ino != 0 && pidfs_;
  if (start_boot_ns == 0 && !by_inode) {
    result.outcome = {KillStatus::kError, "event has no start time: cannot verify the process"};
    return result;
  }
  // The pidfd first: from here on it names one process, whatever happens to the number.
  UniqueFd fd(sys_pidfd_open(pid));
  if (!fd) {
    result.outcome = errno == ESRCH ? exited() : error("pidfd_open(" + std::to_string(pid) + ")", errno);
    return result;
  }
  // By inode: the pidfd's own, so no /proc read and no race with the number's reuse. An
  // exec event's process is never a kernel thread (exec clears PF_KTHREAD).
  if (by_inode) {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      result.outcome = error("fstat(pidfd)", errno);
      return result;
    }
    if (static_cast<uint64_t>(st.st_ino) != pidfs_ino) {
      result.outcome = {KillStatus::kReused, "pid reused (pidfs inode differs)"};
      return result;
    }
  } else {
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
  }
  if (!protected_exes_.empty()) {
    // The file the event's exec ran, when the event says and stat() speaks the kernel's
    // terms here; else the process's current executable, through /proc.
    struct stat exe {};
    bool known = false;
    if (id.exe_ino != 0 && exe_identity_trusted_) {
      exe.st_dev = user_dev(id.exe_dev);
      exe.st_ino = static_cast<ino_t>(id.exe_ino);
      known = true;
    } else {
      known = ::stat(proc_.path(pid, "exe").c_str(), &exe) == 0;
    }
    if (known) {
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
  // Still running after the /proc reads: what they read was the pidfd's process (its pid
  // cannot have been reused while it lived). A pidfd polls for that without a signal; it
  // also tells a zombie, which the start-time path saw in /proc/<pid>/stat.
  result.outcome = by_inode ? check_running(fd.get()) : check_alive(fd.get(), pid);
  if (result.outcome.status != KillStatus::kOk) return result;
  result.target = std::make_unique<PidfdTarget>(std::move(fd), pid, proc_, max_cmdline_bytes_, exit_wait_us_);
  return result;
}

}  // namespace cryptnono::enforcer
