// cryptnono/sched.h: the --cpus parser, the flag checks, and apply_scheduling on this
// test's own threads (root with CAP_SYS_NICE: CI runs as root; skipped otherwise).
#include "cryptnono/sched.h"

#include <dirent.h>
#include <sys/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "cryptnono/caps.h"

namespace cryptnono {
namespace {

pid_t this_tid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

std::vector<pid_t> threads_of_this_process() {
  std::vector<pid_t> tids;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return tids;
  while (dirent* e = readdir(dir))
    if (e->d_name[0] != '.') tids.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
  closedir(dir);
  return tids;
}

cpu_set_t cpus_of(std::initializer_list<int> cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  return set;
}

cpu_set_t affinity_of(pid_t tid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(tid, sizeof set, &set), 0) << "thread " << tid;
  return set;
}

// ---- the CPU list parser ---------------------------------------------------------

TEST(ParseCpuList, AcceptsTheKernelsListForms) {
  struct Case {
    const char* text;
    cpu_set_t want;
    const char* canonical;
  };
  const Case cases[] = {
      {"0", cpus_of({0}), "0"},
      {"1", cpus_of({1}), "1"},
      {"0-1,3", cpus_of({0, 1, 3}), "0-1,3"},
      {"3,0-1", cpus_of({0, 1, 3}), "0-1,3"},
      {" 2 , 4-5 ", cpus_of({2, 4, 5}), "2,4-5"},
      {"0 - 2", cpus_of({0, 1, 2}), "0-2"},
      {"3-3", cpus_of({3}), "3"},
      {"1,1", cpus_of({1}), "1"},
      {"0-2,1-3", cpus_of({0, 1, 2, 3}), "0-3"},
      {"007", cpus_of({7}), "7"},
      {"1023", cpus_of({1023}), "1023"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto parsed = parse_cpu_list(c.text);
    ASSERT_TRUE(parsed) << parsed.error().message;
    EXPECT_TRUE(CPU_EQUAL(&*parsed, &c.want)) << format_cpu_list(*parsed);
    EXPECT_EQ(format_cpu_list(*parsed), c.canonical);
  }
}

TEST(ParseCpuList, RefusesBadListsNamingTheItem) {
  struct Case {
    const char* text;
    const char* message_part;
  };
  const Case cases[] = {
      {"", "empty CPU list"},
      {"  ", "empty CPU list"},
      {",", "empty item"},
      {"1,", "empty item"},
      {",1", "empty item"},
      {"1,,2", "empty item"},
      {"a", "'a': not a CPU number"},
      {"one", "'one': not a CPU number"},
      {"0x1", "'0x1': not a CPU number"},
      {"+1", "'+1': not a CPU number"},
      {"-1", "'-1': a CPU number is missing"},
      {"1-", "'1-': a CPU number is missing"},
      {"1-2-3", "'1-2-3': not a CPU number"},
      {"3-1", "'3-1': a range must go upwards"},
      {"1 2", "'1 2': not a CPU number"},
      {"0-3:2", "'0-3:2': not a CPU number"},
      {"1024", "'1024': CPU numbers go up to 1023"},
      {"0-99999999999", "'0-99999999999': CPU numbers go up to 1023"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto parsed = parse_cpu_list(c.text);
    ASSERT_FALSE(parsed) << "accepted: " << format_cpu_list(*parsed);
    EXPECT_NE(parsed.error().message.find(c.message_part), std::string::npos) << parsed.error().message;
  }
}

TEST(FormatCpuList, EmptySetIsEmptyString) {
  cpu_set_t none;
  CPU_ZERO(&none);
  EXPECT_EQ(format_cpu_list(none), "");
}

TEST(ValidateScheduling, ChecksPriorityRangeAndCpuListNamingTheFlag) {
  EXPECT_TRUE(validate_scheduling(0, ""));
  EXPECT_TRUE(validate_scheduling(1, "0"));
  EXPECT_TRUE(validate_scheduling(99, "0-1,3"));
  for (int bad : {-1, 100, 1000}) {
    auto r = validate_scheduling(bad, "");
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().message.rfind("--rt-priority: must be 0 (off) or 1..99", 0), 0u) << r.error().message;
  }
  auto r = validate_scheduling(0, "2-1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "--cpus: '2-1': a range must go upwards");
}

TEST(ApplyScheduling, NothingAskedChangesNothing) {
  int policy = sched_getscheduler(0);
  cpu_set_t before = affinity_of(0);
  ASSERT_TRUE(apply_scheduling(0, ""));
  EXPECT_EQ(sched_getscheduler(0), policy);
  cpu_set_t after = affinity_of(0);
  EXPECT_TRUE(CPU_EQUAL(&before, &after));
}

// ---- on the test's own threads (needs CAP_SYS_NICE) ------------------------------

// Puts every thread of the process back the way the main thread was before the test.
class ApplySchedulingLive : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0 || !has_capability(CAP_SYS_NICE))
      GTEST_SKIP() << "needs root with CAP_SYS_NICE (SCHED_FIFO); CI runs as root";
    policy_ = sched_getscheduler(0);
    ASSERT_GE(policy_, 0);
    ASSERT_EQ(sched_getparam(0, &param_), 0);
    affinity_ = affinity_of(0);
    // The CPU to pin to: the highest one this process may use, so that the pinning is a
    // real change on a machine with more than one CPU.
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &affinity_)) cpu_ = c;
  }

  void TearDown() override {
    if (policy_ < 0) return;
    for (pid_t tid : threads_of_this_process()) {
      sched_setscheduler(tid, policy_, &param_);
      sched_setaffinity(tid, sizeof affinity_, &affinity_);
    }
    EXPECT_EQ(sched_getscheduler(0), policy_) << "the test process was not restored";
  }

  int policy_ = -1;
  sched_param param_{};
  cpu_set_t affinity_{};
  int cpu_ = 0;
};

// A thread that exists before apply_scheduling and waits until released.
class WaitingThread {
 public:
  WaitingThread() {
    std::promise<pid_t> started;
    auto tid = started.get_future();
    thread_ = std::thread([this, &started] {
      started.set_value(this_tid());
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return released_; });
    });
    tid_ = tid.get();
  }
  ~WaitingThread() {
    {
      std::lock_guard lock(mutex_);
      released_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  pid_t tid() const { return tid_; }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool released_ = false;
  pid_t tid_ = 0;
  std::thread thread_;
};

TEST_F(ApplySchedulingLive, EveryExistingThreadGetsFifoAndAffinityAndNewThreadsInheritThem) {
  WaitingThread before;  // like ZeroMQ's I/O threads: started before the call
  const std::string cpus = std::to_string(cpu_);
  ASSERT_TRUE(apply_scheduling(7, cpus)) << apply_scheduling(7, cpus).error().message;

  const cpu_set_t want = cpus_of({cpu_});
  auto tids = threads_of_this_process();
  ASSERT_GE(tids.size(), 2u);
  EXPECT_NE(std::find(tids.begin(), tids.end(), before.tid()), tids.end());
  for (pid_t tid : tids) {
    SCOPED_TRACE("thread " + std::to_string(tid));
    EXPECT_EQ(sched_getscheduler(tid), SCHED_FIFO);
    sched_param p{};
    ASSERT_EQ(sched_getparam(tid, &p), 0);
    EXPECT_EQ(p.sched_priority, 7);
    cpu_set_t got = affinity_of(tid);
    EXPECT_TRUE(CPU_EQUAL(&got, &want)) << format_cpu_list(got);
  }
  EXPECT_EQ(describe_scheduling(), "SCHED_FIFO 7, CPUs " + cpus);

  // A thread started afterwards (the enforcer's watcher, ZeroMQ's threads when the
  // context comes later) inherits both from its creator.
  int inherited_policy = -1;
  cpu_set_t inherited_cpus = cpus_of({});
  std::thread([&] {
    inherited_policy = sched_getscheduler(0);
    inherited_cpus = affinity_of(0);
  }).join();
  EXPECT_EQ(inherited_policy, SCHED_FIFO);
  EXPECT_TRUE(CPU_EQUAL(&inherited_cpus, &want));
}

TEST_F(ApplySchedulingLive, PriorityAloneLeavesAffinityAndCpusAloneLeavePolicy) {
  WaitingThread other;
  ASSERT_TRUE(apply_scheduling(3, ""));
  EXPECT_EQ(sched_getscheduler(other.tid()), SCHED_FIFO);
  cpu_set_t got = affinity_of(other.tid());
  EXPECT_TRUE(CPU_EQUAL(&got, &affinity_));

  TearDown();  // back to the normal policy
  ASSERT_TRUE(apply_scheduling(0, std::to_string(cpu_)));
  EXPECT_EQ(sched_getscheduler(other.tid()), policy_);
  got = affinity_of(other.tid());
  cpu_set_t want = cpus_of({cpu_});
  EXPECT_TRUE(CPU_EQUAL(&got, &want));
}

TEST_F(ApplySchedulingLive, CpusOutsideTheAllowedSetAreRefusedNotIgnored) {
  // CPU 1023 is not on this machine (CPU_SETSIZE - 1): alone, the kernel refuses it;
  // with the allowed CPUs, the kernel would silently keep those: both are errors.
  auto none = apply_scheduling(0, "1023");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message,
            "--cpus 1023: none of these CPUs is available to this process (offline, or outside its cgroup cpuset)");
  std::string allowed = format_cpu_list(affinity_);
  auto some = apply_scheduling(0, allowed + ",1023");
  ASSERT_FALSE(some);
  EXPECT_EQ(some.error().message, "--cpus " + allowed + ",1023: only CPUs " + allowed +
                                      " of them are available to this process (the others are offline or outside "
                                      "its cgroup cpuset)");
}

// Capabilities are per thread: a thread that drops CAP_SYS_NICE from its own effective
// set stands for the agent after drop_capabilities.
void drop_sys_nice_in_this_thread() {
  cap_t caps = cap_get_proc();
  ASSERT_NE(caps, nullptr);
  cap_value_t nice[] = {CAP_SYS_NICE};
  ASSERT_EQ(cap_set_flag(caps, CAP_EFFECTIVE, 1, nice, CAP_CLEAR), 0);
  ASSERT_EQ(cap_set_proc(caps), 0);
  cap_free(caps);
  ASSERT_FALSE(has_capability(CAP_SYS_NICE));
}

TEST_F(ApplySchedulingLive, WithoutCapSysNiceFifoIsRefusedWithAClearMessage) {
  rlimit rtprio{};
  ASSERT_EQ(getrlimit(RLIMIT_RTPRIO, &rtprio), 0);
  if (rtprio.rlim_cur > 0) GTEST_SKIP() << "RLIMIT_RTPRIO allows SCHED_FIFO without CAP_SYS_NICE here";
  std::string message;
  std::thread([&] {
    drop_sys_nice_in_this_thread();
    auto r = apply_scheduling(10, "");
    message = r ? "accepted" : r.error().message;
  }).join();
  EXPECT_EQ(message.rfind("SCHED_FIFO needs CAP_SYS_NICE (or an RLIMIT_RTPRIO of at least 10): sched_setscheduler(", 0),
            0u)
      << message;
  EXPECT_NE(message.find("Operation not permitted"), std::string::npos) << message;
  EXPECT_NE(sched_getscheduler(0), SCHED_FIFO);
}

TEST_F(ApplySchedulingLive, LeavingRealtimeNeedsNoPrivilegeAndKeepsTheAffinity) {
  ASSERT_TRUE(apply_scheduling(5, std::to_string(cpu_)));
  int policy_after = -1, refused_errno = 0;
  cpu_set_t cpus_after = cpus_of({});
  std::string error;
  std::thread([&] {
    drop_sys_nice_in_this_thread();
    if (auto r = leave_realtime_scheduling(); !r) error = r.error().message;
    policy_after = sched_getscheduler(0);
    cpus_after = affinity_of(0);
    // And the privilege is really gone: this thread cannot go back.
    sched_param p{};
    p.sched_priority = 5;
    if (sched_setscheduler(0, SCHED_FIFO, &p) != 0) refused_errno = errno;
  }).join();
  EXPECT_EQ(error, "");
  EXPECT_EQ(policy_after, SCHED_OTHER);
  cpu_set_t want = cpus_of({cpu_});
  EXPECT_TRUE(CPU_EQUAL(&cpus_after, &want));
  rlimit rtprio{};
  getrlimit(RLIMIT_RTPRIO, &rtprio);
  if (rtprio.rlim_cur == 0) {
    EXPECT_EQ(refused_errno, EPERM);
  }
  // The other threads stay real-time.
  EXPECT_EQ(sched_getscheduler(0), SCHED_FIFO);
  // A normal thread: nothing to do.
  TearDown();
  EXPECT_TRUE(leave_realtime_scheduling());
  EXPECT_EQ(sched_getscheduler(0), policy_);
}

}  // namespace
}  // namespace cryptnono
