// The exec probe's wake filter (bpf/wake_filter.h) in the real kernel: the collector's probe
// loaded in-process, its kernel ring read as the enforcer reads it (KernelRing), its filter
// written as the enforcer writes it (WakeFilterMap, from a real Matcher's plan). Each exec
// the test makes is checked: flagged (EXEC_FLAG_WAKE) when its command line could hold a
// banned string, and the ring's fd woken for it even with records waiting before it.
// Banned strings are random per run; nothing is killed here.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bpf_test_util.h"
#include "cryptnono/collector/exec_source.h"
#include "cryptnono/enforcer/matcher.h"
#include "cryptnono/enforcer/text.h"
#include "cryptnono/enforcer/wake_plan.h"
#include "cryptnono/kernel_ring.h"
#include "cryptnono/log.h"

namespace cryptnono {
namespace {

using collector::ExecSource;
using collector::ExecSourceOptions;
using collector::parse_exec_record;
using enforcer::Matcher;
using enforcer::WakeFilterMap;
using testing::BlockedChild;
using testing::random_hex;

class WakeFilter : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "loading BPF needs root (CAP_BPF and CAP_PERFMON)";
    ExecSourceOptions options;
    options.kernel_ring_bytes = 1 << 20;
    options.max_args_bytes = 32 * 1024;
    auto source = ExecSource::open(options, logger_);
    ASSERT_TRUE(source) << source.error().message;
    source_ = std::move(*source);
    auto ring = KernelRing::map(fcntl(source_->kernel_ring_fd(), F_DUPFD_CLOEXEC, 0), source_->kernel_ring_bytes());
    ASSERT_TRUE(ring) << ring.error().message;
    ring_ = std::move(*ring);
    auto filter = WakeFilterMap::map(fcntl(source_->wake_filter_fd(), F_DUPFD_CLOEXEC, 0));
    ASSERT_TRUE(filter) << filter.error().message;
    filter_ = std::move(*filter);
    source_->set_kernel_ring_on(true);
  }

  // Runs `args` (blocked on stdin until read) and returns the flags of its record in the
  // kernel ring; every record waiting there is consumed.
  struct Seen {
    bool found = false;
    uint32_t flags = 0;
    std::string filename, argv;
  };
  Seen exec_and_read(const std::vector<std::string>& args) {
    BlockedChild child("/bin/sh", args);
    Seen seen;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!seen.found && std::chrono::steady_clock::now() < deadline) {
      ring_->consume([&](const void* data, size_t size) {
        auto rec = parse_exec_record(data, size);
        if (!rec || static_cast<pid_t>(rec->header.pid) != child.pid()) return;
        seen.found = true;
        seen.flags = rec->header.flags;
        seen.filename = std::string(rec->filename);
        seen.argv = std::string(rec->argv);
      });
      if (!seen.found) ::usleep(1000);
    }
    EXPECT_EQ(child.wait(), 0);
    return seen;
  }
  bool flagged(const std::vector<std::string>& args) {
    Seen seen = exec_and_read(args);
    EXPECT_TRUE(seen.found) << args.back();
    EXPECT_NE(seen.flags & EXEC_FLAG_IN_KERNEL_RING, 0u);
    return (seen.flags & EXEC_FLAG_WAKE) != 0;
  }

  std::shared_ptr<spdlog::logger> logger_ = make_logger("wake-filter-test", "warn");
  std::unique_ptr<ExecSource> source_;
  std::unique_ptr<KernelRing> ring_;
  std::unique_ptr<WakeFilterMap> filter_;
};

std::unique_ptr<Matcher> build(const std::vector<std::string>& banned) {
  enforcer::ExecwhackerConfig c;
  for (size_t i = 0; i < banned.size(); ++i) c.banned.push_back({banned[i], "t.json", i, 1});
  auto m = Matcher::build(c);
  EXPECT_TRUE(m) << m.error().message;
  return m ? std::move(*m) : nullptr;
}

std::vector<std::string> shell(const std::string& last) { return {"sh", "-c", "read _ || true", last}; }

TEST_F(WakeFilter, FlagsWhatCouldHoldABannedStringAndNothingElse) {
  const std::string token = "wf" + random_hex(12);           // 26 plain bytes: grams of 8 every 4
  const std::string phrase = "wq" + random_hex(4) + " && " + random_hex(5);  // runs of 10, 2, 10
  auto matcher = build({token, phrase});
  ASSERT_TRUE(matcher);
  const auto& plan = matcher->wake_plan();
  ASSERT_TRUE(plan.on) << plan.why_off;
  EXPECT_EQ(plan.gram, 8u);
  EXPECT_EQ(plan.stride, 3u);

  // Off (as the collector leaves it for a new holder): every exec is flagged.
  EXPECT_TRUE(flagged(shell("benign-" + random_hex(8))));

  filter_->write(plan);
  ASSERT_TRUE(filter_->on());
  EXPECT_FALSE(flagged(shell("benign-" + random_hex(8))));
  EXPECT_FALSE(flagged(shell("/opt/conda/bin/python3 -m ipykernel_launcher -f /tmp/kernel-" + random_hex(8))));

  // The token anywhere, in any case, at every offset modulo 8.
  std::string upper = token;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (size_t pad = 0; pad < 8; ++pad) {
    EXPECT_TRUE(flagged(shell(std::string(pad, 'p') + token))) << pad;
    EXPECT_TRUE(flagged(shell(std::string(pad, 'q') + upper + "-tail"))) << pad;
  }
  // The phrase across arguments: the enforcer joins them with a space.
  std::vector<std::string> split = {"sh", "-c", "read _ || true"};
  for (size_t start = 0, sp;; start = sp + 1) {
    sp = phrase.find(' ', start);
    split.push_back(phrase.substr(start, sp - start));
    if (sp == std::string::npos) break;
  }
  EXPECT_TRUE(flagged(split));
  // Whatever the probe cannot rule out: non-ASCII (U+212A KELVIN SIGN casefolds to 'k'),
  // more than it looks up (4 KiB at this stride), an argv cut at --max-args-bytes.
  EXPECT_TRUE(flagged(shell("caf\xc3\xa9-" + random_hex(4))));
  EXPECT_TRUE(flagged(shell(std::string(4200, 'b'))));
  EXPECT_FALSE(flagged(shell(std::string(2000, 'b'))));
  EXPECT_TRUE(flagged(shell(std::string(40 * 1024, 'c'))));

  // While the holder rewrites the filter (odd sequence count), everything is flagged.
  const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* m = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED, source_->wake_filter_fd(), 0);
  ASSERT_NE(m, MAP_FAILED);
  auto* header = static_cast<wake_filter*>(m);
  const uint32_t seq = __atomic_load_n(&header->seq, __ATOMIC_ACQUIRE);
  ASSERT_EQ(seq % 2, 0u);
  __atomic_store_n(&header->seq, seq + 1, __ATOMIC_RELEASE);
  EXPECT_TRUE(flagged(shell("benign-" + random_hex(8))));
  __atomic_store_n(&header->seq, seq + 2, __ATOMIC_RELEASE);
  EXPECT_FALSE(flagged(shell("benign-" + random_hex(8))));
  munmap(m, page);

  // The collector turns it off when the holder leaves.
  source_->turn_wake_filter_off();
  EXPECT_FALSE(filter_->on());
  EXPECT_TRUE(flagged(shell("benign-" + random_hex(8))));
}

// What the flag is for: with execs waiting unread in the ring (the enforcer's batch), a
// benign exec does not wake the reader, a flagged one does. Other processes on the host
// exec too (their records may wake it), so only ours are judged: the flagged exec must
// wake the fd, and our benign records must be unflagged.
TEST_F(WakeFilter, AFlaggedExecWakesTheReaderWhateverWaitsBeforeIt) {
  const std::string token = "wk" + random_hex(12);
  auto matcher = build({token});
  ASSERT_TRUE(matcher);
  filter_->write(matcher->wake_plan());
  int ep = epoll_create1(EPOLL_CLOEXEC);
  ASSERT_GE(ep, 0);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.fd = ring_->fd();
  ASSERT_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, ring_->fd(), &ev), 0);
  ring_->consume([](const void*, size_t) {});

  // A benign exec left unread: the first of a batch (the ring was empty) still wakes.
  const std::string benign = "benign-" + random_hex(8);
  pid_t benign_pid = 0;
  {
    BlockedChild child("/bin/sh", shell(benign));
    benign_pid = child.pid();
    EXPECT_EQ(child.wait(), 0);
  }
  epoll_event out{};
  EXPECT_EQ(epoll_wait(ep, &out, 1, 5000), 1) << "the first record after the reader caught up wakes it";
  // Now a banned exec behind the unread one: it wakes the reader again.
  pid_t banned_pid = 0;
  {
    BlockedChild child("/bin/sh", shell("run-" + token));
    banned_pid = child.pid();
    EXPECT_EQ(child.wait(), 0);
  }
  EXPECT_EQ(epoll_wait(ep, &out, 1, 5000), 1) << "the flagged exec did not wake the reader";
  bool saw_benign = false, saw_banned = false;
  ring_->consume([&](const void* data, size_t size) {
    auto rec = parse_exec_record(data, size);
    ASSERT_TRUE(rec);
    if (static_cast<pid_t>(rec->header.pid) == benign_pid) {
      saw_benign = true;
      EXPECT_EQ(rec->header.flags & EXEC_FLAG_WAKE, 0u);
    } else if (static_cast<pid_t>(rec->header.pid) == banned_pid) {
      saw_banned = true;
      EXPECT_NE(rec->header.flags & EXEC_FLAG_WAKE, 0u);
    }
  });
  EXPECT_TRUE(saw_benign);
  EXPECT_TRUE(saw_banned);
  EXPECT_GE(source_->counters().kernel_ring_woken, 1u);
  close(ep);
}

}  // namespace
}  // namespace cryptnono
