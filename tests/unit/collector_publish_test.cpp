// The collector's publishing over a real ipc socket: sweep results become "exec"
// messages with source scan, and "stats" carries exactly the contract's counters.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "collector_fixture.h"
#include "cryptnono/collector/collector.h"
#include "cryptnono/log.h"

namespace cryptnono::collector {
namespace {

using testing::FakeProc;
using namespace std::string_literals;

class CollectorPublish : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryptnono-collector-pub-XXXXXX";
    dir_ = mkdtemp(tmpl);
    endpoint_ = "ipc://" + dir_ + "/collector.sock";
    auto pub = Publisher::bind(ctx_, endpoint_, "node-t", "collector", "collector");
    ASSERT_TRUE(pub) << pub.error().message;
    publisher_ = std::move(*pub);
    auto sub = Subscriber::connect(ctx_, {endpoint_}, {"exec", "stats"});
    ASSERT_TRUE(sub) << sub.error().message;
    subscriber_ = std::move(*sub);
  }
  void TearDown() override {
    subscriber_.reset();
    publisher_.reset();
    std::filesystem::remove_all(dir_);
  }

  // PUB/SUB join: publish stats until one arrives, so later messages are not lost.
  void join(Collector& collector) {
    for (int i = 0; i < 500; ++i) {
      collector.publish_stats({}, 1000);
      if (subscriber_->wait(-1, 10) == Subscriber::Wait::kMessage) {
        while (subscriber_->try_receive(got_)) {
        }
        return;
      }
    }
    FAIL() << "subscriber never joined";
  }

  zmq::context_t ctx_;
  std::string dir_, endpoint_;
  std::unique_ptr<Publisher> publisher_;
  std::unique_ptr<Subscriber> subscriber_;
  Received got_;
};

TEST_F(CollectorPublish, SweepPublishesScanEventsWithArgvIntact) {
  FakeProc fake;
  std::string argv = "miner\0--donate-level=0\0\xff\xfe\0"s;
  fake.add({.pid = 31, .comm = "miner", .ppid = 1, .start_ticks = 500, .cmdline = argv, .uid = 1000, .gid = 1000,
            .cgroup = "0::/kubepods.slice/p.slice/cri-containerd-1.scope\n"});
  fake.add({.pid = 32, .comm = "kthread", .flags = 0x00200000, .cmdline = ""});
  ProcReader proc(fake.root());
  Sweeper sweeper(proc, {.ticks_per_second = 100});
  Collector collector(*publisher_, sweeper, make_logger("collector-test", "warn"));
  join(collector);

  auto result = collector.sweep();
  EXPECT_EQ(result.reported, 1u);
  ASSERT_EQ(subscriber_->wait(-1, 5000), Subscriber::Wait::kMessage);
  ASSERT_TRUE(subscriber_->try_receive(got_));
  EXPECT_EQ(got_.topic(), "exec");
  auto env = got_.envelope();
  ASSERT_TRUE(env);
  auto ev = env->getBody().getExec();
  EXPECT_EQ(ev.getSource(), schema::Source::SCAN);
  EXPECT_EQ(ev.getPid(), 31u);
  EXPECT_EQ(ev.getStartBootNs(), 500ull * 10'000'000ull);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ev.getArgv().begin()), ev.getArgv().size()), argv);
  EXPECT_EQ(std::string(ev.getCgroupName().cStr()), "kubepods.slice/p.slice/cri-containerd-1.scope");
  EXPECT_EQ(std::string(env->getPublisherKind().cStr()), "collector");
  EXPECT_EQ(collector.counters().events_scan, 1u);
  EXPECT_EQ(collector.counters().scans, 1u);
}

TEST_F(CollectorPublish, StatsCarryExactlyTheContractCounters) {
  FakeProc fake;
  fake.add({.pid = 5, .cmdline = "a\0"s});
  ProcReader proc(fake.root());
  Sweeper sweeper(proc, {});
  Collector collector(*publisher_, sweeper, make_logger("collector-test", "warn"));
  join(collector);
  collector.sweep();
  ProbeCounters kernel;
  kernel.exec.ringbuf_drops = 3;
  kernel.exec.argv_read_errors = 4;
  kernel.fpu.nondefault = 500;
  kernel.fpu.ringbuf_drops = 5;
  kernel.fpu.map_errors = 6;
  kernel.connect.ringbuf_drops = 7;
  kernel.exec.kernel_ring_drops = 8;
  kernel.exec.kernel_ring_follow_laps = 9;
  kernel.exec.kernel_ring_woken = 10;
  collector.publish_stats(kernel, 2500);

  std::map<std::string, uint64_t> counters;
  uint32_t interval = 0;
  for (int i = 0; i < 10 && counters.empty(); ++i) {
    ASSERT_EQ(subscriber_->wait(-1, 5000), Subscriber::Wait::kMessage);
    while (subscriber_->try_receive(got_)) {
      if (got_.topic() != "stats") continue;
      auto env = got_.envelope();
      ASSERT_TRUE(env);
      auto stats = env->getBody().getStats();
      interval = stats.getIntervalMs();
      counters.clear();
      for (auto c : stats.getCounters()) counters[c.getName().cStr()] = c.getValue();
    }
  }
  const std::map<std::string, uint64_t> expected = {
      {"events_bpf", 0},
      {"events_scan", 1},
      {"scans", 1},
      {"kernel_ringbuf_drops", 3},
      {"kernel_argv_read_errors", 4},
      {"truncated", 0},
      {"events_fpu", 0},
      {"kernel_fpu_nondefault_switches", 500},
      {"kernel_fpu_ringbuf_drops", 5},
      {"kernel_fpu_map_errors", 6},
      {"events_connect", 0},
      {"kernel_connect_ringbuf_drops", 7},
      {"send_drops", 0},
      {"direct_sent", 0},  // this publisher has no direct socket (common_direct_test covers it)
      {"direct_drops", 0},
      {"kernel_ring_drops", 8},
      {"kernel_ring_grants", 0},
      {"kernel_ring_follow_laps", 9},
      {"kernel_ring_woken", 10},
  };
  EXPECT_EQ(counters, expected);
  EXPECT_EQ(interval, 2500u);
}

TEST_F(CollectorPublish, ProbeRecordsGoOutOnTheirOwnTopics) {
  auto sub = Subscriber::connect(ctx_, {endpoint_}, {"fpu", "connect", "stats"});
  ASSERT_TRUE(sub) << sub.error().message;
  subscriber_ = std::move(*sub);
  FakeProc fake;
  ProcReader proc(fake.root());
  Sweeper sweeper(proc, {});
  Collector collector(*publisher_, sweeper, make_logger("collector-test", "warn"));
  join(collector);

  FpuRecord fpu;
  fpu.header.task.tgid = 42;
  fpu.header.count = fpu.header.threshold = 64;
  fpu.cgroup_name = "pod/c";
  collector.publish(fpu);
  ConnectRecord connect;
  connect.header.task.tgid = 43;
  connect.header.family = CONNECT_AF_INET6;
  connect.header.dport = 443;
  collector.publish(connect);

  std::map<std::string, uint32_t> tgid_by_topic;
  for (int i = 0; i < 10 && tgid_by_topic.size() < 2; ++i) {
    ASSERT_EQ(subscriber_->wait(-1, 5000), Subscriber::Wait::kMessage);
    while (subscriber_->try_receive(got_)) {
      auto env = got_.envelope();
      ASSERT_TRUE(env);
      if (got_.topic() == "fpu") {
        ASSERT_TRUE(env->getBody().isFpu());
        tgid_by_topic["fpu"] = env->getBody().getFpu().getTgid();
        EXPECT_EQ(std::string(env->getBody().getFpu().getCgroupName().cStr()), "pod/c");
      } else if (got_.topic() == "connect") {
        ASSERT_TRUE(env->getBody().isConnect());
        tgid_by_topic["connect"] = env->getBody().getConnect().getTgid();
        EXPECT_EQ(env->getBody().getConnect().getDestinationPort(), 443u);
        EXPECT_EQ(env->getBody().getConnect().getDestination().size(), 16u);
      }
    }
  }
  EXPECT_EQ(tgid_by_topic, (std::map<std::string, uint32_t>{{"fpu", 42}, {"connect", 43}}));
  EXPECT_EQ(collector.counters().events_fpu, 1u);
  EXPECT_EQ(collector.counters().events_connect, 1u);
}

}  // namespace
}  // namespace cryptnono::collector
