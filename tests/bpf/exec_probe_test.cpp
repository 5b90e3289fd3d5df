// The exec probe, loaded for real (the verifier is part of the test), against execs
// this test causes: it finds exactly its own child's event by pid and checks every
// field against what the kernel shows in /proc while the child is still alive.
#include <sched.h>
#include <sys/mount.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bpf_test_util.h"
#include "cryptnono/clock.h"
#include "cryptnono/collector/exec_source.h"
#include "cryptnono/kernel_ring.h"
#include "cryptnono/log.h"
#include "cryptnono/proc.h"

namespace cryptnono::collector {
namespace {

using cryptnono::testing::argv_bytes;
using cryptnono::testing::BlockedChild;
using cryptnono::testing::random_hex;
using cryptnono::testing::TestCgroup;

struct OwnedRecord {
  exec_event header{};
  std::string comm, cgroup_name, filename, argv;
};

// Collects records for one pid (the ring buffer carries every exec on the host).
class PidCollector {
 public:
  explicit PidCollector(ExecSource& source) : source_(source) {
    source_.set_callback([this](const ExecRecord& r) {
      if (static_cast<pid_t>(r.header.pid) != want_) return;
      found_ = OwnedRecord{r.header, std::string(r.comm()), std::string(r.cgroup_name), std::string(r.filename),
                           std::string(r.argv)};
    });
  }
  std::optional<OwnedRecord> wait_for(pid_t pid, std::chrono::seconds limit = std::chrono::seconds(10)) {
    want_ = pid;
    found_.reset();  // records are only taken inside this loop, so none of `pid` is missed
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!found_ && std::chrono::steady_clock::now() < deadline) {
      auto n = source_.poll(100);
      if (!n) ADD_FAILURE() << n.error().message;
      // An exec the kernel ring took wakes no reader of this ring (bpf/exec.bpf.c).
      if (!found_) (void)source_.consume();
    }
    return found_;
  }

 private:
  ExecSource& source_;
  pid_t want_ = -1;
  std::optional<OwnedRecord> found_;
};

class ExecProbe : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "loading BPF needs root (CAP_BPF and CAP_PERFMON)";
  }
  std::shared_ptr<spdlog::logger> logger_ = make_logger("exec-probe-test", "warn");
};

// 300 short arguments with hostile bytes, then one of 100 KiB: 100 KiB + ~4 KiB total.
std::vector<std::string> big_argv(const std::string& marker) {
  std::vector<std::string> args = {"sh", "-c", "read _ || true", marker};
  for (int i = 0; static_cast<int>(args.size()) < 300; ++i)
    args.push_back("arg-" + std::to_string(i) + (i % 7 == 0 ? "-'quoted' \"dq\"\n\xff\xfe" : "-plain"));
  std::string big(100 * 1024, 'B');
  for (size_t i = 0; i < big.size(); i += 997) big[i] = static_cast<char>('a' + (i % 26));
  args.push_back(big);
  return args;
}

uint64_t inode_of(const char* path) {
  struct stat st {};
  return stat(path, &st) == 0 ? st.st_ino : 0;
}

// What fstat() of a pidfd for `pid` says, and whether pidfds are pidfs files here (Linux
// 6.9+; before, every pidfd shared one anonymous inode and the probe records 0).
struct PidfdInode {
  uint64_t ino = 0;
  bool pidfs = false;
};
PidfdInode pidfd_inode(pid_t pid) {
  PidfdInode out;
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return out;
  struct stat st {};
  struct statfs fs {};
  if (fstat(fd, &st) == 0) out.ino = st.st_ino;
  out.pidfs = fstatfs(fd, &fs) == 0 && static_cast<long>(fs.f_type) == 0x50494446;  // PIDFS_MAGIC
  close(fd);
  return out;
}

TEST_F(ExecProbe, CutsArgvAtMaxArgsAndReportsTheRealLengthAndIdentity) {
  ExecSourceOptions options;
  options.max_args_bytes = 65536;
  auto source = ExecSource::open(options, logger_);
  ASSERT_TRUE(source) << source.error().message;
  PidCollector events(**source);

  // Shaped like a Kubernetes container's cgroup, one level deeper than the four kept.
  const std::string scope = "cri-containerd-" + random_hex(32) + ".scope";
  const std::vector<std::string> names = {"kubepods.slice", "kubepods-besteffort.slice",
                                          "kubepods-besteffort-pod" + random_hex(4) + ".slice", scope};
  TestCgroup cgroup(names);
  ASSERT_TRUE(cgroup.ok()) << "cannot create a cgroup v2 directory";

  auto args = big_argv("cryptnono-exec-test-" + random_hex(8));
  const std::string expected = argv_bytes(args);
  ASSERT_GT(expected.size(), 65536u + 4096u);
  const uint64_t before = boot_ns();
  BlockedChild child("/bin/sh", args, cgroup.procs_fd());
  ASSERT_GT(child.pid(), 0);
  auto rec = events.wait_for(child.pid());
  const uint64_t after = boot_ns();
  ASSERT_TRUE(rec.has_value()) << "no exec event for pid " << child.pid();

  // argv: cut, flagged, and the captured bytes are exactly the real prefix.
  EXPECT_TRUE(rec->header.flags & EXEC_FLAG_ARGS_TRUNCATED);
  EXPECT_FALSE(rec->header.flags & EXEC_FLAG_ARGS_READ_ERROR);
  EXPECT_EQ(rec->header.args_full_len, expected.size());
  ASSERT_EQ(rec->argv.size(), 65536u);
  EXPECT_TRUE(rec->argv == expected.substr(0, 65536)) << "captured argv differs from the real prefix";

  // Identity, compared with /proc while the child is blocked (alive).
  ProcReader proc;
  auto st = proc.stat(child.pid());
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(rec->header.pid, static_cast<uint32_t>(child.pid()));
  EXPECT_EQ(rec->header.tgid, static_cast<uint32_t>(child.pid()));
  EXPECT_EQ(rec->header.ppid, static_cast<uint32_t>(getpid()));
  EXPECT_EQ(rec->header.uid, getuid());
  EXPECT_EQ(rec->header.gid, getgid());
  EXPECT_EQ(boot_ns_to_ticks(rec->header.start_boot_ns, clock_ticks_per_second()), st->start_ticks);
  EXPECT_GE(rec->header.exec_boot_ns, before);
  EXPECT_LE(rec->header.exec_boot_ns, after);
  EXPECT_GE(rec->header.exec_boot_ns, rec->header.start_boot_ns);
  EXPECT_EQ(rec->filename, "/bin/sh");
  EXPECT_EQ(rec->comm, "sh");
  EXPECT_EQ(rec->comm, st->comm);
  EXPECT_EQ(rec->cgroup_name, names[0] + "/" + names[1] + "/" + names[2] + "/" + names[3]);
  EXPECT_EQ(rec->header.cgroup_id, cgroup.id());
  EXPECT_EQ(rec->header.mnt_ns, inode_of("/proc/self/ns/mnt"));
  EXPECT_EQ(rec->header.pid_ns, inode_of("/proc/self/ns/pid"));
  EXPECT_LT(rec->header.cpu, static_cast<uint32_t>(sysconf(_SC_NPROCESSORS_CONF)));
  EXPECT_EQ(rec->header._pad0, 0u);
  // The pidfs inode: what the enforcer compares on its pidfd instead of reading /proc.
  auto pidfd = pidfd_inode(child.pid());
  ASSERT_NE(pidfd.ino, 0u);
  EXPECT_EQ(rec->header.pidfs_ino, pidfd.pidfs ? pidfd.ino : 0u);
  // The exec'd file as the kernel knows it; on this test's filesystem stat() says the same
  // (the enforcer checks that a filesystem does before relying on it: killer.h).
  struct stat exe {};
  ASSERT_EQ(stat(("/proc/" + std::to_string(child.pid()) + "/exe").c_str(), &exe), 0);
  EXPECT_EQ(rec->header.exe_ino, exe.st_ino);
  EXPECT_EQ(makedev(rec->header.exe_dev >> 20, rec->header.exe_dev & 0xfffff), exe.st_dev);
  EXPECT_EQ(rec->header._pad1, 0u);

  int status = child.wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;

  auto counters = (*source)->counters();
  EXPECT_GE(counters.events, 1u);
  EXPECT_GE(counters.truncated, 1u);
  EXPECT_EQ(counters.ringbuf_drops, 0u);
  EXPECT_EQ((*source)->malformed(), 0u);
}

// A thread that is not its process's leader execs: the kernel makes it the leader (it
// takes the process's pid), and the record names the process a pidfd_open of that pid
// opens, the one the enforcer kills.
TEST_F(ExecProbe, AnExecFromAThreadNamesTheProcessThePidfdOpens) {
  auto source = ExecSource::open(ExecSourceOptions{}, logger_);
  ASSERT_TRUE(source) << source.error().message;
  PidCollector events(**source);

  const std::string marker = "cryptnono-thread-exec-" + random_hex(8);
  std::vector<std::string> args = {"sh", "-c", "read _ || true", marker};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  struct Exec {
    char** argv;
    static void* run(void* p) {
      static char env0[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
      char* envp[] = {env0, nullptr};
      execve("/bin/sh", static_cast<Exec*>(p)->argv, envp);
      _exit(127);
    }
  } exec{argv.data()};
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(fds[0], 0);
    pthread_t t;
    if (pthread_create(&t, nullptr, &Exec::run, &exec) != 0) _exit(126);
    for (;;) pause();  // the exec ends this thread with the others
  }
  close(fds[0]);
  auto rec = events.wait_for(pid);
  ASSERT_TRUE(rec.has_value()) << "no exec event for pid " << pid;
  EXPECT_EQ(rec->header.pid, static_cast<uint32_t>(pid));
  EXPECT_EQ(rec->header.tgid, static_cast<uint32_t>(pid));
  EXPECT_NE(rec->argv.find(marker), std::string::npos);
  auto pidfd = pidfd_inode(pid);
  EXPECT_NE(pidfd.ino, 0u);
  EXPECT_EQ(rec->header.pidfs_ino, pidfd.pidfs ? pidfd.ino : 0u);
  close(fds[1]);  // sh reads EOF and exits
  int status = -1;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST_F(ExecProbe, CapturesTheWholeArgvAtTheCompileTimeCapacity) {
  ExecSourceOptions options;
  options.max_args_bytes = EXEC_ARGS_CAP;
  auto source = ExecSource::open(options, logger_);
  ASSERT_TRUE(source) << source.error().message;
  PidCollector events(**source);
  auto args = big_argv("cryptnono-exec-test-" + random_hex(8));
  const std::string expected = argv_bytes(args);
  BlockedChild child("/bin/sh", args);
  auto rec = events.wait_for(child.pid());
  ASSERT_TRUE(rec.has_value()) << "no exec event for pid " << child.pid();
  EXPECT_FALSE(rec->header.flags & EXEC_FLAG_ARGS_TRUNCATED);
  EXPECT_EQ(rec->header.args_full_len, expected.size());
  ASSERT_EQ(rec->argv.size(), expected.size());
  EXPECT_TRUE(rec->argv == expected) << "captured argv is not byte-identical";
  // Not in a cgroup of its own: this test's (v2 root on this host gives an empty name).
  EXPECT_EQ(child.wait(), 0);
}

TEST_F(ExecProbe, SmallArgvAndAnArgvOfExactlyMaxArgsAreComplete) {
  ExecSourceOptions options;
  options.max_args_bytes = EXEC_ARGS_MIN;
  auto source = ExecSource::open(options, logger_);
  ASSERT_TRUE(source) << source.error().message;
  PidCollector events(**source);
  // Pad the last argument so the area is exactly max_args bytes: not truncated.
  std::vector<std::string> args = {"sh", "-c", "read _ || true", "x"};
  size_t used = argv_bytes(args).size();
  args.back() = std::string(EXEC_ARGS_MIN - used + 1, 'x');
  ASSERT_EQ(argv_bytes(args).size(), EXEC_ARGS_MIN);
  BlockedChild child("/bin/sh", args);
  auto rec = events.wait_for(child.pid());
  ASSERT_TRUE(rec.has_value());
  EXPECT_FALSE(rec->header.flags & EXEC_FLAG_ARGS_TRUNCATED);
  EXPECT_EQ(rec->header.args_full_len, EXEC_ARGS_MIN);
  EXPECT_TRUE(rec->argv == argv_bytes(args));
  EXPECT_EQ(child.wait(), 0);
}

TEST_F(ExecProbe, CountsRingBufferDropsWhenTheConsumerFallsBehind) {
  ExecSourceOptions options;
  options.max_args_bytes = EXEC_ARGS_CAP;
  options.ringbuf_bytes = 1u << 20;  // the smallest the collector accepts: ~4 records of 200 KiB
  auto source = ExecSource::open(options, logger_);
  ASSERT_TRUE(source) << source.error().message;
  std::vector<pid_t> mine;
  size_t delivered = 0;
  (*source)->set_callback([&](const ExecRecord& r) {
    for (pid_t p : mine) delivered += static_cast<pid_t>(r.header.pid) == p;
  });
  // Eight execs of ~200 KiB argv each, none consumed until all have run.
  std::vector<std::unique_ptr<BlockedChild>> children;
  for (int i = 0; i < 8; ++i) {
    // Two arguments: one may not exceed MAX_ARG_STRLEN (128 KiB).
    std::string half(100 * 1024, static_cast<char>('a' + i));
    std::vector<std::string> args = {"sh", "-c", "read _ || true", half, half};
    children.push_back(std::make_unique<BlockedChild>("/bin/sh", args));
    mine.push_back(children.back()->pid());
  }
  for (auto& c : children) EXPECT_EQ(c->wait(), 0);
  auto counters = (*source)->counters();
  EXPECT_GE(counters.events, 8u);
  EXPECT_GE(counters.ringbuf_drops, 3u) << "a 1 MiB ring cannot hold eight 200 KiB records";
  // Every record of ours was written before the children were reaped: one
  // non-blocking consume sees all that were kept.
  auto n = (*source)->consume();
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_GE(delivered, 1u);
  EXPECT_LE(delivered, 8u - 3u);
  EXPECT_GE(delivered + counters.ringbuf_drops, 8u);
}

// The kernel ring: written only while switched on, read through KernelRing (mmap only, no
// bpf() call) exactly as the enforcer reads it, and an exec it has no room for is counted
// and left unflagged so the collector forwards it the usual way.
TEST_F(ExecProbe, TheKernelRingGetsEachExecWhileOnAndFlagsWhatItGot) {
  ExecSourceOptions options;
  options.kernel_ring_bytes = 16384;  // four pages: short execs fit, a 20 KiB argv does not
  auto source = ExecSource::open(options, logger_);
  ASSERT_TRUE(source) << source.error().message;
  ASSERT_GE((*source)->kernel_ring_fd(), 0);
  auto ring = KernelRing::map(fcntl((*source)->kernel_ring_fd(), F_DUPFD_CLOEXEC, 0), (*source)->kernel_ring_bytes());
  ASSERT_TRUE(ring) << ring.error().message;
  PidCollector events(**source);
  // The records of one pid in the kernel ring, drained.
  auto from_ring = [&](pid_t pid) {
    std::vector<std::string> argvs;
    (*ring)->consume([&](const void* data, size_t size) {
      auto rec = parse_exec_record(data, size);
      ASSERT_TRUE(rec) << "a malformed record of " << size << " bytes in the kernel ring";
      if (static_cast<pid_t>(rec->header.pid) == pid) {
        EXPECT_TRUE(rec->in_kernel_ring());
        argvs.emplace_back(rec->argv);
      }
    });
    return argvs;
  };

  // One exec of ours, with `last` as its last argument: the collector's copy (its flag and
  // argv) and what the kernel ring got of it.
  struct Seen {
    bool found = false, flagged = false;
    std::string argv, expected;
    std::vector<std::string> in_ring;
  };
  auto exec_once = [&](const std::string& last) {
    std::vector<std::string> args = {"sh", "-c", "read _ || true", last};
    BlockedChild child("/bin/sh", args);
    Seen seen;
    seen.expected = argv_bytes(args);
    if (auto rec = events.wait_for(child.pid())) {
      seen.found = true;
      seen.flagged = (rec->header.flags & EXEC_FLAG_IN_KERNEL_RING) != 0;
      seen.argv = rec->argv;
    }
    seen.in_ring = from_ring(child.pid());
    EXPECT_EQ(child.wait(), 0);
    return seen;
  };

  // Off (the default): nothing goes to the kernel ring, and the record is not flagged.
  Seen seen = exec_once("ring-off-" + random_hex(8));
  ASSERT_TRUE(seen.found);
  EXPECT_FALSE(seen.flagged);
  EXPECT_TRUE(seen.in_ring.empty());

  // On: the record goes to the kernel ring alone, flagged; the collector's copy is the
  // one it reads by following that ring (KernelRingFollower), and nothing wakes it.
  (*source)->set_kernel_ring_on(true);
  seen = exec_once("ring-on-" + random_hex(8));
  ASSERT_TRUE(seen.found);
  EXPECT_TRUE(seen.flagged);
  ASSERT_EQ(seen.in_ring.size(), 1u);
  EXPECT_EQ(seen.in_ring[0], seen.expected);
  EXPECT_FALSE((*ring)->pending());

  // Too long for the kernel ring: dropped there, counted, unflagged in the collector's copy.
  const uint64_t drops_before = (*source)->counters().kernel_ring_drops;
  seen = exec_once(std::string(20 * 1024, 'L'));
  ASSERT_TRUE(seen.found);
  EXPECT_FALSE(seen.flagged);
  EXPECT_TRUE(seen.argv == seen.expected);
  EXPECT_TRUE(seen.in_ring.empty());
  EXPECT_GE((*source)->counters().kernel_ring_drops, drops_before + 1);  // ours (other execs on the host may add)

  // Off again: the ring gets nothing more.
  (*source)->set_kernel_ring_on(false);
  seen = exec_once("ring-off-again-" + random_hex(8));
  ASSERT_TRUE(seen.found);
  EXPECT_FALSE(seen.flagged);
  EXPECT_TRUE(seen.in_ring.empty());
}

// The collector follows the kernel ring without freeing anything: it reads records the
// holder has already consumed, and when the holder has gone a whole ring ahead (records
// freed and written over before the collector read them), it skips to the holder's
// position, counts the lap, and reads what comes next correctly: never a torn record.
TEST_F(ExecProbe, TheCollectorFollowsTheKernelRingAndSkipsWhatItWasLappedOn) {
  ExecSourceOptions options;
  options.kernel_ring_bytes = 16384;
  auto source = ExecSource::open(options, logger_);
  ASSERT_TRUE(source) << source.error().message;
  auto ring = KernelRing::map(fcntl((*source)->kernel_ring_fd(), F_DUPFD_CLOEXEC, 0), (*source)->kernel_ring_bytes());
  ASSERT_TRUE(ring) << ring.error().message;
  PidCollector events(**source);
  (*source)->set_kernel_ring_on(true);
  size_t holder_records = 0;
  auto holder_drains = [&] { holder_records += (*ring)->consume([](const void*, size_t) {}); };

  // The holder reads (and frees) the exec first; the collector still gets it.
  std::vector<std::string> args = {"sh", "-c", "read _ || true", "followed-" + random_hex(8)};
  {
    BlockedChild child("/bin/sh", args);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool held = false;
    while (!held && std::chrono::steady_clock::now() < deadline) {
      (*ring)->consume([&](const void* data, size_t size) {
        auto rec = parse_exec_record(data, size);
        held = held || (rec && static_cast<pid_t>(rec->header.pid) == child.pid());
      });
      if (!held) ::usleep(1000);
    }
    ASSERT_TRUE(held) << "the holder never saw the exec";
    auto rec = events.wait_for(child.pid());
    ASSERT_TRUE(rec) << "the collector did not get the exec the holder had freed";
    EXPECT_NE(rec->header.flags & EXEC_FLAG_IN_KERNEL_RING, 0u);
    EXPECT_EQ(rec->argv, argv_bytes(args));
    EXPECT_EQ(child.wait(), 0);
  }

  // Now the collector stays away while the holder keeps up with 300 execs (at least
  // 120 bytes each: more than twice the 16 KiB ring).
  const uint64_t malformed_before = (*source)->malformed();
  ASSERT_EQ((*source)->counters().kernel_ring_follow_laps, 0u);
  for (int i = 0; i < 300; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      execl("/bin/true", "true", static_cast<char*>(nullptr));
      _exit(127);
    }
    ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
    holder_drains();
  }
  EXPECT_EQ((*source)->counters().kernel_ring_drops, 0u) << "the holder kept up: the ring never filled";
  ASSERT_TRUE((*source)->consume());
  EXPECT_GE((*source)->counters().kernel_ring_follow_laps, 1u);
  EXPECT_GT((*source)->counters().kernel_ring_follow_skipped_bytes, 0u);
  EXPECT_EQ((*source)->malformed(), malformed_before) << "a torn record reached the collector";

  // After the lap, the next exec is read whole.
  args.back() = "after-lap-" + random_hex(8);
  BlockedChild child("/bin/sh", args);
  auto rec = events.wait_for(child.pid());
  ASSERT_TRUE(rec) << "the collector lost its way after the lap";
  EXPECT_EQ(rec->argv, argv_bytes(args));
  EXPECT_EQ(child.wait(), 0);
  holder_drains();
  EXPECT_GT(holder_records, 300u);
  EXPECT_EQ((*source)->malformed(), malformed_before);
}

TEST(KernelRingFollowerMap, RefusesSizesThatAreNotAPowerOfTwoOfPages) {
  EXPECT_FALSE(KernelRingFollower::map(-1, 4096));
  EXPECT_FALSE(KernelRingFollower::map(0, 4096 + 8));
  EXPECT_FALSE(KernelRingFollower::map(0, 512));
}

TEST(KernelRingMap, RefusesSizesThatAreNotAPowerOfTwoOfPages) {
  EXPECT_FALSE(KernelRing::map(-1, 4096));
  EXPECT_FALSE(KernelRing::map(::dup(0), 4096 + 8));
  EXPECT_FALSE(KernelRing::map(::dup(0), 512));
}

// The classic-tracepoint fallback, in a child with a private mount namespace so this
// test can hide and mount tracefs without touching the host's mounts.
TEST_F(ExecProbe, TracepointFallbackNeedsTracefsAndThenDeliversEvents) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto check = [](bool ok, const char* what) {
      if (!ok) {
        fprintf(stderr, "tracepoint child: %s (%s)\n", what, strerror(errno));
        _exit(1);
      }
    };
    check(unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS)");
    check(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0, "make / private");
    // Hide any tracefs (and debugfs's tracing directory) behind empty tmpfs mounts.
    check(mount("none", "/sys/kernel/tracing", "tmpfs", 0, nullptr) == 0, "tmpfs over tracing");
    (void)mount("none", "/sys/kernel/debug", "tmpfs", 0, nullptr);
    auto logger = make_logger("exec-probe-test-tp", "off");
    ExecSourceOptions options;
    options.attach = AttachMode::kTracepoint;
    auto refused = ExecSource::open(options, logger);
    check(!refused, "attach without tracefs unexpectedly worked");
    if (refused.error().message.find("tracefs") == std::string::npos) {
      fprintf(stderr, "tracepoint child: error does not mention tracefs: %s\n", refused.error().message.c_str());
      _exit(1);
    }
    check(umount("/sys/kernel/tracing") == 0, "umount tmpfs");
    check(mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nullptr) == 0, "mount tracefs");
    auto source = ExecSource::open(options, logger);
    if (!source) {
      fprintf(stderr, "tracepoint child: %s\n", source.error().message.c_str());
      _exit(1);
    }
    check(std::string((*source)->attach_mode()) == "tracepoint", "attach mode");
    PidCollector events(**source);
    std::vector<std::string> args = {"sh", "-c", "read _ || true", "tp-" + random_hex(8)};
    BlockedChild child("/bin/sh", args);
    auto rec = events.wait_for(child.pid());
    check(rec.has_value(), "no event from the tracepoint program");
    check(rec->header.flags & EXEC_FLAG_FROM_TRACEPOINT, "tracepoint flag");
    check(rec->filename == "/bin/sh", "filename");
    check(rec->argv == argv_bytes(args), "argv");
    check(rec->header.ppid == static_cast<uint32_t>(getpid()), "ppid");
    child.wait();
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "see the tracepoint child's message above";
}

}  // namespace
}  // namespace cryptnono::collector
