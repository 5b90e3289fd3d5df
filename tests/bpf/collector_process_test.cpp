// The cryptnono-collector binary as a subprocess, heard over a real ipc socket: its
// start-up sweep reports a process that predates it, the probe reports a command run
// after it started, it runs with no capabilities and no_new_privs, exits 0 on SIGTERM,
// and refuses to start (one line naming the capabilities) when it has none. The monero
// and connect probes publish on "fpu" and "connect"; --probes leaves them out.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bpf_test_util.h"
#include "cryptnono/caps.h"
#include "cryptnono/transport.h"

namespace cryptnono {
namespace {

using cryptnono::testing::argv_bytes;
using cryptnono::testing::BlockedChild;
using cryptnono::testing::random_hex;
using cryptnono::testing::RunningProgram;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "CapEff:\t0000000000000000" -> "0000000000000000"
std::string status_field(const std::string& status_path, const std::string& name) {
  std::istringstream in(read_file(status_path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) == 0) {
      auto v = line.substr(name.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "";
}

// Starts the collector with stderr to `log_path`; `drop_caps` first drops every
// capability in the child (as a container with --cap-drop=ALL would).
pid_t start_collector(const std::vector<std::string>& flags, const std::string& log_path, bool drop_caps = false) {
  std::vector<std::string> args = {CRYPTNONO_COLLECTOR_BIN};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) dup2(fd, 2);
    if (drop_caps && !drop_capabilities({})) _exit(125);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

class CollectorProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the collector loads BPF: needs root";
    char tmpl[] = "/tmp/cryptnono-collector-proc-XXXXXX";
    dir_ = mkdtemp(tmpl);
    endpoint_ = "ipc://" + dir_ + "/run/collector.sock";
    log_ = dir_ + "/collector.log";
  }
  void TearDown() override {
    if (collector_ > 0) {
      kill(collector_, SIGKILL);
      waitpid(collector_, nullptr, 0);
    }
    if (!dir_.empty()) {
      if (HasFailure()) std::cerr << "collector log:\n" << read_file(log_) << "\n";
      std::filesystem::remove_all(dir_);
    }
  }

  // Receives until `want` accepts an exec event, or the deadline passes. Stats
  // messages seen on the way are kept.
  template <class Pred>
  std::optional<std::pair<schema::Source, std::string>> receive_exec(Subscriber& sub, Pred want,
                                                                     std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (sub.wait(-1, 100) != Subscriber::Wait::kMessage) continue;
      while (sub.try_receive(got_)) {
        auto env = got_.envelope();
        if (!env) continue;
        if (got_.topic() == "stats") {
          stats_.clear();
          for (auto c : env->getBody().getStats().getCounters()) stats_[c.getName().cStr()] = c.getValue();
          stats_interval_ms_ = env->getBody().getStats().getIntervalMs();
          continue;
        }
        auto ev = env->getBody().getExec();
        if (want(ev))
          return std::pair{ev.getSource(),
                           std::string(reinterpret_cast<const char*>(ev.getArgv().begin()), ev.getArgv().size())};
      }
    }
    return std::nullopt;
  }

  // Receives until `want(topic, envelope)` accepts a message (stats are recorded on the
  // way), or the deadline passes.
  template <class Pred>
  bool receive(Subscriber& sub, Pred want, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (sub.wait(-1, 100) != Subscriber::Wait::kMessage) continue;
      while (sub.try_receive(got_)) {
        auto env = got_.envelope();
        if (!env) continue;
        if (got_.topic() == "stats") {
          stats_.clear();
          for (auto c : env->getBody().getStats().getCounters()) stats_[c.getName().cStr()] = c.getValue();
        }
        if (want(got_.topic(), *env)) return true;
      }
    }
    return false;
  }

  std::string dir_, endpoint_, log_;
  pid_t collector_ = -1;
  Received got_;
  std::map<std::string, uint64_t> stats_;
  uint32_t stats_interval_ms_ = 0;
};

TEST_F(CollectorProcess, PublishesSweepAndExecEventsWithoutCapabilitiesAndStopsOnSigterm) {
  // A process started before the collector: only the start-up sweep can report it.
  std::vector<std::string> before_args = {"sh", "-c", "read _ || true", "cryptnono-before-" + random_hex(8),
                                          "arg with spaces", "\xff\xfe"};
  BlockedChild before("/bin/sh", before_args);
  ASSERT_GT(before.pid(), 0);

  zmq::context_t ctx;
  // Connected before the collector binds: ZeroMQ retries until the socket exists, and
  // the collector sweeps /proc when this subscription to "exec" arrives.
  auto sub = Subscriber::connect(ctx, {endpoint_}, {"exec", "stats"});
  ASSERT_TRUE(sub) << sub.error().message;
  collector_ = start_collector({"--bind", endpoint_, "--scan-interval", "0", "--stats-interval", "0.2",
                                "--node", "test-node"},
                               log_);
  ASSERT_GT(collector_, 0);

  const pid_t before_pid = before.pid();
  auto swept = receive_exec(
      **sub, [&](schema::ExecEvent::Reader ev) { return static_cast<pid_t>(ev.getPid()) == before_pid; },
      std::chrono::seconds(20));
  ASSERT_TRUE(swept.has_value()) << "the start-up sweep did not report pid " << before_pid;
  EXPECT_EQ(swept->first, schema::Source::SCAN);
  EXPECT_EQ(swept->second, argv_bytes(before_args));

  // A command run now: the probe reports it.
  std::vector<std::string> after_args = {"sh", "-c", "read _ || true", "cryptnono-after-" + random_hex(8)};
  BlockedChild after("/bin/sh", after_args);
  const pid_t after_pid = after.pid();
  auto execd = receive_exec(
      **sub, [&](schema::ExecEvent::Reader ev) { return static_cast<pid_t>(ev.getPid()) == after_pid; },
      std::chrono::seconds(10));
  ASSERT_TRUE(execd.has_value()) << "no exec event for pid " << after_pid;
  EXPECT_EQ(execd->first, schema::Source::BPF);
  EXPECT_EQ(execd->second, argv_bytes(after_args));

  // Events are handled only in the event loop, after every capability was dropped.
  // Capabilities are per thread: ZeroMQ's I/O threads must have none either.
  int threads = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(collector_) + "/task")) {
    auto status = task.path().string() + "/status";
    EXPECT_EQ(status_field(status, "CapEff"), "0000000000000000") << status;
    EXPECT_EQ(status_field(status, "CapPrm"), "0000000000000000") << status;
    EXPECT_EQ(status_field(status, "NoNewPrivs"), "1") << status;
    ++threads;
  }
  EXPECT_GE(threads, 2) << "expected the main thread and ZeroMQ's I/O thread";

  // Stats: wait for one that counts the exec above.
  auto stats_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (stats_["events_bpf"] == 0 && std::chrono::steady_clock::now() < stats_deadline)
    receive_exec(**sub, [](schema::ExecEvent::Reader) { return false; }, std::chrono::seconds(1));
  for (const char* name : {"events_bpf", "events_scan", "scans", "kernel_ringbuf_drops", "kernel_argv_read_errors",
                           "truncated", "events_fpu", "kernel_fpu_nondefault_switches", "kernel_fpu_ringbuf_drops",
                           "kernel_fpu_map_errors", "events_connect", "kernel_connect_ringbuf_drops", "send_drops",
                           "direct_sent", "direct_drops", "kernel_ring_drops", "kernel_ring_grants",
                           "kernel_ring_follow_laps", "kernel_ring_woken"})
    EXPECT_EQ(stats_.count(name), 1u) << name;
  EXPECT_EQ(stats_.size(), 19u);
  EXPECT_GE(stats_["events_bpf"], 1u);
  EXPECT_GE(stats_["events_scan"], 1u);
  EXPECT_EQ(stats_["scans"], 1u);
  EXPECT_EQ(stats_interval_ms_, 200u);

  ASSERT_EQ(kill(collector_, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(collector_, &status, 0), collector_);
  collector_ = -1;
  EXPECT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(CollectorProcess, PublishesFpuAndConnectEventsFromItsProbes) {
  zmq::context_t ctx;
  auto sub = Subscriber::connect(ctx, {endpoint_}, {"fpu", "connect", "stats"});
  ASSERT_TRUE(sub) << sub.error().message;
  collector_ = start_collector({"--bind", endpoint_, "--scan-interval", "0", "--stats-interval", "0.2",
                                "--fpu-threshold", "16"},
                               log_);
  ASSERT_GT(collector_, 0);
  // A stats message means the subscription reached the collector: what is published
  // from now on is delivered (PUB drops messages sent before a subscriber joins).
  ASSERT_TRUE(receive(**sub, [](std::string_view topic, auto) { return topic == "stats"; }, std::chrono::seconds(20)));
  const bool x86 = read_file(log_).find("monero probe attached") != std::string::npos;

  // The suspects: one keeps a non-default rounding mode, one connects over v4 and v6.
  RunningProgram rounding(CRYPTNONO_TEST_ROUNDING_BIN, {"cryptnono-test-rounding", "1"});
  const std::string port = std::to_string(cryptnono::testing::unused_port());
  RunningProgram connecting(CRYPTNONO_TEST_CONNECT_BIN,
                            {"cryptnono-test-connect", "--sleep", "1", "127.0.0.1:" + port, "[::1]:" + port});
  const auto rounding_pid = static_cast<uint32_t>(rounding.pid());
  const auto connecting_pid = static_cast<uint32_t>(connecting.pid());

  bool fpu_seen = false;
  int fpu_events = 0;
  std::vector<schema::AddressFamily> families;
  receive(
      **sub,
      [&](std::string_view topic, schema::Envelope::Reader env) {
        if (topic == "fpu" && env.getBody().isFpu() && env.getBody().getFpu().getTgid() == rounding_pid) {
          auto ev = env.getBody().getFpu();
          ++fpu_events;
          fpu_seen = true;
          EXPECT_EQ(ev.getCount(), 16u);
          EXPECT_EQ(ev.getThreshold(), 16u);
          EXPECT_EQ(ev.getPid(), rounding_pid);
          EXPECT_EQ(ev.getPpid(), static_cast<uint32_t>(getpid()));
          EXPECT_NE(ev.getMxcsr() & 0x6000u, 0u);
          EXPECT_EQ(std::string(ev.getComm().cStr()), "cryptnono-test-");
          EXPECT_GT(ev.getStartBootNs(), 0u);
        }
        if (topic == "connect" && env.getBody().isConnect() && env.getBody().getConnect().getTgid() == connecting_pid) {
          auto ev = env.getBody().getConnect();
          families.push_back(ev.getFamily());
          EXPECT_EQ(std::to_string(ev.getDestinationPort()), port);
          EXPECT_EQ(ev.getDestination().size(), ev.getFamily() == schema::AddressFamily::IPV4 ? 4u : 16u);
          EXPECT_EQ(ev.getPid(), connecting_pid);
        }
        return (fpu_seen || !x86) && families.size() >= 2;
      },
      std::chrono::seconds(10));
  if (x86) {
    EXPECT_TRUE(fpu_seen) << "no fpu event for pid " << rounding_pid;
  }
  ASSERT_EQ(families.size(), 2u) << "connect events for pid " << connecting_pid;
  EXPECT_EQ(families[0], schema::AddressFamily::IPV4);
  EXPECT_EQ(families[1], schema::AddressFamily::IPV6);

  // The rounding program keeps going for the rest of its second: still one event.
  EXPECT_EQ(rounding.wait(), 0);
  EXPECT_EQ(connecting.wait(), 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (stats_["events_connect"] < 2 && std::chrono::steady_clock::now() < deadline)
    receive(**sub, [](std::string_view, auto) { return false; }, std::chrono::milliseconds(300));
  // Drain anything published after the program exited.
  receive(
      **sub,
      [&](std::string_view topic, schema::Envelope::Reader env) {
        if (topic == "fpu" && env.getBody().isFpu() && env.getBody().getFpu().getTgid() == rounding_pid) ++fpu_events;
        return false;
      },
      std::chrono::milliseconds(500));
  EXPECT_EQ(fpu_events, x86 ? 1 : 0);
  EXPECT_GE(stats_["events_connect"], 2u);
  if (x86) {
    EXPECT_GE(stats_["events_fpu"], 1u);
    EXPECT_GE(stats_["kernel_fpu_nondefault_switches"], 16u);
  }
  EXPECT_EQ(stats_["kernel_fpu_ringbuf_drops"], 0u);
  EXPECT_EQ(stats_["kernel_connect_ringbuf_drops"], 0u);

  ASSERT_EQ(kill(collector_, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(collector_, &status, 0), collector_);
  collector_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST_F(CollectorProcess, ProbesFlagLeavesTheOptionalProbesOut) {
  zmq::context_t ctx;
  auto sub = Subscriber::connect(ctx, {endpoint_}, {"connect", "stats"});
  ASSERT_TRUE(sub) << sub.error().message;
  collector_ = start_collector({"--bind", endpoint_, "--scan-interval", "0", "--stats-interval", "0.2",
                                "--probes", "exec"},
                               log_);
  ASSERT_TRUE(receive(**sub, [](std::string_view topic, auto) { return topic == "stats"; }, std::chrono::seconds(20)));
  RunningProgram connecting(CRYPTNONO_TEST_CONNECT_BIN, {"cryptnono-test-connect", "127.0.0.1:9"});
  EXPECT_EQ(connecting.wait(), 0);
  bool connect_seen = false;
  receive(
      **sub,
      [&](std::string_view topic, auto) {
        connect_seen |= topic == "connect";
        return false;
      },
      std::chrono::milliseconds(800));
  EXPECT_FALSE(connect_seen);
  EXPECT_EQ(stats_["events_connect"], 0u);
  std::string log = read_file(log_);
  EXPECT_NE(log.find("exec probe attached"), std::string::npos) << log;
  EXPECT_EQ(log.find("monero probe"), std::string::npos) << log;
  EXPECT_EQ(log.find("connect probe"), std::string::npos) << log;
}

TEST_F(CollectorProcess, RefusesToStartWithoutCapabilitiesNamingThem) {
  collector_ = start_collector({"--bind", endpoint_}, log_, /*drop_caps=*/true);
  int status = 0;
  ASSERT_EQ(waitpid(collector_, &status, 0), collector_);
  collector_ = -1;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(WEXITSTATUS(status), 125) << "the test could not drop capabilities";
  std::string log = read_file(log_);
  EXPECT_NE(log.find("CAP_BPF"), std::string::npos) << log;
  EXPECT_NE(log.find("CAP_PERFMON"), std::string::npos) << log;
  // One error line, and no libbpf noise before it.
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 2) << log;  // the "starting" line and the error
  EXPECT_EQ(log.find("libbpf"), std::string::npos) << log;
}

TEST(CollectorCheck, ValidatesFlagsWithoutLoadingAnything) {
  std::string out = "/tmp/cryptnono-collector-check-" + random_hex(6);
  pid_t pid = start_collector({"--check", "--max-args-bytes", "40000"}, out);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  pid = start_collector({"--check", "--ringbuf-bytes", "12345"}, out);
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  std::string log = read_file(out);
  EXPECT_NE(log.find("--ringbuf-bytes"), std::string::npos) << log;
  // exec is the one probe that cannot be left out.
  pid = start_collector({"--check", "--probes", "fpu,connect"}, out);
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  log = read_file(out);
  EXPECT_NE(log.find("--probes"), std::string::npos) << log;
  pid = start_collector({"--check", "--fpu-threshold", "0"}, out);
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  log = read_file(out);
  EXPECT_NE(log.find("--fpu-threshold"), std::string::npos) << log;
  std::filesystem::remove(out);
}

}  // namespace
}  // namespace cryptnono
