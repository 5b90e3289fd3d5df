// PidfdKiller against real processes: the test's own children, so no root is needed.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "cryptnono/clock.h"
#include "cryptnono/enforcer/killer.h"
#include "enforcer_test_util.h"

namespace cryptnono::enforcer {
namespace {

using testing::Child;

class PidfdKillerTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::make_temp_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
  PidfdKiller killer_{ProcReader("/proc"), getpid()};
};

TEST_F(PidfdKillerTest, KillsTheVerifiedProcessWithSigkill) {
  Child child(dir_, testing::random_token());
  ASSERT_GT(child.pid(), 0);
  auto opened = killer_.open(child.pid(), child.start_boot_ns());
  ASSERT_EQ(opened.outcome.status, KillStatus::kOk) << opened.outcome.reason;
  ASSERT_TRUE(opened.target);
  EXPECT_EQ(opened.target->kill().status, KillStatus::kOk);
  int status = child.wait_for_exit();
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

TEST_F(PidfdKillerTest, ReadsTheFullCmdlineOfTheVerifiedProcess) {
  Child child(dir_, testing::random_token());
  auto opened = killer_.open(child.pid(), child.start_boot_ns());
  ASSERT_EQ(opened.outcome.status, KillStatus::kOk) << opened.outcome.reason;
  std::string argv;
  ASSERT_EQ(opened.target->read_cmdline(argv).status, KillStatus::kOk);
  EXPECT_EQ(argv, child.argv_area());
}

TEST_F(PidfdKillerTest, AnotherStartTimeMeansThePidWasReused) {
  Child child(dir_, testing::random_token());
  uint64_t tick_ns = 1'000'000'000ull / clock_ticks_per_second();
  auto opened = killer_.open(child.pid(), child.start_boot_ns() + 5 * tick_ns);
  EXPECT_EQ(opened.outcome.status, KillStatus::kReused);
  EXPECT_EQ(opened.outcome.reason, "pid reused (start time differs)");
  EXPECT_FALSE(opened.target);
  EXPECT_TRUE(child.alive());
}

TEST_F(PidfdKillerTest, AZombieHasExited) {
  Child child(dir_, testing::random_token());
  uint64_t start = child.start_boot_ns();
  ASSERT_EQ(::kill(child.pid(), SIGKILL), 0);
  // Wait for it to die without reaping it, so the pid stays (a zombie).
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child.pid()), &info, WEXITED | WNOWAIT), 0);
  auto opened = killer_.open(child.pid(), start);
  EXPECT_EQ(opened.outcome.status, KillStatus::kExited);
  EXPECT_EQ(opened.outcome.reason, "process exited");
}

TEST_F(PidfdKillerTest, AReapedProcessIsNotKilled) {
  Child child(dir_, testing::random_token());
  pid_t pid = child.pid();
  uint64_t start = child.start_boot_ns();
  ::kill(pid, SIGKILL);
  child.wait_for_exit();
  auto opened = killer_.open(pid, start);
  // Gone, or (rarely) the pid already names a newer process: never kOk.
  EXPECT_TRUE(opened.outcome.status == KillStatus::kExited || opened.outcome.status == KillStatus::kReused)
      << opened.outcome.reason;
}

// The pidfs inode number of `pid` (fstat of a pidfd), 0 if it cannot be opened.
uint64_t pidfs_ino_of(pid_t pid) {
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  struct stat st {};
  return fd && ::fstat(fd.get(), &st) == 0 ? st.st_ino : 0;
}

// With the pidfs inode an exec event carries, the pidfd is checked by fstat: no /proc read.
TEST_F(PidfdKillerTest, ThePidfsInodeVerifiesTheProcessWithoutProc) {
  if (!killer_.pidfs()) GTEST_SKIP() << "pidfds are not pidfs files on this kernel (before Linux 6.9)";
  Child child(dir_, testing::random_token());
  const uint64_t ino = pidfs_ino_of(child.pid());
  ASSERT_NE(ino, 0u);
  // A ProcReader on an empty directory: any /proc read on this path would fail the open.
  PidfdKiller no_proc(ProcReader(dir_), getpid());
  ASSERT_TRUE(no_proc.pidfs());
  auto opened = no_proc.open(child.pid(), 0, {.pidfs_ino = ino});  // no start time needed
  ASSERT_EQ(opened.outcome.status, KillStatus::kOk) << opened.outcome.reason;
  EXPECT_EQ(opened.target->kill().status, KillStatus::kOk);
  int status = child.wait_for_exit();
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

// An event names the file its exec ran (the kernel's device and inode): when stat() speaks
// the kernel's terms on the protected programs' filesystem, that file is what the
// protection checks, with no /proc/<pid>/exe read.
TEST_F(PidfdKillerTest, TheEventsExecutableIsWhatTheProtectionChecks) {
  Child child(dir_, testing::random_token());  // runs /bin/sleep
  const std::string sleep_path = std::filesystem::canonical("/bin/sleep").string();
  std::filesystem::copy_file("/bin/sleep", dir_ + "/sleep-copy");
  struct stat real {}, copy {};
  ASSERT_EQ(::stat(sleep_path.c_str(), &real), 0);
  ASSERT_EQ(::stat((dir_ + "/sleep-copy").c_str(), &copy), 0);
  auto kernel_dev = [](dev_t d) { return static_cast<uint32_t>((major(d) << 20) | minor(d)); };
  const EventIdentity names_sleep{0, real.st_ino, kernel_dev(real.st_dev)};
  const EventIdentity names_copy{0, copy.st_ino, kernel_dev(copy.st_dev)};

  PidfdKiller protects_sleep(ProcReader("/proc"), getpid());
  protects_sleep.protect_executables({sleep_path});
  PidfdKiller protects_copy(ProcReader("/proc"), getpid());
  protects_copy.protect_executables({dir_ + "/sleep-copy"});
  const auto start = child.start_boot_ns();
  if (protects_sleep.exe_identity_trusted() && protects_copy.exe_identity_trusted()) {
    // The event decides, whatever /proc/<pid>/exe says.
    EXPECT_EQ(protects_sleep.open(child.pid(), start, names_copy).outcome.status, KillStatus::kOk);
    EXPECT_EQ(protects_copy.open(child.pid(), start, names_copy).outcome.reason,
              "protected: one of the agent's own programs");
  } else {
    // Not on this filesystem: the process's executable is read from /proc.
    EXPECT_EQ(protects_sleep.open(child.pid(), start, names_copy).outcome.status, KillStatus::kProtected);
    EXPECT_EQ(protects_copy.open(child.pid(), start, names_copy).outcome.status, KillStatus::kOk);
  }
  // Consistent either way when the event tells the truth.
  EXPECT_EQ(protects_sleep.open(child.pid(), start, names_sleep).outcome.status, KillStatus::kProtected);
}

// A filesystem whose stat() device is not its mount's (a btrfs subvolume's is its own) is
// not trusted: mountinfo here is a made-up one that gives /bin/sleep's mount another device.
TEST_F(PidfdKillerTest, ExecutableIdentityIsNotTrustedWhereStatDiffersFromTheMount) {
  const std::string sleep_path = std::filesystem::canonical("/bin/sleep").string();
  struct statx sx {};
  ASSERT_EQ(::statx(AT_FDCWD, sleep_path.c_str(), 0, STATX_MNT_ID, &sx), 0);
  const std::string fake_proc = dir_ + "/proc";
  std::filesystem::create_directories(fake_proc + "/" + std::to_string(getpid()));
  auto write_mountinfo = [&](unsigned major_no, unsigned minor_no) {
    std::ofstream(fake_proc + "/" + std::to_string(getpid()) + "/mountinfo")
        << "1 0 0:1 / / rw - rootfs rootfs rw\n"
        << sx.stx_mnt_id << " 1 " << major_no << ":" << minor_no << " / /bin rw - ext4 /dev/x rw\n";
  };
  write_mountinfo(sx.stx_dev_major, sx.stx_dev_minor);
  PidfdKiller same(ProcReader(fake_proc), getpid());
  same.protect_executables({sleep_path});
  EXPECT_TRUE(same.exe_identity_trusted());
  write_mountinfo(sx.stx_dev_major, sx.stx_dev_minor + 1);
  PidfdKiller other(ProcReader(fake_proc), getpid());
  other.protect_executables({sleep_path});
  EXPECT_FALSE(other.exe_identity_trusted());
  PidfdKiller none(ProcReader(dir_ + "/no-proc"), getpid());
  none.protect_executables({sleep_path});
  EXPECT_FALSE(none.exe_identity_trusted());
}

// After the signal the enforcer can sleep until the process is gone (--exit-wait-us).
TEST_F(PidfdKillerTest, WaitsForTheKilledProcessToExitWithinItsWait) {
  Child child(dir_, testing::random_token());
  PidfdKiller waiting(ProcReader("/proc"), getpid());
  waiting.wait_for_exit_us(5'000'000);  // far longer than a SIGKILLed sleep takes to die
  auto opened = waiting.open(child.pid(), child.start_boot_ns());
  ASSERT_EQ(opened.outcome.status, KillStatus::kOk) << opened.outcome.reason;
  const uint64_t before = boot_ns();
  ASSERT_EQ(opened.target->kill().status, KillStatus::kOk);
  const uint64_t gone = opened.target->wait_exited();
  EXPECT_GE(gone, before);
  // Gone means exited and not yet reaped: a zombie.
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child.pid()), &info, WEXITED | WNOHANG | WNOWAIT), 0);
  EXPECT_EQ(info.si_pid, child.pid());
  EXPECT_EQ(info.si_code, CLD_KILLED);

  // Without a wait, nothing is waited for.
  Child other(dir_, testing::random_token());
  auto second = killer_.open(other.pid(), other.start_boot_ns());
  ASSERT_EQ(second.outcome.status, KillStatus::kOk);
  ASSERT_EQ(second.target->kill().status, KillStatus::kOk);
  EXPECT_EQ(second.target->wait_exited(), 0u);
}

// A process that does not die within the wait (here: not killed at all) is not waited for
// longer.
TEST_F(PidfdKillerTest, TheExitWaitIsBounded) {
  Child child(dir_, testing::random_token());
  PidfdKiller waiting(ProcReader("/proc"), getpid());
  waiting.wait_for_exit_us(20'000);
  auto opened = waiting.open(child.pid(), child.start_boot_ns());
  ASSERT_EQ(opened.outcome.status, KillStatus::kOk);
  const uint64_t start = boot_ns();
  EXPECT_EQ(opened.target->wait_exited(), 0u);
  EXPECT_GE(boot_ns() - start, 20'000'000u);
  EXPECT_TRUE(child.alive());
}

// The inode decides, even when the start time would match.
TEST_F(PidfdKillerTest, AnotherPidfsInodeMeansThePidWasReused) {
  if (!killer_.pidfs()) GTEST_SKIP() << "pidfds are not pidfs files on this kernel (before Linux 6.9)";
  Child child(dir_, testing::random_token());
  const uint64_t ino = pidfs_ino_of(child.pid());
  ASSERT_NE(ino, 0u);
  auto opened = killer_.open(child.pid(), child.start_boot_ns(), {.pidfs_ino = ino + 1});
  EXPECT_EQ(opened.outcome.status, KillStatus::kReused);
  EXPECT_EQ(opened.outcome.reason, "pid reused (pidfs inode differs)");
  EXPECT_FALSE(opened.target);
  EXPECT_TRUE(child.alive());
  // Without an inode (a /proc scan's event) the start time is checked as before.
  EXPECT_EQ(killer_.open(child.pid(), child.start_boot_ns(), {}).outcome.status, KillStatus::kOk);
}

TEST_F(PidfdKillerTest, AZombieHasExitedByPidfsInodeToo) {
  if (!killer_.pidfs()) GTEST_SKIP() << "pidfds are not pidfs files on this kernel (before Linux 6.9)";
  Child child(dir_, testing::random_token());
  const uint64_t ino = pidfs_ino_of(child.pid());
  ASSERT_EQ(::kill(child.pid(), SIGKILL), 0);
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child.pid()), &info, WEXITED | WNOWAIT), 0);
  auto opened = killer_.open(child.pid(), child.start_boot_ns(), {.pidfs_ino = ino});
  EXPECT_EQ(opened.outcome.status, KillStatus::kExited);
  EXPECT_EQ(opened.outcome.reason, "process exited");
}

TEST_F(PidfdKillerTest, NeverTouchesTheAgentsOwnProgramsOrItsPod) {
  // The child runs /bin/sleep (through a symlink): the same inode as a protected program.
  Child child(dir_, testing::random_token());
  ASSERT_GT(child.pid(), 0);
  PidfdKiller by_exe(ProcReader("/proc"), getpid());
  by_exe.protect_executables({"/no/such/program", std::filesystem::canonical("/bin/sleep").string()});
  auto opened = by_exe.open(child.pid(), child.start_boot_ns());
  EXPECT_EQ(opened.outcome.status, KillStatus::kProtected);
  EXPECT_EQ(opened.outcome.reason, "protected: one of the agent's own programs");

  // A copy of the program is another inode: not protected.
  std::filesystem::copy_file("/bin/sleep", dir_ + "/sleep-copy");
  PidfdKiller by_copy(ProcReader("/proc"), getpid());
  by_copy.protect_executables({dir_ + "/sleep-copy"});
  EXPECT_EQ(by_copy.open(child.pid(), child.start_boot_ns()).outcome.status, KillStatus::kOk);

  // Everything in the protected cgroup subtree (this test's own cgroup here).
  auto cgroup = ProcReader("/proc").cgroup(getpid());
  ASSERT_TRUE(cgroup);
  PidfdKiller by_pod(ProcReader("/proc"), getpid());
  by_pod.protect_cgroup_prefix(*cgroup);
  auto in_pod = by_pod.open(child.pid(), child.start_boot_ns());
  EXPECT_EQ(in_pod.outcome.status, KillStatus::kProtected);
  EXPECT_EQ(in_pod.outcome.reason, "protected: in the agent's own pod");
  by_pod.protect_cgroup_prefix(*cgroup + "-elsewhere/");
  EXPECT_EQ(by_pod.open(child.pid(), child.start_boot_ns()).outcome.status, KillStatus::kOk);

  // The same protections when the process is verified by its pidfs inode.
  if (const uint64_t ino = pidfs_ino_of(child.pid()); by_exe.pidfs() && ino != 0) {
    EXPECT_EQ(by_exe.open(child.pid(), 0, {.pidfs_ino = ino}).outcome.reason, "protected: one of the agent's own programs");
    by_pod.protect_cgroup_prefix(*cgroup);
    EXPECT_EQ(by_pod.open(child.pid(), 0, {.pidfs_ino = ino}).outcome.reason, "protected: in the agent's own pod");
  }
}

TEST_F(PidfdKillerTest, NeverTouchesPidOneItselfOrKernelThreads) {
  EXPECT_EQ(killer_.open(1, 1).outcome.reason, "protected: pid 1");
  EXPECT_EQ(killer_.open(0, 1).outcome.reason, "protected: pid 0");
  EXPECT_EQ(killer_.open(getpid(), 1).outcome.reason, "protected: the enforcer itself");
  EXPECT_EQ(killer_.open(getpid(), 1).outcome.status, KillStatus::kProtected);

  ProcReader proc;
  pid_t kthread = 0;
  uint64_t ticks = 0;
  for (pid_t pid : proc.list_pids()) {
    auto st = proc.stat(pid);
    if (st && (st->flags & kPfKthread) != 0 && st->start_ticks > 0) {
      kthread = pid;
      ticks = st->start_ticks;
      break;
    }
  }
  if (kthread == 0) GTEST_SKIP() << "no kernel thread visible in this pid namespace";
  uint64_t start = ticks * (1'000'000'000ull / clock_ticks_per_second());
  auto opened = killer_.open(kthread, start);
  EXPECT_EQ(opened.outcome.status, KillStatus::kProtected) << opened.outcome.reason;
  EXPECT_EQ(opened.outcome.reason, "protected: kernel thread");
}

TEST_F(PidfdKillerTest, AnEventWithoutStartTimeCannotBeVerified) {
  Child child(dir_, testing::random_token());
  auto opened = killer_.open(child.pid(), 0);
  EXPECT_EQ(opened.outcome.status, KillStatus::kError);
  EXPECT_TRUE(child.alive());
}

}  // namespace
}  // namespace cryptnono::enforcer
