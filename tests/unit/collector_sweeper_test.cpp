// The /proc sweep against a fixture tree: what is reported, what is skipped, and that
// argv bytes arrive exactly as the process shows them.
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "collector_fixture.h"
#include "cryptnono/collector/sweeper.h"

namespace cryptnono::collector {
namespace {

using testing::FakeProc;
using namespace std::string_literals;

std::map<pid_t, ScannedProcess> sweep_all(const Sweeper& sweeper, SweepResult* result = nullptr) {
  std::map<pid_t, ScannedProcess> seen;
  auto r = sweeper.sweep([&](const ScannedProcess& p) { seen.emplace(p.pid, p); });
  if (result != nullptr) *result = r;
  return seen;
}

TEST(Sweeper, ReportsUserProcessesAndSkipsKernelThreadsZombiesAndItself) {
  FakeProc fake;
  fake.add({.pid = 1, .comm = "systemd", .ppid = 0, .cmdline = "/sbin/init\0splash\0"s, .uid = 0, .gid = 0,
            .exe = "/usr/lib/systemd/systemd"});
  fake.add({.pid = 2, .comm = "kthreadd", .ppid = 0, .flags = 0x00208040, .cmdline = ""});
  // A kernel thread with (impossibly) non-empty cmdline is still skipped by its flag.
  fake.add({.pid = 3, .comm = "kworker/0:0", .ppid = 2, .flags = 0x04208060, .cmdline = "x\0"s});
  fake.add({.pid = 40, .comm = "zombie", .cmdline = ""});
  fake.add({.pid = 41, .comm = "collector", .cmdline = "cryptnono-collector\0"s});
  fake.add({.pid = 42, .comm = "python3", .ppid = 1, .start_ticks = 777, .cmdline = "python3\0-c\0pass\0"s,
            .uid = 1000, .gid = 100, .cgroup = "12:pids:/x\n0::/kubepods.slice/a.slice/b.slice/c.slice/cri-containerd-ab.scope\n"});

  ProcReader proc(fake.root());
  Sweeper sweeper(proc, {.max_argv_bytes = 1 << 20, .self = 41, .ticks_per_second = 100});
  SweepResult result;
  auto seen = sweep_all(sweeper, &result);

  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(result.reported, 2u);
  EXPECT_EQ(result.kernel_threads, 3u);  // kthreadd, kworker, zombie
  EXPECT_EQ(seen.count(2), 0u);
  EXPECT_EQ(seen.count(41), 0u);

  const auto& init = seen.at(1);
  EXPECT_EQ(init.comm, "systemd");
  EXPECT_EQ(init.filename, "/usr/lib/systemd/systemd");
  EXPECT_EQ(init.argv, "/sbin/init\0splash\0"s);
  EXPECT_EQ(init.uid, 0u);

  const auto& py = seen.at(42);
  EXPECT_EQ(py.ppid, 1);
  EXPECT_EQ(py.uid, 1000u);
  EXPECT_EQ(py.gid, 100u);
  EXPECT_EQ(py.start_boot_ns, 777ull * 10'000'000ull);  // ticks at 100 Hz -> ns
  EXPECT_EQ(py.filename, "");                           // no readable exe
  EXPECT_EQ(py.cgroup_name, "a.slice/b.slice/c.slice/cri-containerd-ab.scope");
  EXPECT_FALSE(py.argv_truncated);
  EXPECT_EQ(py.argv_full_length, py.argv.size());
}

TEST(Sweeper, KeepsHostileArgvBytesIntact) {
  FakeProc fake;
  // Invalid UTF-8, quotes, newlines, a lone high byte at the end, no trailing NUL (a
  // process that rewrote its argument area).
  std::string argv = "xmr\xff\xfe\0--pass='a b'\0line1\nline2\0\"q\"\0\xc3("s;
  fake.add({.pid = 7, .comm = "x\xff", .cmdline = argv});
  ProcReader proc(fake.root());
  Sweeper sweeper(proc, {});
  auto seen = sweep_all(sweeper);
  ASSERT_EQ(seen.count(7), 1u);
  EXPECT_EQ(seen.at(7).argv, argv);
  EXPECT_EQ(seen.at(7).comm, "x\xff");
  EXPECT_FALSE(seen.at(7).argv_truncated);
}

TEST(Sweeper, FlagsArgvLongerThanTheLimitAsTruncated) {
  FakeProc fake;
  std::string big(10'000, 'a');
  big[5000] = '\0';
  fake.add({.pid = 9, .cmdline = big});
  fake.add({.pid = 10, .cmdline = big.substr(0, 4096)});  // exactly the limit: complete
  ProcReader proc(fake.root());
  Sweeper sweeper(proc, {.max_argv_bytes = 4096});
  auto seen = sweep_all(sweeper);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen.at(9).argv_truncated);
  EXPECT_EQ(seen.at(9).argv, big.substr(0, 4096));
  EXPECT_EQ(seen.at(9).argv_full_length, 4096u);  // what was read: a lower bound
  EXPECT_FALSE(seen.at(10).argv_truncated);
  EXPECT_EQ(seen.at(10).argv.size(), 4096u);
}

TEST(Sweeper, CountsProcessesThatVanishMidSweep) {
  FakeProc fake;
  fake.add({.pid = 5, .cmdline = "a\0"s});
  std::filesystem::create_directories(fake.root() + "/6");  // listed, but its files are gone
  ProcReader proc(fake.root());
  Sweeper sweeper(proc, {});
  SweepResult result;
  auto seen = sweep_all(sweeper, &result);
  EXPECT_EQ(seen.size(), 1u);
  EXPECT_EQ(result.vanished, 1u);
}

TEST(Sweeper, ReadsTheRealProcOfThisTest) {
  ProcReader proc;
  Sweeper sweeper(proc, {.ticks_per_second = clock_ticks_per_second()});
  auto me = sweeper.scan(getpid());
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(me->ppid, getppid());
  EXPECT_NE(me->argv.find("collector_test"), std::string::npos);
  EXPECT_GT(me->start_boot_ns, 0u);
  Sweeper skipping_self(proc, {.self = getpid()});
  EXPECT_FALSE(skipping_self.scan(getpid()).has_value());
}

}  // namespace
}  // namespace cryptnono::collector
