// The enforcer loop in-process, over real ZeroMQ sockets (ipc in a temp dir), killing
// real child processes. The test plays the collector (publishes ExecEvents) and the
// exporter (subscribes to decisions and stats). Every test bans its own random string.
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <thread>

#include <capnp/message.h>

#include "cryptnono/clock.h"
#include "cryptnono/enforcer/app.h"
#include "cryptnono/enforcer/enforcer.h"
#include "cryptnono/enforcer/text.h"
#include "cryptnono/enforcer/watcher.h"
#include "cryptnono/log.h"
#include "cryptnono/transport.h"
#include "enforcer_test_util.h"

namespace cryptnono::enforcer {
namespace {

using namespace std::chrono_literals;
using testing::Child;
using testing::EventSpec;

std::string text(capnp::Text::Reader t) { return {t.cStr(), t.size()}; }
std::string data(capnp::Data::Reader d) { return {reinterpret_cast<const char*>(d.begin()), d.size()}; }

// A decision or stats message copied out of the receive buffer.
struct Got {
  std::unique_ptr<capnp::MallocMessageBuilder> message = std::make_unique<capnp::MallocMessageBuilder>();
  schema::Envelope::Reader envelope() { return message->getRoot<schema::Envelope>().asReader(); }
  schema::Decision::Reader decision() { return envelope().getBody().getDecision(); }
};

class EnforcerLoop : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir();
    config_dir_ = dir_ + "/config";
    std::filesystem::create_directories(config_dir_);
    config_path_ = config_dir_ + "/execwhacker.json";
    token_ = testing::random_token();
    exec_ep_ = "ipc://" + dir_ + "/collector.sock";
    decision_ep_ = "ipc://" + dir_ + "/execwhacker.sock";
    raw_ep_ = "ipc://" + dir_ + "/raw.sock";
    log_ = make_logger("enforcer-test", "warn");
  }

  void TearDown() override {
    stop();
    std::filesystem::remove_all(dir_);
  }

  // Starts the enforcer loop on its own thread with `config_text` in config_path_.
  void start(const std::string& config_text, bool dry_run = false) {
    testing::write_file(config_path_, config_text);
    auto rules = load_rules({config_path_}, start_compile_);
    ASSERT_TRUE(rules) << rules.error().message;
    const bool layered = rules->matcher->layered();

    auto pub = Publisher::bind(ctx_, exec_ep_, "test-node", "collector", "collector");
    ASSERT_TRUE(pub) << pub.error().message;
    collector_ = std::move(*pub);

    EnforcerOptions options;
    options.connect = {exec_ep_, raw_ep_};
    options.bind = decision_ep_;
    options.node = "test-node";
    options.dry_run = dry_run;
    options.stats_interval_ms = stats_interval_ms_;
    options.no_match_batch_ms = no_match_batch_ms_;
    options.kill_decision_delay_ms = kill_decision_delay_ms_;
    auto serving = rules->matcher->base();
    auto e = Enforcer::create(ctx_, options, killer_, std::move(rules->matcher), log_);
    ASSERT_TRUE(e) << e.error().message;
    enforcer_ = std::move(*e);

    auto sub = Subscriber::connect(ctx_, {decision_ep_}, {std::string(topic::kDecision), std::string(topic::kStats)});
    ASSERT_TRUE(sub);
    decisions_ = std::move(*sub);

    Enforcer* raw = enforcer_.get();
    ConfigWatcher::Callbacks callbacks{[raw](std::unique_ptr<Matcher> m) { raw->install(std::move(m)); },
                                       [raw] { raw->count_reload_failure(); },
                                       [this, raw](std::unique_ptr<Matcher> m) {
                                         raw->install(std::move(m), true);
                                         ++compacted_;
                                       }};
    auto w = ConfigWatcher::start({config_path_}, std::move(rules->contents), std::move(serving), layered,
                                  std::move(callbacks), log_, -1, 20);
    ASSERT_TRUE(w) << w.error().message;
    watcher_ = std::move(*w);

    thread_ = std::thread([raw] { raw->run(); });
    handshake();
  }

  void stop() {
    if (enforcer_) enforcer_->stop();
    if (thread_.joinable()) thread_.join();
    watcher_.reset();
    enforcer_.reset();
    decisions_.reset();
    collector_.reset();
  }

  void publish(const EventSpec& spec) {
    capnp::MallocMessageBuilder mb;
    auto env = collector_->begin(mb, topic::kExec);
    testing::fill_event(env.getBody().initExec(), spec);
    ASSERT_TRUE(collector_->send(topic::kExec, mb));
  }

  // Waits for the next message on the decision socket that satisfies `want`.
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

  // PUB/SUB connections join asynchronously: publish harmless events until one's decision
  // comes back, so both directions are connected.
  void handshake() {
    for (int i = 0; i < 200; ++i) {
      EventSpec probe;
      probe.pid = getpid();
      probe.start_boot_ns = 1;
      probe.filename = "/bin/probe";
      probe.argv = "probe";
      publish(probe);
      if (await_decision(getpid(), 50ms)) return;
    }
    FAIL() << "the enforcer never answered";
  }

  EventSpec event_for(const Child& child, schema::Source source = schema::Source::BPF) {
    EventSpec spec;
    spec.source = source;
    spec.pid = child.pid();
    spec.start_boot_ns = child.start_boot_ns();
    if (source == schema::Source::BPF) spec.filename = child.path();
    spec.argv = child.argv_area();
    return spec;
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
      std::this_thread::sleep_for(5ms);  // test-side only: the enforcer itself never polls
    }
    return pred();
  }

  std::atomic<int> compacted_{0};  // matchers rebuilt whole after a layered reload
  Matcher::Compile start_compile_ = Matcher::Compile::kOnce;
  uint32_t no_match_batch_ms_ = EnforcerOptions{}.no_match_batch_ms;
  uint32_t kill_decision_delay_ms_ = EnforcerOptions{}.kill_decision_delay_ms;
  uint32_t stats_interval_ms_ = 100;
  zmq::context_t ctx_;
  std::string dir_, config_dir_, config_path_, token_, exec_ep_, decision_ep_, raw_ep_;
  std::shared_ptr<spdlog::logger> log_;
  PidfdKiller killer_{ProcReader("/proc"), getpid()};
  std::unique_ptr<Publisher> collector_;
  std::unique_ptr<Subscriber> decisions_;
  std::unique_ptr<Enforcer> enforcer_;
  std::unique_ptr<ConfigWatcher> watcher_;
  std::thread thread_;
};

TEST_F(EnforcerLoop, KillsAChildWhoseCommandLineHoldsTheBannedString) {
  start(testing::config_json({token_}));
  Child child(dir_, token_);
  ASSERT_GT(child.pid(), 0);
  uint64_t before = boot_ns();
  publish(event_for(child));
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  int status = child.wait_for_exit();
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  auto d = got->decision();
  EXPECT_EQ(d.getAction(), schema::Action::KILLED);
  EXPECT_EQ(text(d.getDetector()), "execwhacker");
  EXPECT_EQ(text(d.getSource()), "execwhacker.bpf");
  EXPECT_EQ(text(d.getMatched()), token_);
  EXPECT_EQ(data(d.getCmdline()), casefold(child.path()) + " 60");
  EXPECT_FALSE(d.getCmdlineFromProc());
  EXPECT_EQ(data(d.getEvent().getArgv()), child.argv_area());
  EXPECT_EQ(d.getConfigGeneration(), 1u);
  // The collector's publish time of the event (its envelope), between our clock read and
  // the enforcer's receipt.
  EXPECT_GE(d.getEventSentBootNs(), before);
  EXPECT_LE(d.getEventSentBootNs(), d.getReceivedBootNs());
  EXPECT_GE(d.getReceivedBootNs(), before);
  EXPECT_GE(d.getDecidedBootNs(), d.getReceivedBootNs());
  EXPECT_GE(d.getKilledBootNs(), d.getDecidedBootNs());
  EXPECT_EQ(text(got->envelope().getPublisherKind()), "enforcer");
}

TEST_F(EnforcerLoop, ASweepEventIsJudgedOnArgvAndLabelledScan) {
  start(testing::config_json({token_}));
  Child child(dir_, token_);
  publish(event_for(child, schema::Source::SCAN));
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::KILLED);
  EXPECT_EQ(text(got->decision().getSource()), "execwhacker.scan");
  EXPECT_TRUE(WIFSIGNALED(child.wait_for_exit()));
}

TEST_F(EnforcerLoop, AWrongStartTimeIsAMissedKillAndTheChildLives) {
  start(testing::config_json({token_}));
  Child child(dir_, token_);
  auto spec = event_for(child);
  spec.start_boot_ns += 7 * (1'000'000'000ull / clock_ticks_per_second());  // another process's start
  publish(spec);
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::MISSED_KILL);
  EXPECT_EQ(text(got->decision().getReason()), "pid reused (start time differs)");
  EXPECT_EQ(got->decision().getKilledBootNs(), 0u);
  EXPECT_TRUE(child.alive());
  EXPECT_EQ(counter("missed"), 1u);
}

TEST_F(EnforcerLoop, DryRunPublishesWouldKillAndTheChildLives) {
  start(testing::config_json({token_}), /*dry_run=*/true);
  Child child(dir_, token_);
  publish(event_for(child));
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::WOULD_KILL);
  EXPECT_TRUE(child.alive());
  EXPECT_EQ(counter("would_kill"), 1u);
  EXPECT_EQ(counter("killed"), 0u);
}

TEST_F(EnforcerLoop, ATruncatedEventIsJudgedOnTheFullCmdlineFromProc) {
  start(testing::config_json({token_}));
  Child child(dir_, token_);
  auto spec = event_for(child, schema::Source::SCAN);
  spec.full_length = static_cast<uint32_t>(spec.argv.size());
  spec.argv = spec.argv.substr(0, 4);  // "/tmp": the token is beyond the cut
  spec.truncated = true;
  publish(spec);
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::KILLED);
  EXPECT_TRUE(got->decision().getCmdlineFromProc());
  EXPECT_EQ(data(got->decision().getCmdline()), casefold(child.path()) + " 60");
  EXPECT_TRUE(WIFSIGNALED(child.wait_for_exit()));
}

TEST_F(EnforcerLoop, AllowedPatternSparesAndTheChildLives) {
  start(testing::config_json({token_}, {"^" + dir_ + "/"}));
  Child child(dir_, token_);
  publish(event_for(child));
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::SPARED);
  EXPECT_EQ(text(got->decision().getAllowedBy()), "^" + dir_ + "/");
  EXPECT_TRUE(child.alive());
}

TEST_F(EnforcerLoop, NoMatchDecisionsLeaveOutArgvAndCmdline) {
  start(testing::config_json({token_}));
  Child child(dir_, testing::random_token());  // not banned
  publish(event_for(child));
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  auto d = got->decision();
  EXPECT_EQ(d.getAction(), schema::Action::NO_MATCH);
  EXPECT_EQ(d.getCmdline().size(), 0u);
  EXPECT_EQ(d.getEvent().getArgv().size(), 0u);
  EXPECT_EQ(data(d.getEvent().getFilename()), child.path());
  EXPECT_EQ(d.getEvent().getStartBootNs(), child.start_boot_ns());
  EXPECT_TRUE(child.alive());
}

TEST_F(EnforcerLoop, NoMatchDecisionsAreHeldAndAKillSendsThemFirstInOrder) {
  no_match_batch_ms_ = 1000;  // long enough to see them held
  kill_decision_delay_ms_ = 0;  // a killed decision at once
  stats_interval_ms_ = 60'000;  // a stats message sends the held decisions first
  start(testing::config_json({token_}));
  // The handshake's probes came back: a held batch goes out within no_match_batch_ms.
  std::deque<Child> benign;  // Child cannot move
  for (int i = 0; i < 3; ++i) benign.emplace_back(dir_, testing::random_token());
  for (const auto& c : benign) publish(event_for(c));
  EXPECT_FALSE(await_decision(benign[0].pid(), 300ms)) << "a no-match decision went out before its batch";
  Child victim(dir_, token_);
  publish(event_for(victim));
  // The kill goes out at once, after the three no-match decisions, in sequence order.
  std::vector<std::pair<uint32_t, uint64_t>> seen;  // (pid, sequence)
  auto kill = await([&](schema::Envelope::Reader e) {
    if (!e.getBody().isDecision()) return false;
    seen.emplace_back(e.getBody().getDecision().getEvent().getPid(), e.getSequence());
    return e.getBody().getDecision().getEvent().getPid() == static_cast<uint32_t>(victim.pid());
  }, 500ms);
  ASSERT_TRUE(kill) << "the kill decision was held";
  EXPECT_EQ(kill->decision().getAction(), schema::Action::KILLED);
  ASSERT_GE(seen.size(), 4u);
  auto tail = std::vector<std::pair<uint32_t, uint64_t>>(seen.end() - 4, seen.end());
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(tail[i].first, static_cast<uint32_t>(benign[i].pid()));
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(tail[i].second, tail[i - 1].second + 1);
  EXPECT_TRUE(eventually([&] { return !victim.alive(); }));
  for (auto& c : benign) EXPECT_TRUE(c.alive());
}

TEST_F(EnforcerLoop, AKilledDecisionFollowsTheKillAfterItsDelayWithTheHeldOnesBeforeIt) {
  no_match_batch_ms_ = 1000;
  kill_decision_delay_ms_ = 150;
  stats_interval_ms_ = 60'000;
  start(testing::config_json({token_}));
  Child benign(dir_, testing::random_token());
  publish(event_for(benign));
  EXPECT_FALSE(await_decision(benign.pid(), 200ms)) << "a no-match decision went out before its batch";
  Child victim(dir_, token_);
  const auto published = std::chrono::steady_clock::now();
  publish(event_for(victim));
  // Killed at once; the decision comes kill_decision_delay_ms later (the timer cannot fire
  // sooner), the held no-match one first, long before that one's own batch was due.
  EXPECT_TRUE(eventually([&] { return !victim.alive(); }));
  std::vector<uint32_t> pids;
  auto kill = await([&](schema::Envelope::Reader e) {
    if (!e.getBody().isDecision()) return false;
    pids.push_back(e.getBody().getDecision().getEvent().getPid());
    return pids.back() == static_cast<uint32_t>(victim.pid());
  }, 600ms);
  const auto waited = std::chrono::steady_clock::now() - published;
  ASSERT_TRUE(kill) << "the kill decision waited for the no-match batch";
  EXPECT_EQ(kill->decision().getAction(), schema::Action::KILLED);
  EXPECT_GE(waited, 150ms);
  EXPECT_EQ(pids, (std::vector<uint32_t>{static_cast<uint32_t>(benign.pid()), static_cast<uint32_t>(victim.pid())}));
  EXPECT_TRUE(benign.alive());
}

TEST_F(EnforcerLoop, EditingTheConfigOnDiskTakesEffectWithoutRestart) {
  start(testing::config_json({token_}));
  std::string second = testing::random_token();
  testing::replace_file(config_path_, testing::config_json({token_, second}));
  ASSERT_TRUE(eventually([&] { return enforcer_->config_generation() == 2; }));
  Child child(dir_, second);
  publish(event_for(child));
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::KILLED);
  EXPECT_EQ(got->decision().getConfigGeneration(), 2u);
  EXPECT_TRUE(WIFSIGNALED(child.wait_for_exit()));
  EXPECT_EQ(counter("config_reloads"), 1u);

  // Writing in place (truncate, write, close) is picked up as well.
  std::string third = testing::random_token();
  testing::write_file(config_path_, testing::config_json({third}));
  ASSERT_TRUE(eventually([&] { return enforcer_->config_generation() == 3; }));
  Child third_child(dir_, third);
  publish(event_for(third_child));
  auto got3 = await_decision(third_child.pid());
  ASSERT_TRUE(got3);
  EXPECT_EQ(got3->decision().getAction(), schema::Action::KILLED);
  EXPECT_EQ(counter("config_reload_failures"), 0u);
}

// A reload that adds and drops a string compiles only the new one on top of the serving
// database (in force at once), then rebuilds the config whole in the background and
// swaps it in: the same rules, so one config generation and one reload.
TEST_F(EnforcerLoop, AReloadOfAFewStringsIsLayeredThenRebuiltWholeAsTheSameGeneration) {
  const std::string dropped = testing::random_token(), added = testing::random_token();
  start(testing::config_json({token_, dropped}));
  testing::replace_file(config_path_, testing::config_json({token_, added}));
  ASSERT_TRUE(eventually([&] { return enforcer_->config_generation() == 2; }));
  auto judge = [&](const std::string& arg) {
    Child child(dir_, arg);
    publish(event_for(child));
    auto got = await_decision(child.pid());
    EXPECT_TRUE(got);
    auto action = got ? got->decision().getAction() : schema::Action::ERROR;
    if (got) {
      EXPECT_EQ(got->decision().getConfigGeneration(), 2u);
    }
    if (action == schema::Action::KILLED) {
      EXPECT_TRUE(WIFSIGNALED(child.wait_for_exit()));
    } else {
      EXPECT_TRUE(child.alive());
    }
    return action;
  };
  EXPECT_EQ(judge(added), schema::Action::KILLED);
  EXPECT_EQ(judge(dropped), schema::Action::NO_MATCH);
  EXPECT_EQ(judge(token_), schema::Action::KILLED);

  ASSERT_TRUE(eventually([&] { return compacted_.load() == 1; }));
  EXPECT_EQ(judge(added), schema::Action::KILLED);
  EXPECT_EQ(judge(dropped), schema::Action::NO_MATCH);
  EXPECT_EQ(judge(token_), schema::Action::KILLED);
  EXPECT_EQ(enforcer_->config_generation(), 2u);
  EXPECT_EQ(counter("config_reloads"), 1u);
}

// A long start-up list compiled in two halves at once serves at once, and the watcher
// rebuilds it as one database first thing: the same rules, generation 1, no reload.
TEST_F(EnforcerLoop, AStartUpListCompiledInTwoHalvesIsRebuiltWholeAndKeepsKilling) {
  std::vector<std::string> banned;
  for (int i = 0; i < 24'000; ++i) banned.push_back("cnnt-filler-" + std::to_string(i) + "-" + token_.substr(0, 6));
  banned.push_back(token_);  // last: in the second half
  start_compile_ = Matcher::Compile::kTwoHalves;
  start(testing::config_json(banned));
  auto judge = [&] {
    Child child(dir_, token_);
    publish(event_for(child));
    auto got = await_decision(child.pid());
    EXPECT_TRUE(got);
    if (!got) return schema::Action::ERROR;
    EXPECT_EQ(got->decision().getConfigGeneration(), 1u);
    EXPECT_TRUE(WIFSIGNALED(child.wait_for_exit()));
    return got->decision().getAction();
  };
  EXPECT_EQ(judge(), schema::Action::KILLED);
  ASSERT_TRUE(eventually([&] { return compacted_.load() == 1; }, 60s));
  EXPECT_EQ(judge(), schema::Action::KILLED);
  EXPECT_EQ(enforcer_->config_generation(), 1u);
  EXPECT_EQ(counter("config_reloads"), 0u);
}

TEST_F(EnforcerLoop, ABadEditIsRefusedAndTheOldConfigKeepsKilling) {
  start(testing::config_json({token_}));
  std::string second = testing::random_token();
  testing::replace_file(config_path_, "{\"bannedCommandStrings\": [\"" + second + "\",\n 42]}");
  ASSERT_TRUE(eventually([&] { return counter("config_reload_failures") == 1; }));
  EXPECT_EQ(enforcer_->config_generation(), 1u);

  Child old_target(dir_, token_);
  publish(event_for(old_target));
  auto got = await_decision(old_target.pid());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::KILLED);
  EXPECT_EQ(got->decision().getConfigGeneration(), 1u);
  EXPECT_TRUE(WIFSIGNALED(old_target.wait_for_exit()));

  // A regex RE2 refuses is a bad config too; fixing the file then works.
  testing::replace_file(config_path_, testing::config_json({second}, {"(?!lookahead)"}));
  ASSERT_TRUE(eventually([&] { return counter("config_reload_failures") == 2; }));
  testing::replace_file(config_path_, testing::config_json({second}));
  ASSERT_TRUE(eventually([&] { return enforcer_->config_generation() == 2; }));
  EXPECT_EQ(counter("config_reload_failures"), 2u);
}

TEST_F(EnforcerLoop, AKubernetesConfigMapSymlinkSwapIsPickedUp) {
  // The layout a ConfigMap volume has: file -> ..data/file, ..data -> ..<timestamp>/.
  std::string v1 = config_dir_ + "/..2024_01_01_v1";
  std::filesystem::create_directories(v1);
  testing::write_file(v1 + "/execwhacker.json", testing::config_json({token_}));
  std::filesystem::create_directory_symlink("..2024_01_01_v1", config_dir_ + "/..data");
  std::filesystem::remove(config_path_);
  std::filesystem::create_symlink("..data/execwhacker.json", config_path_);
  // start() writes through the symlink: same content.
  start(testing::config_json({token_}));

  std::string second = testing::random_token();
  std::string v2 = config_dir_ + "/..2024_01_02_v2";
  std::filesystem::create_directories(v2);
  testing::write_file(v2 + "/execwhacker.json", testing::config_json({second}));
  std::filesystem::create_directory_symlink("..2024_01_02_v2", config_dir_ + "/..data_tmp");
  std::filesystem::rename(config_dir_ + "/..data_tmp", config_dir_ + "/..data");  // what kubelet does
  std::filesystem::remove_all(v1);
  ASSERT_TRUE(eventually([&] { return enforcer_->config_generation() == 2; }));

  Child child(dir_, second);
  publish(event_for(child));
  auto got = await_decision(child.pid());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::KILLED);
}

TEST_F(EnforcerLoop, ReloadRequestWithUnchangedContentDoesNotRebuild) {
  start(testing::config_json({token_}));
  uint64_t checks = watcher_->checks();
  watcher_->request_reload();
  ASSERT_TRUE(eventually([&] { return watcher_->checks() > checks; }));
  EXPECT_EQ(enforcer_->config_generation(), 1u);
  EXPECT_EQ(counter("config_reloads"), 0u);
}

TEST_F(EnforcerLoop, MalformedMessagesAndSequenceGapsAreCounted) {
  start(testing::config_json({token_}));
  uint64_t received = counter("events_received");
  // A gap: take a sequence number and never send it.
  {
    capnp::MallocMessageBuilder skipped;
    collector_->begin(skipped, topic::kExec);
  }
  // Not an exec body on the exec topic.
  {
    capnp::MallocMessageBuilder mb;
    collector_->begin(mb, topic::kExec).getBody().initStats();
    ASSERT_TRUE(collector_->send(topic::kExec, mb));
  }
  // Garbage from a second publisher the enforcer also subscribes to: a bad segment
  // table (refused while framing) and a well-framed message whose root pointer points
  // out of bounds (refused while decoding).
  zmq::socket_t raw(ctx_, zmq::socket_type::pub);
  raw.bind(raw_ep_);
  const uint32_t bad_table[4] = {0, 0x7fffffff, 0, 0};
  const uint32_t bad_pointer[4] = {0, 1, 0x7ffffff0, 0x00010000};
  ASSERT_TRUE(eventually([&] {
    raw.send(zmq::str_buffer("exec"), zmq::send_flags::sndmore);
    raw.send(zmq::buffer(bad_table, sizeof bad_table), zmq::send_flags::none);
    raw.send(zmq::str_buffer("exec"), zmq::send_flags::sndmore);
    raw.send(zmq::buffer(bad_pointer, sizeof bad_pointer), zmq::send_flags::none);
    return counter("malformed") >= 3;  // the stats body above, and at least one of each
  }));
  Child child(dir_, token_);
  publish(event_for(child));  // something valid after the gap
  ASSERT_TRUE(await_decision(child.pid()));
  EXPECT_TRUE(WIFSIGNALED(child.wait_for_exit()));
  EXPECT_EQ(counter("events_lost"), 1u);
  EXPECT_EQ(counter("events_received"), received + 1);
}

TEST_F(EnforcerLoop, StatsCarryTheContractsCounters) {
  start(testing::config_json({token_}));
  auto got = await([](schema::Envelope::Reader e) { return e.getBody().isStats(); });
  ASSERT_TRUE(got);
  auto stats = got->envelope().getBody().getStats();
  EXPECT_EQ(stats.getIntervalMs(), 100u);
  std::vector<std::string> names;
  for (auto c : stats.getCounters()) names.push_back(text(c.getName()));
  const std::vector<std::string> expected = {"events_received", "events_lost", "malformed", "decisions", "killed",
                                             "spared", "missed", "would_kill", "errors", "config_reloads",
                                             "config_reload_failures", "config_generation", "send_drops",
                                             "publisher_restarts", "direct_events", "duplicates", "ring_events",
                                             "ring_batched"};
  EXPECT_EQ(names, expected);
  EXPECT_EQ(text(got->envelope().getPublisherKind()), "enforcer");
  EXPECT_EQ(text(got->envelope().getNode()), "test-node");
}

TEST_F(EnforcerLoop, HostileEventsAreDecidedNotCrashedOn) {
  start(testing::config_json({token_}));
  std::string argv;
  for (int i = 0; i < 300000; ++i) argv.push_back(static_cast<char>((i * 7919) & 0xff));
  EventSpec spec;
  spec.pid = 999'999'999;  // no such process
  spec.start_boot_ns = 1;
  spec.filename = "\xff\xfe'\"\n";
  spec.argv = argv + std::string("\0", 1) + token_;
  publish(spec);
  auto got = await_decision(999'999'999);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->decision().getAction(), schema::Action::MISSED_KILL);
  EXPECT_EQ(text(got->decision().getReason()), "process exited");
}

// A kernel ring the enforcer cannot map is handed back (it leaves the direct socket, so the
// collector stops flagging execs for it) and the direct path carries everything again. A
// stand-in collector (a Publisher with a direct socket) offers a memfd with an impossible
// size; the real ring is covered by tests/bpf and the integration tests.
TEST(EnforcerKernelRing, ARingThatCannotBeMappedIsHandedBackAndTheDirectPathCarriesOn) {
  char tmpl[] = "/tmp/cryptnono-ring-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string config = dir + "/config.json";
  const std::string token = testing::random_token();
  testing::write_file(config, testing::config_json({token}));
  zmq::context_t ctx;
  auto collector = Publisher::bind(ctx, "ipc://" + dir + "/collector.sock", "n", "collector", "collector");
  ASSERT_TRUE(collector);
  ASSERT_TRUE((*collector)->add_direct(dir + "/collector.direct"));
  int memfd = memfd_create("not-a-ring", MFD_CLOEXEC);
  ASSERT_GE(memfd, 0);
  std::vector<bool> holds;
  ASSERT_TRUE((*collector)->offer_kernel_ring(std::string(topic::kExec), memfd, 12345,
                                              [&holds](bool held) { holds.push_back(held); }));
  auto rules = load_rules({config}, Matcher::Compile::kOnce);
  ASSERT_TRUE(rules) << rules.error().message;
  EnforcerOptions options;
  options.connect = {"ipc://" + dir + "/collector.sock"};
  options.direct = dir + "/collector.direct";
  options.bind = "ipc://" + dir + "/decisions.sock";
  options.node = "n";
  options.no_match_batch_ms = 0;
  PidfdKiller killer{ProcReader("/proc"), getpid()};
  auto enforcer = Enforcer::create(ctx, options, killer, std::move(rules->matcher), make_logger("ring-test", "warn"));
  ASSERT_TRUE(enforcer) << enforcer.error().message;
  auto decisions = Subscriber::connect(ctx, {options.bind}, {std::string(topic::kDecision)});
  ASSERT_TRUE(decisions);
  std::thread loop([&] { (*enforcer)->run(); });

  // Events keep coming (the stand-in serves its direct socket between them) until the ring
  // was granted, handed back, and events flow over the reconnected direct path again.
  uint32_t pid = 4'000'000;
  uint64_t decided_after = 0;
  Received rx;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline && decided_after < 5) {
    (*collector)->service_direct();
    capnp::MallocMessageBuilder mb;
    auto env = (*collector)->begin(mb, topic::kExec);
    EventSpec spec;
    spec.pid = ++pid;  // no such process: a benign no-match decision each
    spec.start_boot_ns = 1;
    spec.filename = "/bin/benign";
    spec.argv = "benign";
    testing::fill_event(env.getBody().initExec(), spec);
    (*collector)->send(topic::kExec, mb);
    if ((*decisions)->wait(-1, 5) == Subscriber::Wait::kMessage)
      while ((*decisions)->try_receive(rx))
        if (holds.size() >= 2 && (*collector)->direct()->clients() == 1) ++decided_after;
  }
  (*enforcer)->stop();
  loop.join();
  EXPECT_EQ(holds, (std::vector<bool>{true, false})) << "granted once, then handed back, not asked for again";
  EXPECT_GE(decided_after, 5u) << "decisions after the hand-back";
  ::close(memfd);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cryptnono::enforcer
