// The monero and flowkiller detectors with a fake Killer: the decision flow (read, decide,
// fill) without privileges or processes, with injected time for the fan-out window.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include <capnp/message.h>

#include "cryptnono/enforcer/flowkiller.h"
#include "cryptnono/enforcer/monero.h"
#include "enforcer_test_util.h"

namespace cryptnono::enforcer {
namespace {

using namespace std::string_literals;
using testing::FakeKiller;

constexpr uint64_t kSecond = 1'000'000'000ull;
constexpr uint32_t kTgid = 4242;
constexpr uint64_t kStart = 987'654'321;

std::string text(capnp::Text::Reader t) { return {t.cStr(), t.size()}; }
std::string data(capnp::Data::Reader d) { return {reinterpret_cast<const char*>(d.begin()), d.size()}; }

// Holds the event's message (the detector's views point into it) and the decision.
struct Harness {
  capnp::MallocMessageBuilder event;
  capnp::MallocMessageBuilder decision;

  schema::Decision::Reader run(Detector& d, uint64_t now = 0) {
    auto body = event.getRoot<schema::Envelope>().asReader().getBody();
    EXPECT_TRUE(d.read(body));
    d.decide(now);
    auto out = decision.initRoot<schema::Decision>();
    d.fill(out);
    return out.asReader();
  }
};

void fill_fpu(schema::FpuEvent::Builder ev) {
  ev.setPid(kTgid + 3);  // a worker thread
  ev.setTgid(kTgid);
  ev.setPpid(1);
  ev.setUid(1000);
  ev.setStartBootNs(kStart);
  ev.setComm("xmrig");
  ev.setCgroupId(77);
  ev.setCgroupName("kubepods/pod1/cri-containerd-abc.scope");
  ev.setMxcsr(0x7f80);  // round toward zero
  ev.setCount(200);
  ev.setThreshold(200);
  ev.setFirstBootNs(kStart + 5 * kSecond);
  ev.setEventBootNs(kStart + 6 * kSecond);
  ev.setCpu(1);
}

class MoneroTest : public ::testing::Test {
 protected:
  schema::Decision::Reader run(bool dry_run = false) {
    h_ = std::make_unique<Harness>();
    fill_fpu(h_->event.initRoot<schema::Envelope>().getBody().initFpu());
    detector_ = std::make_unique<MoneroDetector>(killer_, dry_run);
    return h_->run(*detector_);
  }
  FakeKiller killer_;
  std::unique_ptr<Harness> h_;
  std::unique_ptr<MoneroDetector> detector_;
};

TEST_F(MoneroTest, KillsTheVerifiedProcessAndSaysWhy) {
  killer_.proc_argv = "./xmrig\0--donate-level\0" "1\0"s;
  auto d = run();
  EXPECT_EQ(d.getAction(), schema::Action::KILLED);
  EXPECT_EQ(killer_.calls.pid, static_cast<pid_t>(kTgid));  // the process, not the thread
  EXPECT_EQ(killer_.calls.start, kStart);
  EXPECT_EQ(killer_.calls.reads, 1);
  EXPECT_EQ(killer_.calls.kills, 1);
  EXPECT_EQ(text(d.getDetector()), "monero");
  EXPECT_EQ(text(d.getSource()), "monero.bpf");
  EXPECT_EQ(text(d.getRule()), "rounding-mode");
  EXPECT_EQ(text(d.getReason()), "non-default FPU rounding mode at 200 context switches (threshold 200, MXCSR 0x7f80)");
  EXPECT_EQ(data(d.getCmdline()), "./xmrig --donate-level 1");
  EXPECT_TRUE(d.getCmdlineFromProc());
  EXPECT_EQ(d.getFpu().getMxcsr(), 0x7f80u);
  EXPECT_EQ(d.getFpu().getCount(), 200u);
  EXPECT_EQ(d.getFpu().getPid(), kTgid + 3);
  auto ev = d.getEvent();
  EXPECT_EQ(ev.getPid(), kTgid);
  EXPECT_EQ(ev.getTgid(), kTgid);
  EXPECT_EQ(ev.getPpid(), 1u);
  EXPECT_EQ(ev.getUid(), 1000u);
  EXPECT_EQ(ev.getStartBootNs(), kStart);
  EXPECT_EQ(ev.getExecBootNs(), 0u);
  EXPECT_EQ(text(ev.getComm()), "xmrig");
  EXPECT_EQ(ev.getCgroupId(), 77u);
  EXPECT_EQ(text(ev.getCgroupName()), "kubepods/pod1/cri-containerd-abc.scope");
  EXPECT_EQ(data(ev.getArgv()), killer_.proc_argv);
  EXPECT_GT(d.getDecidedBootNs(), 0u);
  EXPECT_GE(d.getKilledBootNs(), d.getDecidedBootNs());
}

TEST_F(MoneroTest, IdentityOutcomesMapToActionsAndNothingIsRead) {
  struct Case {
    KillOutcome open;
    schema::Action action;
  };
  const Case cases[] = {
      {{KillStatus::kExited, "process exited"}, schema::Action::MISSED_KILL},
      {{KillStatus::kReused, "pid reused (start time differs)"}, schema::Action::MISSED_KILL},
      {{KillStatus::kProtected, "protected: pid 1"}, schema::Action::SPARED},
      {{KillStatus::kError, "pidfd_open(4242): Operation not permitted"}, schema::Action::ERROR},
  };
  for (const auto& c : cases) {
    killer_.open_outcome = c.open;
    auto d = run();
    EXPECT_EQ(d.getAction(), c.action) << c.open.reason;
    EXPECT_EQ(text(d.getReason()), c.open.reason);
    EXPECT_EQ(d.getKilledBootNs(), 0u);
    EXPECT_EQ(d.getEvent().getArgv().size(), 0u);
    EXPECT_FALSE(d.getCmdlineFromProc());
    EXPECT_EQ(text(d.getRule()), "rounding-mode");
  }
  EXPECT_EQ(killer_.calls.reads, 0);
  EXPECT_EQ(killer_.calls.kills, 0);
}

TEST_F(MoneroTest, DryRunVerifiesAndReadsButDoesNotKill) {
  killer_.proc_argv = "xmrig\0"s;
  auto d = run(/*dry_run=*/true);
  EXPECT_EQ(d.getAction(), schema::Action::WOULD_KILL);
  EXPECT_EQ(killer_.calls.kills, 0);
  EXPECT_EQ(data(d.getCmdline()), "xmrig");
}

TEST_F(MoneroTest, AnUnreadableCmdlineDoesNotStopTheKill) {
  killer_.read_outcome = {KillStatus::kError, "read failed"};
  auto d = run();
  EXPECT_EQ(d.getAction(), schema::Action::KILLED);
  EXPECT_FALSE(d.getCmdlineFromProc());
  EXPECT_EQ(d.getCmdline().size(), 0u);
}

TEST_F(MoneroTest, AProcessThatExitsBeforeTheSignalIsAMissedKill) {
  killer_.kill_outcome = {KillStatus::kExited, "process exited"};
  EXPECT_EQ(run().getAction(), schema::Action::MISSED_KILL);
}

TEST(DetectorRead, OtherBodyKindsAreRefused) {
  FakeKiller killer;
  MoneroDetector monero(killer, false);
  FlowkillerDetector flow(killer, FlowkillerOptions{}, nullptr);
  capnp::MallocMessageBuilder mb;
  auto env = mb.initRoot<schema::Envelope>();
  env.getBody().initExec();
  EXPECT_FALSE(monero.read(env.asReader().getBody()));
  EXPECT_FALSE(flow.read(env.asReader().getBody()));
  env.getBody().initConnect();
  EXPECT_FALSE(monero.read(env.asReader().getBody()));
  EXPECT_TRUE(flow.read(env.asReader().getBody()));
  EXPECT_EQ(monero.topic(), "fpu");
  EXPECT_EQ(flow.topic(), "connect");
}

class FlowkillerTest : public ::testing::Test {
 protected:
  void make(FlowkillerOptions options = {}, const std::string& banned = "") {
    BannedList list;
    parse_banned_text(banned, "banned.txt", list);
    detector_ = std::make_unique<FlowkillerDetector>(killer_, options, std::make_shared<const BannedSet>(list));
  }

  // One connect of process (tgid, start) to destination:port at `now` seconds.
  schema::Decision::Reader connect(const std::string& destination, uint16_t port, double now_s,
                                   uint32_t tgid = kTgid, uint64_t start = kStart) {
    h_ = std::make_unique<Harness>();
    auto ev = h_->event.initRoot<schema::Envelope>().getBody().initConnect();
    ev.setPid(tgid);
    ev.setTgid(tgid);
    ev.setPpid(1);
    ev.setUid(1000);
    ev.setStartBootNs(start);
    ev.setComm("scanner");
    ev.setCgroupName("test/cgroup");
    uint8_t bytes[16] = {};
    bool v6 = destination.find(':') != std::string::npos;
    EXPECT_EQ(inet_pton(v6 ? AF_INET6 : AF_INET, destination.c_str(), bytes), 1) << destination;
    ev.setFamily(v6 ? schema::AddressFamily::IPV6 : schema::AddressFamily::IPV4);
    ev.setDestination(kj::arrayPtr(bytes, v6 ? 16 : 4));
    ev.setDestinationPort(port);
    ev.setEventBootNs(static_cast<uint64_t>(now_s * 1e9));
    return h_->run(*detector_, static_cast<uint64_t>((1000 + now_s) * 1e9));
  }

  FakeKiller killer_;
  std::unique_ptr<Harness> h_;
  std::unique_ptr<FlowkillerDetector> detector_;
};

TEST_F(FlowkillerTest, AnOrdinaryConnectIsNoMatchAndTouchesNoProcess) {
  make({}, "127.77.0.0/16\n");
  auto d = connect("10.0.0.5", 5432, 0);
  EXPECT_EQ(d.getAction(), schema::Action::NO_MATCH);
  EXPECT_EQ(killer_.calls.opens, 0);
  EXPECT_EQ(text(d.getDetector()), "flowkiller");
  EXPECT_EQ(text(d.getSource()), "flowkiller.bpf");
  EXPECT_EQ(text(d.getRule()), "");
  EXPECT_EQ(d.getConnect().getDestinationPort(), 5432u);
  EXPECT_EQ(d.getEvent().getPid(), kTgid);
  EXPECT_EQ(d.getEvent().getStartBootNs(), kStart);
  EXPECT_EQ(d.getEvent().getArgv().size(), 0u);  // noMatch stays cheap: no /proc read
  EXPECT_EQ(d.getCmdline().size(), 0u);
  EXPECT_EQ(d.getUniqueDestinations(), 0u);  // private: not counted

  auto pub = connect("8.8.8.8", 443, 1);
  EXPECT_EQ(pub.getAction(), schema::Action::NO_MATCH);
  EXPECT_EQ(pub.getUniqueDestinations(), 1u);
  EXPECT_EQ(killer_.calls.opens, 0);
}

TEST_F(FlowkillerTest, ABannedDestinationKillsAndNamesTheEntry) {
  make({}, "# pools\n1.2.3.4\n127.77.0.0/16\n2001:db8:77::/48\n");
  killer_.proc_argv = "./miner\0-o\0pool:3333\0"s;
  struct Case {
    const char* destination;
    const char* matched;
  };
  const Case cases[] = {
      {"127.77.1.2", "127.77.0.0/16"},
      {"1.2.3.4", "1.2.3.4"},
      {"::ffff:1.2.3.4", "1.2.3.4"},
      {"2001:db8:77::9", "2001:db8:77::/48"},
  };
  uint32_t tgid = 100;
  for (const auto& c : cases) {
    auto d = connect(c.destination, 3333, 0, ++tgid);
    EXPECT_EQ(d.getAction(), schema::Action::KILLED) << c.destination;
    EXPECT_EQ(text(d.getRule()), "banned");
    EXPECT_EQ(text(d.getMatched()), c.matched);
    EXPECT_NE(text(d.getReason()).find("banned.txt:"), std::string::npos) << text(d.getReason());
    EXPECT_EQ(data(d.getCmdline()), "./miner -o pool:3333");
    EXPECT_EQ(data(d.getEvent().getArgv()), killer_.proc_argv);
    EXPECT_EQ(killer_.calls.pid, static_cast<pid_t>(tgid));
  }
  EXPECT_EQ(killer_.calls.kills, 4);
}

TEST_F(FlowkillerTest, MoreThanTheThresholdOfPublicDestinationsKills) {
  FlowkillerOptions o;
  o.unique_destinations_threshold = 3;
  make(o);
  EXPECT_EQ(connect("8.8.8.1", 443, 0).getUniqueDestinations(), 1u);
  EXPECT_EQ(connect("8.8.8.1", 443, 1).getUniqueDestinations(), 1u);  // again: still one
  EXPECT_EQ(connect("8.8.8.2", 443, 2).getUniqueDestinations(), 2u);
  auto third = connect("2606:4700::1", 443, 3);
  EXPECT_EQ(third.getAction(), schema::Action::NO_MATCH);
  EXPECT_EQ(third.getUniqueDestinations(), 3u);
  EXPECT_EQ(killer_.calls.opens, 0);
  auto fourth = connect("8.8.8.1", 80, 4);  // another port is another destination
  EXPECT_EQ(fourth.getAction(), schema::Action::KILLED);
  EXPECT_EQ(text(fourth.getRule()), "fanout");
  EXPECT_EQ(fourth.getUniqueDestinations(), 4u);
  EXPECT_EQ(text(fourth.getReason()), "4 unique destinations within 30 s (more than 3)");
  EXPECT_EQ(killer_.calls.kills, 1);
}

TEST_F(FlowkillerTest, DestinationsOutsideTheLookbackAreNotCounted) {
  FlowkillerOptions o;
  o.unique_destinations_threshold = 2;
  o.lookback_seconds = 10;
  make(o);
  connect("8.8.8.1", 443, 0);
  connect("8.8.8.2", 443, 5);
  auto d = connect("8.8.8.3", 443, 11);  // 8.8.8.1 (at 0 s) is out of the 10 s window
  EXPECT_EQ(d.getUniqueDestinations(), 2u);
  EXPECT_EQ(d.getAction(), schema::Action::NO_MATCH);
  auto k = connect("8.8.8.4", 443, 12);
  EXPECT_EQ(k.getUniqueDestinations(), 3u);
  EXPECT_EQ(k.getAction(), schema::Action::KILLED);
  EXPECT_EQ(text(k.getReason()), "3 unique destinations within 10 s (more than 2)");
}

TEST_F(FlowkillerTest, NonPublicDestinationsCountOnlyWithCountAll) {
  FlowkillerOptions o;
  o.unique_destinations_threshold = 2;
  make(o);
  for (const char* a : {"127.0.0.1", "10.0.0.1", "192.168.1.1", "100.64.0.1", "::1", "fd00::1"})
    EXPECT_EQ(connect(a, 80, 1).getAction(), schema::Action::NO_MATCH) << a;
  EXPECT_EQ(killer_.calls.opens, 0);

  o.count_all_destinations = true;
  make(o);
  connect("127.0.0.1", 80, 1);
  connect("127.0.0.1", 81, 1);
  EXPECT_EQ(connect("127.0.0.2", 80, 1).getAction(), schema::Action::KILLED);
}

TEST_F(FlowkillerTest, LaterConnectsOfAKilledProcessAreNotJudgedAgain) {
  make({}, "127.77.0.0/16\n");
  EXPECT_EQ(connect("127.77.0.1", 80, 0).getAction(), schema::Action::KILLED);
  auto again = connect("127.77.0.1", 80, 0);  // queued before the kill landed
  EXPECT_EQ(again.getAction(), schema::Action::NO_MATCH);
  EXPECT_EQ(text(again.getReason()), "process already killed by the flowkiller");
  EXPECT_EQ(killer_.calls.opens, 1);
  // A new process with the same pid (another start time) is judged.
  EXPECT_EQ(connect("127.77.0.1", 80, 0, kTgid, kStart + 1).getAction(), schema::Action::KILLED);
}

TEST_F(FlowkillerTest, DryRunWouldKillAndStartsCountingAfresh) {
  FlowkillerOptions o;
  o.unique_destinations_threshold = 1;
  o.dry_run = true;
  make(o);
  connect("8.8.8.1", 443, 0);
  EXPECT_EQ(connect("8.8.8.2", 443, 1).getAction(), schema::Action::WOULD_KILL);
  EXPECT_EQ(connect("8.8.8.3", 443, 2).getUniqueDestinations(), 1u);  // judged: forgotten
  EXPECT_EQ(connect("8.8.8.4", 443, 3).getAction(), schema::Action::WOULD_KILL);
  EXPECT_EQ(killer_.calls.kills, 0);
}

TEST_F(FlowkillerTest, FailedKillsSayWhyFirst) {
  make({}, "127.77.0.0/16\n");
  killer_.open_outcome = {KillStatus::kProtected, "protected: pid 1"};
  auto spared = connect("127.77.0.1", 80, 0, 1);
  EXPECT_EQ(spared.getAction(), schema::Action::SPARED);
  EXPECT_EQ(text(spared.getReason()).rfind("protected: pid 1; destination 127.77.0.1 is banned", 0), 0u)
      << text(spared.getReason());
  killer_.open_outcome = {KillStatus::kReused, "pid reused (start time differs)"};
  auto missed = connect("127.77.0.1", 80, 0);
  EXPECT_EQ(missed.getAction(), schema::Action::MISSED_KILL);
  EXPECT_EQ(text(missed.getRule()), "banned");
  EXPECT_EQ(missed.getEvent().getArgv().size(), 0u);
}

TEST_F(FlowkillerTest, AMalformedDestinationIsAnError) {
  make();
  h_ = std::make_unique<Harness>();
  auto ev = h_->event.initRoot<schema::Envelope>().getBody().initConnect();
  ev.setTgid(kTgid);
  ev.setStartBootNs(kStart);
  uint8_t five[5] = {1, 2, 3, 4, 5};
  ev.setDestination(kj::arrayPtr(five, 5));
  auto d = h_->run(*detector_, kSecond);
  EXPECT_EQ(d.getAction(), schema::Action::ERROR);
  EXPECT_EQ(text(d.getReason()), "destination is 5 bytes (4 or 16 expected)");
  EXPECT_EQ(killer_.calls.opens, 0);
}

TEST_F(FlowkillerTest, ANewBannedListServesFromTheNextConnect) {
  make({}, "1.1.1.1\n");
  EXPECT_EQ(connect("9.9.9.9", 53, 0, 500).getAction(), schema::Action::NO_MATCH);
  BannedList list;
  parse_banned_text("9.9.9.0/24\n", "new.txt", list);
  detector_->set_banned(std::make_shared<const BannedSet>(list));
  auto d = connect("9.9.9.9", 53, 1, 501);
  EXPECT_EQ(d.getAction(), schema::Action::KILLED);
  EXPECT_EQ(text(d.getMatched()), "9.9.9.0/24");
  EXPECT_EQ(connect("1.1.1.1", 53, 2, 502).getAction(), schema::Action::NO_MATCH);
  EXPECT_NE(detector_->describe().find("1 banned destinations"), std::string::npos) << detector_->describe();
}

// What one connect costs the event thread on the common path (noMatch, public
// destination, fan-out bookkeeping, 100,000 banned networks, the decision written), and
// one banned-list lookup. Printed for BENCHMARKS.md; bounded loosely so a regression of
// an order of magnitude fails.
TEST(FlowkillerFigures, ACommonConnectCostsMicrosecondsAtMost) {
  BannedList list;
  std::string text;
  for (int i = 0; i < 100000; ++i)
    text += std::to_string(20 + i / 65536) + "." + std::to_string((i / 256) % 256) + "." + std::to_string(i % 256) +
            ".0/24\n";
  parse_banned_text(text, "big.txt", list);
  auto set = std::make_shared<const BannedSet>(list);
  ASSERT_EQ(set->size(), 100000u);
  FakeKiller killer;
  FlowkillerOptions o;
  o.unique_destinations_threshold = 100;
  o.max_destinations_per_process = 200;
  FlowkillerDetector detector(killer, o, set);

  constexpr int kMessages = 1000;
  std::vector<std::unique_ptr<capnp::MallocMessageBuilder>> events;
  for (int i = 0; i < kMessages; ++i) {
    events.push_back(std::make_unique<capnp::MallocMessageBuilder>());
    auto ev = events.back()->initRoot<schema::Envelope>().getBody().initConnect();
    ev.setTgid(static_cast<uint32_t>(1000 + i % 100));
    ev.setStartBootNs(kStart);
    ev.setComm("worker");
    uint8_t dest[4] = {8, 8, static_cast<uint8_t>(i / 256), static_cast<uint8_t>(i)};
    ev.setDestination(kj::arrayPtr(dest, 4));
    ev.setDestinationPort(443);
  }
  kj::Array<capnp::word> segment = kj::heapArray<capnp::word>(4096);
  constexpr int kRounds = 100;
  uint64_t now = 1000 * kSecond;
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < kRounds; ++r) {
    for (int i = 0; i < kMessages; ++i) {
      ASSERT_TRUE(detector.read(events[i]->getRoot<schema::Envelope>().asReader().getBody()));
      now += 10'000;  // 10 us apart
      ASSERT_EQ(detector.decide(now), schema::Action::NO_MATCH);
      std::memset(segment.begin(), 0, segment.size() * sizeof(capnp::word));
      capnp::MallocMessageBuilder out(segment.asPtr());
      detector.fill(out.initRoot<schema::Decision>());
    }
  }
  double per_connect_ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / (kRounds * kMessages);

  auto probe = parse_address("8.8.4.4");
  ASSERT_TRUE(probe);
  constexpr int kLookups = 200000;
  size_t hits = 0;
  auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < kLookups; ++i) {
    probe->bytes[3] = static_cast<uint8_t>(i);
    probe->bytes[0] = static_cast<uint8_t>(i % 2 == 0 ? 8 : 20);  // half of them hit 20.0.x.0/24
    hits += set->find(*probe) != nullptr;
  }
  double per_lookup_ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t1).count() / kLookups;
  EXPECT_EQ(hits, static_cast<size_t>(kLookups / 2));
  EXPECT_EQ(killer.calls.opens, 0);
  std::printf("[ figures  ] flowkiller: %.0f ns per noMatch connect (read, decide, decision; 100k banned /24s, 100 "
              "processes x 10 public destinations); banned lookup %.0f ns\n",
              per_connect_ns, per_lookup_ns);
  EXPECT_LT(per_connect_ns, 50'000.0);
  EXPECT_LT(per_lookup_ns, 10'000.0);
}

TEST(FlowkillerOptions, ThePerProcessBoundMustExceedTheThreshold) {
  FlowkillerOptions o;
  EXPECT_EQ(validate(o), "");
  o.max_destinations_per_process = o.unique_destinations_threshold;
  EXPECT_NE(validate(o), "");
  o = {};
  o.lookback_seconds = 0;
  EXPECT_NE(validate(o), "");
}

}  // namespace
}  // namespace cryptnono::enforcer
