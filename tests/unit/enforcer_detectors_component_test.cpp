// The monero and flowkiller detectors in the real enforcer loop, in-process, over real
// ZeroMQ sockets (ipc in a temp dir), killing real child processes. The test plays the
// collector (publishes FpuEvents / ConnectEvents) and the exporter (subscribes to
// decisions and stats). Every test bans its own random addresses. No root needed: the
// children are the test's own.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <capnp/message.h>

#include "cryptnono/clock.h"
#include "cryptnono/enforcer/app.h"
#include "cryptnono/enforcer/enforcer.h"
#include "cryptnono/enforcer/flowkiller.h"
#include "cryptnono/enforcer/monero.h"
#include "cryptnono/enforcer/watcher.h"
#include "cryptnono/log.h"
#include "cryptnono/transport.h"
#include "enforcer_test_util.h"

namespace cryptnono::enforcer {
namespace {

using namespace std::chrono_literals;
using testing::Child;

std::string text(capnp::Text::Reader t) { return {t.cStr(), t.size()}; }
std::string data(capnp::Data::Reader d) { return {reinterpret_cast<const char*>(d.begin()), d.size()}; }

struct Got {
  std::unique_ptr<capnp::MallocMessageBuilder> message = std::make_unique<capnp::MallocMessageBuilder>();
  schema::Envelope::Reader envelope() { return message->getRoot<schema::Envelope>().asReader(); }
  schema::Decision::Reader decision() { return envelope().getBody().getDecision(); }
};

class DetectorLoop : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir();
    collector_ep_ = "ipc://" + dir_ + "/collector.sock";
    decision_ep_ = "ipc://" + dir_ + "/detector.sock";
    log_ = make_logger("detector-test", "warn");
    prefix_ = testing::random_loopback_prefix();
  }
  void TearDown() override {
    watcher_.reset();
    if (enforcer_) enforcer_->stop();
    if (thread_.joinable()) thread_.join();
    enforcer_.reset();
    std::filesystem::remove_all(dir_);
  }

  void start(std::unique_ptr<Detector> detector) {
    topic_ = std::string(detector->topic());
    auto pub = Publisher::bind(ctx_, collector_ep_, "test-node", "collector", "collector");
    ASSERT_TRUE(pub) << pub.error().message;
    collector_ = std::move(*pub);
    EnforcerOptions options;
    options.connect = {collector_ep_};
    options.bind = decision_ep_;
    options.node = "test-node";
    options.stats_interval_ms = 100;
    auto e = Enforcer::create(ctx_, options, std::move(detector), log_);
    ASSERT_TRUE(e) << e.error().message;
    enforcer_ = std::move(*e);
    auto sub = Subscriber::connect(ctx_, {decision_ep_}, {std::string(topic::kDecision), std::string(topic::kStats)});
    ASSERT_TRUE(sub);
    decisions_ = std::move(*sub);
    Enforcer* raw = enforcer_.get();
    thread_ = std::thread([raw] { raw->run(); });
    // PUB/SUB connections join asynchronously: publish harmless events until one's
    // decision comes back. Harmless: our own pid (the enforcer's self, protected) or a
    // private destination.
    for (int i = 0; i < 200; ++i) {
      if (topic_ == topic::kFpu)
        publish_fpu(getpid(), 1);
      else
        publish_connect(getpid(), 1, "10.1.2.3", 1);
      if (await_decision(getpid(), 50ms)) return;
    }
    FAIL() << "the enforcer never answered";
  }

  void publish_fpu(pid_t pid, uint64_t start) {
    capnp::MallocMessageBuilder mb;
    testing::fill_fpu_event(collector_->begin(mb, topic::kFpu).getBody().initFpu(), pid, start);
    ASSERT_TRUE(collector_->send(topic::kFpu, mb));
  }
  void publish_connect(pid_t pid, uint64_t start, const std::string& destination, uint16_t port) {
    capnp::MallocMessageBuilder mb;
    testing::fill_connect_event(collector_->begin(mb, topic::kConnect).getBody().initConnect(), pid, start,
                                destination, port);
    ASSERT_TRUE(collector_->send(topic::kConnect, mb));
  }

  template <class Pred>
  std::optional<Got> await(Pred want, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    Received rx;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      if (decisions_->wait(-1, left.count()) != Subscriber::Wait::kMessage) continue;
      while (decisions_->try_receive(rx)) {
        auto env = rx.envelope();
        if (!env) continue;
        Got got;
        got.message->setRoot(*env);
        if (want(got.envelope())) return got;
      }
    }
  }
  std::optional<Got> await_decision(pid_t pid, std::chrono::milliseconds timeout = 10s) {
    return await(
        [pid](schema::Envelope::Reader e) {
          return e.getBody().isDecision() && e.getBody().getDecision().getEvent().getPid() == static_cast<uint32_t>(pid);
        },
        timeout);
  }
  uint64_t counter(const std::string& name) {
    for (const auto& [n, v] : enforcer_->counters())
      if (n == name) return v;
    ADD_FAILURE() << "no counter " << name;
    return 0;
  }
  template <class Pred>
  bool eventually(Pred pred, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(5ms);
    }
    return pred();
  }

  std::unique_ptr<FlowkillerDetector> flowkiller(const FlowkillerOptions& options,
                                                 std::shared_ptr<const BannedSet> banned) {
    return std::make_unique<FlowkillerDetector>(killer_, options, std::move(banned));
  }

  zmq::context_t ctx_;
  std::string dir_, collector_ep_, decision_ep_, topic_, prefix_;
  std::shared_ptr<spdlog::logger> log_;
  PidfdKiller killer_{ProcReader("/proc"), getpid()};
  std::unique_ptr<Publisher> collector_;
  std::unique_ptr<Subscriber> decisions_;
  std::unique_ptr<Enforcer> enforcer_;
  std::unique_ptr<FileWatcher> watcher_;
  std::thread thread_;
};

TEST_F(DetectorLoop, MoneroKillsTheProcessAnFpuEventNames) {
  start(std::make_unique<MoneroDetector>(killer_, false));
  Child child(dir_, testing::random_token());
  ASSERT_GT(child.pid(), 0);
  publish_fpu(child.pid(), child.start_boot_ns());
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  int status = child.wait_for_exit();
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  auto d = got->decision();
  EXPECT_EQ(d.getAction(), schema::Action::KILLED);
  EXPECT_EQ(text(d.getDetector()), "monero");
  EXPECT_EQ(text(d.getSource()), "monero.bpf");
  EXPECT_EQ(text(d.getRule()), "rounding-mode");
  EXPECT_EQ(d.getFpu().getMxcsr(), 0x3f80u);
  EXPECT_EQ(data(d.getEvent().getArgv()), child.argv_area());
  EXPECT_EQ(data(d.getCmdline()), child.path() + " 60");
  EXPECT_TRUE(d.getCmdlineFromProc());
  EXPECT_GT(d.getKilledBootNs(), 0u);
  EXPECT_EQ(text(got->envelope().getPublisherId()).rfind("enforcer/monero/", 0), 0u);
  EXPECT_EQ(counter("killed"), 1u);
  std::printf("[ figures  ] monero: received -> SIGKILL %.1f us (pidfd, identity check, /proc cmdline, kill)\n",
              static_cast<double>(d.getKilledBootNs() - d.getReceivedBootNs()) / 1e3);
}

TEST_F(DetectorLoop, MoneroEventWithAnotherStartTimeIsAMissedKillAndTheChildLives) {
  start(std::make_unique<MoneroDetector>(killer_, false));
  Child child(dir_, testing::random_token());
  publish_fpu(child.pid(), child.start_boot_ns() + 9 * (1'000'000'000ull / clock_ticks_per_second()));
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::MISSED_KILL);
  EXPECT_EQ(text(got->decision().getReason()), "pid reused (start time differs)");
  EXPECT_EQ(got->decision().getEvent().getArgv().size(), 0u);
  EXPECT_TRUE(child.alive());
  EXPECT_EQ(counter("missed"), 1u);
}

TEST_F(DetectorLoop, FlowkillerKillsAConnectToABannedNetwork) {
  BannedList list;
  parse_banned_text(prefix_ + ".0/24\n", "banned.txt", list);
  start(flowkiller({}, std::make_shared<const BannedSet>(list)));
  Child child(dir_, testing::random_token());
  publish_connect(child.pid(), child.start_boot_ns(), prefix_ + ".9", 3333);
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  EXPECT_TRUE(WIFSIGNALED(child.wait_for_exit()));
  auto d = got->decision();
  EXPECT_EQ(d.getAction(), schema::Action::KILLED);
  EXPECT_EQ(text(d.getDetector()), "flowkiller");
  EXPECT_EQ(text(d.getRule()), "banned");
  EXPECT_EQ(text(d.getMatched()), prefix_ + ".0/24");
  EXPECT_EQ(d.getConnect().getDestinationPort(), 3333u);
  EXPECT_EQ(data(d.getEvent().getArgv()), child.argv_area());
  std::printf("[ figures  ] flowkiller banned: received -> SIGKILL %.1f us\n",
              static_cast<double>(d.getKilledBootNs() - d.getReceivedBootNs()) / 1e3);
}

TEST_F(DetectorLoop, FlowkillerKillsOnFanOutAndEveryConnectGetsADecision) {
  FlowkillerOptions o;
  o.unique_destinations_threshold = 3;
  o.count_all_destinations = true;  // the test's destinations are loopback
  start(flowkiller(o, nullptr));
  Child child(dir_, testing::random_token());
  for (int i = 1; i <= 3; ++i) {
    publish_connect(child.pid(), child.start_boot_ns(), prefix_ + "." + std::to_string(i), 80);
    auto got = await_decision(child.pid());
    ASSERT_TRUE(got);
    EXPECT_EQ(got->decision().getAction(), schema::Action::NO_MATCH);
    EXPECT_EQ(got->decision().getUniqueDestinations(), static_cast<uint32_t>(i));
  }
  EXPECT_TRUE(child.alive());
  publish_connect(child.pid(), child.start_boot_ns(), prefix_ + ".4", 80);
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::KILLED);
  EXPECT_EQ(text(got->decision().getRule()), "fanout");
  EXPECT_EQ(got->decision().getUniqueDestinations(), 4u);
  EXPECT_TRUE(WIFSIGNALED(child.wait_for_exit()));
  EXPECT_GE(counter("decisions"), 4u);

  auto stats = await([](schema::Envelope::Reader e) { return e.getBody().isStats(); });
  ASSERT_TRUE(stats);
  std::vector<std::string> names;
  for (auto c : stats->envelope().getBody().getStats().getCounters()) names.push_back(text(c.getName()));
  EXPECT_EQ(names.back(), "fanout_destination_evictions");
}

TEST_F(DetectorLoop, FlowkillerReloadsItsBannedFilesIncludingAConfigMapSwap) {
  // The layout a ConfigMap volume has: file -> ..data/file, ..data -> ..<timestamp>/.
  std::string cm = dir_ + "/banned";
  std::filesystem::create_directories(cm + "/..v1");
  testing::write_file(cm + "/..v1/pools.txt", prefix_ + ".1\nnot an address\n");
  std::filesystem::create_directory_symlink("..v1", cm + "/..data");
  std::filesystem::create_symlink("..data/pools.txt", cm + "/pools.txt");
  auto loaded = load_banned({cm + "/*.txt"});
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_EQ(loaded->list.errors.size(), 1u);  // reported, not fatal
  EXPECT_EQ(loaded->list.errors[0], cm + "/pools.txt:2: not an IPv4 or IPv6 address: \"not an address\"");
  start(flowkiller({}, loaded->set));
  Enforcer* e = enforcer_.get();
  auto apply = [e](const FileSnapshot& snap, const char*) -> Result<void> {
    auto built = build_banned(snap);
    e->install_update([set = built.set](Detector& d) { static_cast<FlowkillerDetector&>(d).set_banned(set); });
    return {};
  };
  auto w = FileWatcher::start(WatchSpec{{cm + "/*.txt"}, true}, loaded->snapshot, apply,
                              [e] { e->count_reload_failure(); }, log_, -1, 20);
  ASSERT_TRUE(w) << w.error().message;
  watcher_ = std::move(*w);

  // kubelet's swap: a new timestamped dir, a new ..data symlink renamed over the old one.
  std::filesystem::create_directories(cm + "/..v2");
  testing::write_file(cm + "/..v2/pools.txt", prefix_ + ".2\n");
  std::filesystem::create_directory_symlink("..v2", cm + "/..data_tmp");
  std::filesystem::rename(cm + "/..data_tmp", cm + "/..data");
  std::filesystem::remove_all(cm + "/..v1");
  ASSERT_TRUE(eventually([&] { return enforcer_->config_generation() == 2; }));
  {
    Child child(dir_, testing::random_token());
    publish_connect(child.pid(), child.start_boot_ns(), prefix_ + ".2", 443);
    auto got = await_decision(child.pid());
    ASSERT_TRUE(got);
    EXPECT_EQ(got->decision().getAction(), schema::Action::KILLED);
    EXPECT_EQ(got->decision().getConfigGeneration(), 2u);
  }
  {
    Child child(dir_, testing::random_token());
    publish_connect(child.pid(), child.start_boot_ns(), prefix_ + ".1", 443);  // no longer banned
    auto got = await_decision(child.pid());
    ASSERT_TRUE(got);
    EXPECT_EQ(got->decision().getAction(), schema::Action::NO_MATCH);
    EXPECT_TRUE(child.alive());
  }
  // A new file matching the glob is picked up too.
  testing::write_file(cm + "/more.txt", prefix_ + ".3\n");
  ASSERT_TRUE(eventually([&] { return enforcer_->config_generation() == 3; }));
  Child child(dir_, testing::random_token());
  publish_connect(child.pid(), child.start_boot_ns(), prefix_ + ".3", 443);
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::KILLED);
  EXPECT_EQ(counter("config_reload_failures"), 0u);
}

}  // namespace
}  // namespace cryptnono::enforcer
