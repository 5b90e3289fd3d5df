// The cryptnono-enforcer binary itself: --check, start-up errors, a kill over real
// sockets, SIGHUP reload and a clean exit on SIGTERM.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "cryptnono/caps.h"
#include "cryptnono/clock.h"
#include "cryptnono/transport.h"
#include "enforcer_test_util.h"

#ifndef CRYPTNONO_ENFORCER_BINARY
#error "CRYPTNONO_ENFORCER_BINARY must be defined by the build"
#endif

namespace cryptnono::enforcer {
namespace {

using namespace std::chrono_literals;
using testing::Child;

struct RunResult {
  int status = -1;
  std::string out;
  std::string err;
};

// Runs the binary to completion, capturing stdout and stderr.
RunResult run(const std::vector<std::string>& args, const std::string& dir) {
  std::string out_path = dir + "/out.txt", err_path = dir + "/err.txt";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> all = {CRYPTNONO_ENFORCER_BINARY};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  RunResult r;
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) == 0) waitpid(pid, &r.status, 0);
  posix_spawn_file_actions_destroy(&fa);
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  return r;
}

class EnforcerBinary : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::make_temp_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(EnforcerBinary, CheckWithoutConfigUsesTheEmbeddedDefault) {
  auto r = run({"--check"}, dir_);
  ASSERT_TRUE(WIFEXITED(r.status));
  EXPECT_EQ(WEXITSTATUS(r.status), 0);
  EXPECT_EQ(r.out, "ok: 1 banned strings, 0 allowed patterns from the embedded default config\n");
}

TEST_F(EnforcerBinary, CheckMergesSeveralConfigs) {
  std::string a = dir_ + "/a.json", b = dir_ + "/b.json";
  testing::write_file(a, testing::config_json({"one", "two"}, {"^/usr/bin/ok"}));
  testing::write_file(b, "{\"bannedCommandStrings\": [\"three\", \"TWO\"], \"notes\": 1}");
  auto r = run({"--check", "--config", a, "--config", b}, dir_);
  ASSERT_TRUE(WIFEXITED(r.status));
  EXPECT_EQ(WEXITSTATUS(r.status), 0);
  EXPECT_EQ(r.out, "ok: 3 banned strings, 1 allowed patterns from " + a + ", " + b + "\n");
  EXPECT_NE(r.err.find("unknown key \"notes\""), std::string::npos) << r.err;
}

TEST_F(EnforcerBinary, ABadConfigIsOneLineOnStderrAndANonZeroExit) {
  std::string bad = dir_ + "/bad.json";
  testing::write_file(bad, "{\n  \"bannedCommandStrings\": [\"a\",, \"b\"]\n}\n");
  for (const auto& args : {std::vector<std::string>{"--check", "--config", bad},
                           std::vector<std::string>{"--config", bad, "--bind", "ipc://" + dir_ + "/x.sock"}}) {
    auto r = run(args, dir_);
    ASSERT_TRUE(WIFEXITED(r.status));
    EXPECT_NE(WEXITSTATUS(r.status), 0);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.rfind("cryptnono-enforcer: " + bad + ":2:32: invalid JSON: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST_F(EnforcerBinary, AnUnknownDetectorIsRefused) {
  auto r = run({"--check", "--detector", "tcpdump"}, dir_);
  ASSERT_TRUE(WIFEXITED(r.status));
  EXPECT_NE(WEXITSTATUS(r.status), 0);
}

TEST_F(EnforcerBinary, CheckPrintsOneLineForEachDetector) {
  auto monero = run({"--check", "--detector", "monero"}, dir_);
  ASSERT_TRUE(WIFEXITED(monero.status));
  EXPECT_EQ(WEXITSTATUS(monero.status), 0);
  EXPECT_EQ(monero.out, "ok: monero: kills the processes the FPU probe reports (rule rounding-mode)\n");

  std::filesystem::create_directories(dir_ + "/banned");
  testing::write_file(dir_ + "/banned/a.txt", "# pools\n1.2.3.4\n10.0.0.0/8\n2001:db8::/32\n");
  testing::write_file(dir_ + "/banned/b.txt", "\n5.6.7.8 # x\n10.0.0.1/8\nbogus\n");
  auto flow = run({"--check", "--detector", "flowkiller", "--banned-ips", dir_ + "/banned/*.txt", "--banned-ips",
                   dir_ + "/absent/*", "--unique-destinations-threshold", "20", "--lookback-duration-seconds", "7.5"},
                  dir_);
  ASSERT_TRUE(WIFEXITED(flow.status));
  EXPECT_EQ(WEXITSTATUS(flow.status), 0) << flow.err;  // bad lines are reported, not fatal
  EXPECT_EQ(flow.out,
            "ok: flowkiller: 4 banned destinations from 2 files (2 bad lines); fan-out: more than 20 unique public "
            "destinations in 7.5 s\n");
  EXPECT_NE(flow.err.find(dir_ + "/banned/b.txt:3: host bits set (the network is 10.0.0.0/8)"), std::string::npos)
      << flow.err;
  EXPECT_NE(flow.err.find(dir_ + "/banned/b.txt:4: not an IPv4 or IPv6 address: \"bogus\""), std::string::npos);
  EXPECT_NE(flow.err.find(dir_ + "/absent/*: matches no file"), std::string::npos);

  auto bare = run({"--check", "--detector", "flowkiller"}, dir_);
  EXPECT_EQ(bare.out,
            "ok: flowkiller: 0 banned destinations from 0 files (0 bad lines); fan-out: more than 15 unique public "
            "destinations in 30 s\n");
}

TEST_F(EnforcerBinary, BadOrMisplacedFlagsExitNonZero) {
  const std::vector<std::vector<std::string>> cases = {
      {"--check", "--detector", "monero", "--banned-ips", "/x/*"},
      {"--check", "--detector", "execwhacker", "--unique-destinations-threshold", "3"},
      {"--check", "--detector", "monero", "--config", "/x.json"},
      {"--check", "--detector", "flowkiller", "--unique-destinations-threshold", "0"},
      {"--check", "--detector", "flowkiller", "--lookback-duration-seconds", "-1"},
      {"--check", "--detector", "flowkiller", "--unique-destinations-threshold", "500"},  // > per-process bound
      {"--check", "--detector", "flowkiller", "--max-tracked-processes", "0"},
  };
  for (const auto& args : cases) {
    auto r = run(args, dir_);
    ASSERT_TRUE(WIFEXITED(r.status));
    EXPECT_NE(WEXITSTATUS(r.status), 0) << args[3];
    EXPECT_EQ(r.out, "");
    EXPECT_FALSE(r.err.empty());
  }
}

// The real binary as a child, with the test as its collector.
class DetectorBinary : public EnforcerBinary {
 protected:
  void launch(std::vector<std::string> extra) {
    collector_ep_ = "ipc://" + dir_ + "/collector.sock";
    decision_ep_ = "ipc://" + dir_ + "/detector.sock";
    auto pub = Publisher::bind(ctx_, collector_ep_, "n", "collector", "collector");
    ASSERT_TRUE(pub);
    collector_ = std::move(*pub);
    std::vector<std::string> args = {CRYPTNONO_ENFORCER_BINARY, "--connect", collector_ep_, "--bind", decision_ep_,
                                     "--log-level", "warn"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&enforcer_, argv[0], nullptr, nullptr, argv.data(), environ), 0);
    auto sub = Subscriber::connect(ctx_, {decision_ep_}, {"decision"});
    ASSERT_TRUE(sub);
    sub_ = std::move(*sub);
  }
  void TearDown() override {
    if (enforcer_ > 0) {
      ::kill(enforcer_, SIGKILL);
      waitpid(enforcer_, nullptr, 0);
    }
    EnforcerBinary::TearDown();
  }
  int stop() {
    ::kill(enforcer_, SIGTERM);
    int status = 0;
    waitpid(enforcer_, &status, 0);
    enforcer_ = -1;
    return status;
  }
  void publish_fpu(pid_t pid, uint64_t start) {
    capnp::MallocMessageBuilder mb;
    testing::fill_fpu_event(collector_->begin(mb, "fpu").getBody().initFpu(), pid, start);
    collector_->send("fpu", mb);
  }
  void publish_connect(pid_t pid, uint64_t start, const std::string& dest, uint16_t port) {
    capnp::MallocMessageBuilder mb;
    testing::fill_connect_event(collector_->begin(mb, "connect").getBody().initConnect(), pid, start, dest, port);
    collector_->send("connect", mb);
  }
  // The action and rule of the next decision about `pid`; action -1 on timeout.
  std::pair<int, std::string> await(pid_t pid, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    Received rx;
    while (std::chrono::steady_clock::now() < deadline) {
      if (sub_->wait(-1, 20) != Subscriber::Wait::kMessage) continue;
      while (sub_->try_receive(rx)) {
        auto env = rx.envelope();
        if (env && env->getBody().isDecision() &&
            env->getBody().getDecision().getEvent().getPid() == static_cast<uint32_t>(pid)) {
          auto d = env->getBody().getDecision();
          return {static_cast<int>(d.getAction()), d.getRule().cStr()};
        }
      }
    }
    return {-1, ""};
  }
  // Harmless events (our own pid with a start time that is not ours, or a private
  // destination) until the binary answers.
  bool handshake(bool fpu) {
    for (int i = 0; i < 300; ++i) {
      if (fpu)
        publish_fpu(getpid(), 1);
      else
        publish_connect(getpid(), 1, "10.9.9.9", 9);
      if (await(getpid(), 50ms).first >= 0) return true;
    }
    return false;
  }

  zmq::context_t ctx_;
  std::string collector_ep_, decision_ep_;
  std::unique_ptr<Publisher> collector_;
  std::unique_ptr<Subscriber> sub_;
  pid_t enforcer_ = -1;
};

TEST_F(DetectorBinary, MoneroKillsTheNamedProcessAndMissesAnotherStartTime) {
  launch({"--detector", "monero"});
  ASSERT_TRUE(handshake(true)) << "the enforcer binary never answered";
  Child spared(dir_, testing::random_token());
  publish_fpu(spared.pid(), spared.start_boot_ns() + 5 * (1'000'000'000ull / clock_ticks_per_second()));
  EXPECT_EQ(await(spared.pid(), 10s), std::make_pair(static_cast<int>(schema::Action::MISSED_KILL), std::string("rounding-mode")));
  EXPECT_TRUE(spared.alive());

  Child target(dir_, testing::random_token());
  publish_fpu(target.pid(), target.start_boot_ns());
  EXPECT_EQ(await(target.pid(), 10s).first, static_cast<int>(schema::Action::KILLED));
  int status = target.wait_for_exit();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(spared.alive());

  status = stop();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(DetectorBinary, FlowkillerKillsBannedAndFanOutAndReloadsOnSighup) {
  std::string prefix = testing::random_loopback_prefix();
  std::filesystem::create_directories(dir_ + "/banned");
  std::string list = dir_ + "/banned/list.txt";
  testing::write_file(list, prefix + ".0/25\n");
  // A hard link outside the watched directory: changing the file through it makes no
  // event there, so only SIGHUP can make the enforcer notice.
  std::string back_door = dir_ + "/hardlink.txt";
  std::filesystem::create_hard_link(list, back_door);
  launch({"--detector", "flowkiller", "--banned-ips", dir_ + "/banned/*.txt", "--unique-destinations-threshold", "2",
          "--count-all-destinations"});
  ASSERT_TRUE(handshake(false)) << "the enforcer binary never answered";

  {
    Child child(dir_, testing::random_token());
    publish_connect(child.pid(), child.start_boot_ns(), prefix + ".100", 3333);
    EXPECT_EQ(await(child.pid(), 10s), std::make_pair(static_cast<int>(schema::Action::KILLED), std::string("banned")));
    EXPECT_TRUE(WIFSIGNALED(child.wait_for_exit()));
  }
  {
    Child child(dir_, testing::random_token());
    for (int i = 0; i < 2; ++i) {
      publish_connect(child.pid(), child.start_boot_ns(), prefix + ".200", static_cast<uint16_t>(1000 + i));
      EXPECT_EQ(await(child.pid(), 10s).first, static_cast<int>(schema::Action::NO_MATCH));
    }
    EXPECT_TRUE(child.alive());
    publish_connect(child.pid(), child.start_boot_ns(), prefix + ".201", 1000);
    EXPECT_EQ(await(child.pid(), 10s), std::make_pair(static_cast<int>(schema::Action::KILLED), std::string("fanout")));
    EXPECT_TRUE(WIFSIGNALED(child.wait_for_exit()));
  }

  testing::write_file(back_door, prefix + ".128/25\n");
  bool killed = false;
  ASSERT_EQ(::kill(enforcer_, SIGHUP), 0);
  for (int attempt = 0; attempt < 100 && !killed; ++attempt) {
    Child child(dir_, testing::random_token());
    publish_connect(child.pid(), child.start_boot_ns(), prefix + ".250", 80);
    killed = await(child.pid(), 5s).first == static_cast<int>(schema::Action::KILLED);
    if (!killed) std::this_thread::sleep_for(50ms);  // the reload is asynchronous
  }
  EXPECT_TRUE(killed) << "SIGHUP did not reload the banned list";

  int status = stop();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(EnforcerBinary, KillsReloadsOnSighupAndExitsZeroOnSigterm) {
  zmq::context_t ctx;
  std::string token = testing::random_token();
  // The config lives in a watched directory; a hard link to it outside that directory lets
  // the test change the file without any event in the watched directory, so only SIGHUP
  // can make the enforcer notice.
  std::filesystem::create_directories(dir_ + "/conf");
  std::string config = dir_ + "/conf/execwhacker.json";
  std::string back_door = dir_ + "/hardlink.json";
  testing::write_file(config, testing::config_json({token}));
  std::filesystem::create_hard_link(config, back_door);
  std::string exec_ep = "ipc://" + dir_ + "/collector.sock";
  std::string decision_ep = "ipc://" + dir_ + "/execwhacker.sock";
  auto collector = Publisher::bind(ctx, exec_ep, "n", "collector", "collector");
  ASSERT_TRUE(collector);

  std::vector<std::string> args = {CRYPTNONO_ENFORCER_BINARY, "--config", config, "--connect", exec_ep, "--bind",
                                   decision_ep, "--stats-interval", "0.2", "--node", "bin-test", "--log-level", "warn"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t enforcer = -1;
  ASSERT_EQ(posix_spawn(&enforcer, argv[0], nullptr, nullptr, argv.data(), environ), 0);

  auto sub = Subscriber::connect(ctx, {decision_ep}, {"decision", "stats"});
  ASSERT_TRUE(sub);
  auto publish = [&](const testing::EventSpec& spec) {
    capnp::MallocMessageBuilder mb;
    testing::fill_event((*collector)->begin(mb, "exec").getBody().initExec(), spec);
    (*collector)->send("exec", mb);
  };
  // Returns the action of the next decision about `pid`, or -1 on timeout.
  auto await_action = [&](pid_t pid, std::chrono::milliseconds timeout) -> int {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    Received rx;
    while (std::chrono::steady_clock::now() < deadline) {
      if ((*sub)->wait(-1, 20) != Subscriber::Wait::kMessage) continue;
      while ((*sub)->try_receive(rx)) {
        auto env = rx.envelope();
        if (env && env->getBody().isDecision() &&
            env->getBody().getDecision().getEvent().getPid() == static_cast<uint32_t>(pid))
          return static_cast<int>(env->getBody().getDecision().getAction());
      }
    }
    return -1;
  };
  bool connected = false;
  for (int i = 0; i < 300 && !connected; ++i) {
    testing::EventSpec probe;
    probe.pid = getpid();
    probe.start_boot_ns = 1;
    probe.argv = "probe";
    publish(probe);
    connected = await_action(getpid(), 50ms) >= 0;
  }
  ASSERT_TRUE(connected) << "the enforcer binary never answered";

  // Capabilities are per thread: every thread (ZeroMQ's I/O threads, the config watcher)
  // must hold CAP_KILL at most, with no_new_privs set.
  const bool runner_has_kill = has_capability(CAP_KILL);
  size_t threads = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(enforcer) + "/task")) {
    std::ifstream status(task.path() / "status");
    std::string line, cap_eff, no_new_privs;
    while (std::getline(status, line)) {
      if (line.rfind("CapEff:", 0) == 0) cap_eff = line.substr(line.find_first_not_of(" \t", 7));
      if (line.rfind("NoNewPrivs:", 0) == 0) no_new_privs = line.substr(line.find_first_not_of(" \t", 11));
    }
    EXPECT_EQ(cap_eff, runner_has_kill ? "0000000000000020" : "0000000000000000") << task.path();
    EXPECT_EQ(no_new_privs, "1") << task.path();
    ++threads;
  }
  EXPECT_GE(threads, 3u);  // main, config watcher, ZeroMQ

  {
    Child child(dir_, token);
    testing::EventSpec spec;
    spec.pid = child.pid();
    spec.start_boot_ns = child.start_boot_ns();
    spec.filename = child.path();
    spec.argv = child.argv_area();
    publish(spec);
    EXPECT_EQ(await_action(child.pid(), 10s), static_cast<int>(schema::Action::KILLED));
    int status = child.wait_for_exit();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }

  auto event_for = [](const Child& child) {
    testing::EventSpec spec;
    spec.pid = child.pid();
    spec.start_boot_ns = child.start_boot_ns();
    spec.filename = child.path();
    spec.argv = child.argv_area();
    return spec;
  };
  std::string second = testing::random_token();
  testing::write_file(back_door, testing::config_json({second}));  // same inode, in place
  {
    Child child(dir_, second);
    publish(event_for(child));
    EXPECT_EQ(await_action(child.pid(), 10s), static_cast<int>(schema::Action::NO_MATCH))
        << "the change must not be seen before SIGHUP";
  }
  ASSERT_EQ(::kill(enforcer, SIGHUP), 0);
  bool killed_second = false;
  for (int attempt = 0; attempt < 100 && !killed_second; ++attempt) {
    Child child(dir_, second);
    publish(event_for(child));
    killed_second = await_action(child.pid(), 5s) == static_cast<int>(schema::Action::KILLED);
    if (!killed_second) std::this_thread::sleep_for(50ms);  // the reload is asynchronous
  }
  EXPECT_TRUE(killed_second) << "SIGHUP did not reload the config";

  ASSERT_EQ(::kill(enforcer, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(enforcer, &status, 0), enforcer);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace cryptnono::enforcer
