// The monero (fpu) and connect probes, loaded for real (the verifier is part of the
// test), against programs this test runs: tests/programs/cryptnono-test-rounding and
// cryptnono-test-connect. Records are filtered by the child's tgid (the ring buffers
// carry the whole host), and every field is checked against what /proc shows while the
// child is alive.
#include <arpa/inet.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bpf_test_util.h"
#include "cryptnono/clock.h"
#include "cryptnono/collector/probe_sources.h"
#include "cryptnono/log.h"
#include "cryptnono/proc.h"

namespace cryptnono::collector {
namespace {

using cryptnono::testing::random_hex;
using cryptnono::testing::RunningProgram;
using cryptnono::testing::TestCgroup;
using cryptnono::testing::unused_port;

struct OwnedFpu {
  fpu_event header{};
  std::string comm, cgroup_name;
};

struct OwnedConnect {
  connect_event header{};
  std::string comm, cgroup_name;
};

// Polls `source` until `done()` or the deadline, then drains what is left.
template <class Source, class Done>
void pump(Source& source, Done done, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    auto n = source.poll(50);
    if (!n) ADD_FAILURE() << n.error().message;
  }
  auto n = source.consume();
  if (!n) ADD_FAILURE() << n.error().message;
}

class Probes : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "loading BPF needs root (CAP_BPF and CAP_PERFMON)";
  }
  std::shared_ptr<spdlog::logger> logger_ = make_logger("probe-sources-test", "warn");
};

class FpuProbe : public Probes {
 protected:
  void SetUp() override {
    Probes::SetUp();
    if (IsSkipped()) return;
    if (!FpuSource::available()) GTEST_SKIP() << "the monero probe exists only in x86 builds";
  }

  // Runs the rounding program (with `mode_args`) for `seconds` in its own cgroup and
  // returns the records the probe wrote for it. Checks the identity fields on the way.
  std::vector<OwnedFpu> run_rounding(FpuSource& source, const std::vector<std::string>& mode_args,
                                     const std::string& seconds) {
    std::vector<OwnedFpu> got;
    pid_t want = -1;
    source.set_callback([&](const FpuRecord& r) {
      if (static_cast<pid_t>(r.header.task.tgid) == want)
        got.push_back({r.header, std::string(r.comm()), std::string(r.cgroup_name)});
    });
    TestCgroup cgroup({"kubepods.slice", "pod-" + random_hex(4) + ".slice",
                       "cri-containerd-" + random_hex(32) + ".scope"});
    EXPECT_TRUE(cgroup.ok()) << "cannot create a cgroup v2 directory";
    std::vector<std::string> args = {"cryptnono-test-rounding"};
    args.insert(args.end(), mode_args.begin(), mode_args.end());
    args.push_back(seconds);
    const uint64_t before = boot_ns();
    RunningProgram child(CRYPTNONO_TEST_ROUNDING_BIN, args, cgroup.ok() ? cgroup.procs_fd() : -1);
    want = child.pid();
    EXPECT_EQ(child.read_line().rfind("ready ", 0), 0u);

    // The start time as /proc shows it, read while the child is alive.
    ProcReader proc;
    auto st = proc.stat(child.pid());
    EXPECT_TRUE(st) << (st ? "" : st.error().message);
    pump(source, [&] { return false; }, std::chrono::milliseconds(static_cast<int>(std::stod(seconds) * 1000) + 300));
    EXPECT_EQ(child.read_line().rfind("done ", 0), 0u);
    int status = child.wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    const uint64_t after = boot_ns();

    for (const auto& r : got) {
      const auto& t = r.header.task;
      EXPECT_EQ(t.pid, static_cast<uint32_t>(child.pid()));  // single-threaded
      EXPECT_EQ(t.ppid, static_cast<uint32_t>(getpid()));
      EXPECT_EQ(t.uid, getuid());
      if (st) {
        EXPECT_EQ(boot_ns_to_ticks(t.start_boot_ns, clock_ticks_per_second()), st->start_ticks);
      }
      EXPECT_EQ(r.comm, "cryptnono-test-");  // TASK_COMM_LEN cuts the name at 15 bytes
      if (cgroup.ok()) {
        EXPECT_EQ(t.cgroup_id, cgroup.id());
        EXPECT_NE(r.cgroup_name.find("/cri-containerd-"), std::string::npos) << r.cgroup_name;
      }
      EXPECT_LT(t.cpu, static_cast<uint32_t>(sysconf(_SC_NPROCESSORS_CONF)));
      EXPECT_GE(r.header.first_boot_ns, before);
      EXPECT_LE(r.header.first_boot_ns, r.header.event_boot_ns);
      EXPECT_LE(r.header.event_boot_ns, after);
      EXPECT_EQ(r.header.flags, 0u);
    }
    return got;
  }
};

TEST_F(FpuProbe, ReportsANonDefaultRoundingModeExactlyOnceAtTheThreshold) {
  auto source = FpuSource::open({}, logger_);
  ASSERT_TRUE(source) << source.error().message;
  EXPECT_STREQ((*source)->attach_mode(), "tp_btf");
  ASSERT_EQ((*source)->threshold(), FPU_THRESHOLD_DEFAULT);
  // ~1000 switches in 1.5 s: the count passes 64 many times over, and still one record.
  auto got = run_rounding(**source, {}, "1.5");
  ASSERT_EQ(got.size(), 1u) << "expected exactly one record for the rounding program";
  EXPECT_EQ(got[0].header.count, 64u);
  EXPECT_EQ(got[0].header.threshold, 64u);
  // FE_UPWARD: rounding control 10b.
  EXPECT_EQ(got[0].header.mxcsr & FPU_MXCSR_RC_MASK, 0x4000u) << std::hex << got[0].header.mxcsr;
  auto k = (*source)->counters();
  EXPECT_GE(k.nondefault, 64u);
  EXPECT_GE(k.published, 1u);
  EXPECT_EQ(k.ringbuf_drops, 0u);
  EXPECT_EQ((*source)->malformed(), 0u);
}

TEST_F(FpuProbe, IgnoresTheDefaultRoundingModeHoweverMuchFloatingPointWork) {
  auto source = FpuSource::open({}, logger_);
  ASSERT_TRUE(source) << source.error().message;
  auto got = run_rounding(**source, {"--default"}, "1.5");
  EXPECT_EQ(got.size(), 0u) << "the default rounding mode must never be reported";
}

TEST_F(FpuProbe, UsesTheLoadTimeThreshold) {
  FpuSourceOptions options;
  options.threshold = 3;
  auto source = FpuSource::open(options, logger_);
  ASSERT_TRUE(source) << source.error().message;
  auto got = run_rounding(**source, {}, "0.3");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].header.count, 3u);
  EXPECT_EQ(got[0].header.threshold, 3u);
}

TEST_F(FpuProbe, RefusesAThresholdOutOfRange) {
  FpuSourceOptions options;
  options.threshold = 0;
  EXPECT_FALSE(FpuSource::open(options, logger_));
  options.threshold = FPU_THRESHOLD_MAX + 1;
  EXPECT_FALSE(FpuSource::open(options, logger_));
}

class ConnectProbe : public Probes {};

TEST_F(ConnectProbe, ReportsIpv4AndIpv6AttemptsOfTheConnectingProcess) {
  auto source = ConnectSource::open({}, logger_);
  ASSERT_TRUE(source) << source.error().message;
  EXPECT_STREQ((*source)->attach_mode(), "tp_btf");
  std::vector<OwnedConnect> got;
  pid_t want = -1;
  (*source)->set_callback([&](const ConnectRecord& r) {
    if (static_cast<pid_t>(r.header.task.tgid) == want)
      got.push_back({r.header, std::string(r.comm()), std::string(r.cgroup_name)});
  });
  const uint16_t port = unused_port();
  ASSERT_NE(port, 0);
  const std::string p = std::to_string(port);
  // Nothing listens: both are refused, after going through SYN_SENT. The sleep keeps
  // the child alive while /proc is read.
  RunningProgram child(CRYPTNONO_TEST_CONNECT_BIN,
                       {"cryptnono-test-connect", "--sleep", "0.5", "127.0.0.1:" + p, "[::1]:" + p,
                        "[::ffff:127.0.0.1]:" + p});
  want = child.pid();
  ASSERT_EQ(child.read_line().rfind("ready ", 0), 0u);
  EXPECT_EQ(child.read_line(), "connect 127.0.0.1:" + p + " refused");
  EXPECT_EQ(child.read_line(), "connect [::1]:" + p + " refused");
  EXPECT_EQ(child.read_line(), "connect [::ffff:127.0.0.1]:" + p + " refused");
  ProcReader proc;
  auto st = proc.stat(child.pid());
  ASSERT_TRUE(st) << st.error().message;
  pump(**source, [&] { return got.size() >= 3; }, std::chrono::seconds(5));
  EXPECT_EQ(child.read_line(), "done");
  EXPECT_EQ(child.wait(), 0);

  ASSERT_EQ(got.size(), 3u);
  for (const auto& r : got) {
    const auto& t = r.header.task;
    EXPECT_EQ(t.pid, static_cast<uint32_t>(child.pid()));
    EXPECT_EQ(t.ppid, static_cast<uint32_t>(getpid()));
    EXPECT_EQ(t.uid, getuid());
    EXPECT_EQ(boot_ns_to_ticks(t.start_boot_ns, clock_ticks_per_second()), st->start_ticks);
    EXPECT_EQ(r.comm, "cryptnono-test-");
    EXPECT_EQ(r.header.dport, port);
    EXPECT_EQ(r.header.flags, 0u);
  }
  const uint8_t v4[16] = {127, 0, 0, 1};
  const uint8_t v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  EXPECT_EQ(got[0].header.family, CONNECT_AF_INET);
  EXPECT_EQ(std::memcmp(got[0].header.daddr, v4, 16), 0);
  EXPECT_EQ(std::memcmp(got[0].header.saddr, v4, 16), 0) << "loopback routes from 127.0.0.1";
  EXPECT_EQ(got[1].header.family, CONNECT_AF_INET6);
  EXPECT_EQ(std::memcmp(got[1].header.daddr, v6, 16), 0);
  EXPECT_EQ(got[2].header.family, CONNECT_AF_INET6) << "v4-mapped addresses stay IPv6";
  EXPECT_EQ(std::memcmp(got[2].header.daddr, mapped, 16), 0);

  auto k = (*source)->counters();
  EXPECT_GE(k.events, 3u);
  EXPECT_EQ(k.ringbuf_drops, 0u);
  EXPECT_EQ((*source)->malformed(), 0u);
}

// The classic-tracepoint fallbacks of both probes, in a child with a private mount
// namespace so tracefs can be hidden and mounted without touching the host's mounts.
TEST_F(Probes, TracepointFallbacksNeedTracefsThenDeliver) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto check = [](bool ok, const std::string& what) {
      if (!ok) {
        fprintf(stderr, "tracepoint child: %s (%s)\n", what.c_str(), strerror(errno));
        _exit(1);
      }
    };
    check(unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS)");
    check(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0, "make / private");
    check(mount("none", "/sys/kernel/tracing", "tmpfs", 0, nullptr) == 0, "tmpfs over tracing");
    (void)mount("none", "/sys/kernel/debug", "tmpfs", 0, nullptr);
    auto logger = make_logger("probe-sources-test-tp", "off");
    ConnectSourceOptions co;
    co.attach = AttachMode::kTracepoint;
    auto refused = ConnectSource::open(co, logger);
    check(!refused, "connect: attach without tracefs unexpectedly worked");
    check(refused.error().message.find("tracefs") != std::string::npos,
          "connect: error does not mention tracefs: " + refused.error().message);
    check(umount("/sys/kernel/tracing") == 0, "umount tmpfs");
    check(mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nullptr) == 0, "mount tracefs");

    auto connect = ConnectSource::open(co, logger);
    check(connect.has_value(), connect ? "" : "connect: " + connect.error().message);
    check(std::string((*connect)->attach_mode()) == "tracepoint", "connect attach mode");
    std::vector<connect_event> got;
    pid_t want = -1;
    (*connect)->set_callback([&](const ConnectRecord& r) {
      if (static_cast<pid_t>(r.header.task.tgid) == want) got.push_back(r.header);
    });
    const uint16_t port = unused_port();
    RunningProgram c(CRYPTNONO_TEST_CONNECT_BIN,
                     {"cryptnono-test-connect", "127.0.0.1:" + std::to_string(port), "[::1]:" + std::to_string(port)});
    want = c.pid();
    c.wait();
    pump(**connect, [&] { return got.size() >= 2; }, std::chrono::seconds(5));
    check(got.size() == 2, "connect: want 2 records, got " + std::to_string(got.size()));
    check(got[0].family == CONNECT_AF_INET && got[0].dport == port && got[0].daddr[0] == 127, "connect: v4 record");
    check(got[1].family == CONNECT_AF_INET6 && got[1].dport == port && got[1].daddr[15] == 1, "connect: v6 record");
    check(got[0].flags == CONNECT_FLAG_FROM_TRACEPOINT, "connect: tracepoint flag");

    if (FpuSource::available()) {
      FpuSourceOptions fo;
      fo.attach = AttachMode::kTracepoint;
      fo.threshold = 8;
      auto fpu = FpuSource::open(fo, logger);
      check(fpu.has_value(), fpu ? "" : "fpu: " + fpu.error().message);
      check(std::string((*fpu)->attach_mode()) == "tracepoint", "fpu attach mode");
      std::vector<fpu_event> fgot;
      pid_t fwant = -1;
      (*fpu)->set_callback([&](const FpuRecord& r) {
        if (static_cast<pid_t>(r.header.task.tgid) == fwant) fgot.push_back(r.header);
      });
      RunningProgram r(CRYPTNONO_TEST_ROUNDING_BIN, {"cryptnono-test-rounding", "0.5"});
      fwant = r.pid();
      r.wait();
      pump(**fpu, [&] { return !fgot.empty(); }, std::chrono::seconds(2));
      check(fgot.size() == 1, "fpu: want 1 record, got " + std::to_string(fgot.size()));
      check(fgot[0].count == 8 && fgot[0].flags == FPU_FLAG_FROM_TRACEPOINT, "fpu: count and flag");
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "see the tracepoint child's message above";
}

}  // namespace
}  // namespace cryptnono::collector
