// Transport and /proc helpers: real ZeroMQ sockets on ipc in a temp dir, real /proc.
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "cryptnono/clock.h"
#include "cryptnono/proc.h"
#include "cryptnono/transport.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

namespace cryptnono {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/cryptnono-common-XXXXXX";
  return mkdtemp(tmpl);
}

TEST(Transport, DeliversEnvelopeWithHeaderAndCountsGaps) {
  zmq::context_t ctx;
  auto dir = temp_dir();
  std::string ep = "ipc://" + dir + "/sock/pub.sock";  // nested dir is created by bind
  auto pub = Publisher::bind(ctx, ep, "node-a", "collector", "collector");
  ASSERT_TRUE(pub) << pub.error().message;
  auto sub = Subscriber::connect(ctx, {ep}, {std::string(topic::kExec)});
  ASSERT_TRUE(sub) << sub.error().message;

  // PUB/SUB has a join delay: publish until the first message arrives.
  Received got;
  bool arrived = false;
  for (int i = 0; i < 200 && !arrived; ++i) {
    capnp::MallocMessageBuilder mb;
    auto env = (*pub)->begin(mb, topic::kExec);
    env.getBody().initExec().setPid(4242);
    ASSERT_TRUE((*pub)->send(topic::kExec, mb));
    if ((*sub)->wait(-1, 10) == Subscriber::Wait::kMessage) arrived = (*sub)->try_receive(got);
  }
  ASSERT_TRUE(arrived);
  EXPECT_EQ(got.topic(), "exec");
  auto env = got.envelope();
  ASSERT_TRUE(env);
  EXPECT_EQ(std::string(env->getNode().cStr()), "node-a");
  EXPECT_EQ(std::string(env->getPublisherKind().cStr()), "collector");
  EXPECT_EQ(env->getBody().getExec().getPid(), 4242u);
  EXPECT_GT(env->getSequence(), 0u);

  SequenceTracker tracker;
  EXPECT_TRUE(tracker.observe("p", "exec", 5).new_publisher);
  EXPECT_EQ(tracker.observe("p", "exec", 6).lost, 0u);
  EXPECT_EQ(tracker.observe("p", "exec", 10).lost, 3u);
  EXPECT_EQ(tracker.observe("p", "stats", 1).lost, 0u);  // topics are counted apart
  EXPECT_EQ(tracker.total_lost(), 3u);
  std::filesystem::remove_all(dir);
}

TEST(Transport, DiscardsMessagesThatAreNotTwoFrames) {
  zmq::context_t ctx;
  auto dir = temp_dir();
  std::string ep = "ipc://" + dir + "/raw.sock";
  zmq::socket_t raw(ctx, zmq::socket_type::pub);
  raw.bind(ep);
  auto sub = Subscriber::connect(ctx, {ep}, {""});
  ASSERT_TRUE(sub);
  Received got;
  bool seen_good = false;
  for (int i = 0; i < 200 && !seen_good; ++i) {
    raw.send(zmq::str_buffer("exec"), zmq::send_flags::none);  // one frame only
    raw.send(zmq::str_buffer("exec"), zmq::send_flags::sndmore);
    raw.send(zmq::str_buffer("1234567"), zmq::send_flags::none);  // not whole words
    capnp::MallocMessageBuilder mb;
    mb.initRoot<schema::Envelope>().setSequence(7);
    auto words = capnp::messageToFlatArray(mb);
    raw.send(zmq::str_buffer("exec"), zmq::send_flags::sndmore);
    raw.send(zmq::buffer(words.asBytes().begin(), words.asBytes().size()), zmq::send_flags::none);
    if ((*sub)->wait(-1, 10) == Subscriber::Wait::kMessage) {
      while ((*sub)->try_receive(got)) {
        auto env = got.envelope();
        ASSERT_TRUE(env);
        EXPECT_EQ(env->getSequence(), 7u);
        seen_good = true;
      }
    }
  }
  EXPECT_TRUE(seen_good);
  EXPECT_GT((*sub)->malformed(), 0u);
  std::filesystem::remove_all(dir);
}

TEST(Transport, ReportsEachSubscriptionWhenTracking) {
  zmq::context_t ctx;
  auto dir = temp_dir();
  std::string ep = "ipc://" + dir + "/xpub.sock";
  auto pub = Publisher::bind(ctx, ep, "n", "collector", "collector");
  ASSERT_TRUE(pub);
  ASSERT_TRUE((*pub)->track_subscriptions());
  auto first = Subscriber::connect(ctx, {ep}, {"exec"});
  auto second = Subscriber::connect(ctx, {ep}, {"exec", "stats"});
  ASSERT_TRUE(first && second);
  std::vector<std::string> seen;
  for (int i = 0; i < 300 && seen.size() < 3; ++i) {
    for (auto& t : (*pub)->take_subscriptions()) seen.push_back(t);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::sort(seen.begin(), seen.end());
  // Both subscribers' "exec" are reported, not only the first (verbose XPUB).
  EXPECT_EQ(seen, (std::vector<std::string>{"exec", "exec", "stats"}));
  std::filesystem::remove_all(dir);
}

TEST(Proc, ReadsOwnStatCmdlineAndIdentity) {
  ProcReader proc;
  auto st = proc.stat(getpid());
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(st->ppid, getppid());
  EXPECT_GT(st->start_ticks, 0u);
  EXPECT_EQ(st->flags & kPfKthread, 0u);
  bool truncated = true;
  auto cmd = proc.cmdline(getpid(), 1 << 20, &truncated);
  ASSERT_TRUE(cmd);
  EXPECT_FALSE(truncated);
  EXPECT_NE(cmd->find("common_test"), std::string::npos);
  auto cut = proc.cmdline(getpid(), 3, &truncated);
  ASSERT_TRUE(cut);
  EXPECT_EQ(cut->size(), 3u);
  EXPECT_TRUE(truncated);
  auto ids = proc.ids(getpid());
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids->first, getuid());
  EXPECT_FALSE(proc.stat(0).has_value());
}

TEST(Proc, ParsesCommWithParenthesesAndSpacesFromFixture) {
  auto dir = temp_dir();
  std::filesystem::create_directories(dir + "/77");
  std::ofstream(dir + "/77/stat") << "77 (evil) (x y) S 12 77 77 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 5555 0 0\n";
  std::ofstream(dir + "/77/cgroup") << "12:pids:/kubepods/pod1/abc\n0::/kubepods.slice/a.slice/cri-containerd-ff.scope\n";
  ProcReader proc(dir);
  auto st = proc.stat(77);
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(st->comm, "evil) (x y");
  EXPECT_EQ(st->ppid, 12);
  EXPECT_EQ(st->start_ticks, 5555u);
  EXPECT_EQ(proc.list_pids(), std::vector<pid_t>{77});
  auto cg = proc.cgroup(77);
  ASSERT_TRUE(cg);
  EXPECT_EQ(*cg, "/kubepods.slice/a.slice/cri-containerd-ff.scope");
  EXPECT_EQ(cgroup_tail(*cg, 2), "a.slice/cri-containerd-ff.scope");
  std::filesystem::remove_all(dir);
}

TEST(Received, AssignDecodesWhatThePublisherBuiltAndRefusesGarbage) {
  capnp::MallocMessageBuilder builder;
  auto env = builder.initRoot<schema::Envelope>();
  env.setNode("node-b");
  env.setSequence(42);
  env.getBody().initExec().setPid(1234);
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();

  Received got;
  ASSERT_TRUE(got.assign("exec", bytes.begin(), bytes.size()));
  EXPECT_EQ(got.topic(), "exec");
  auto decoded = got.envelope();
  ASSERT_TRUE(decoded) << decoded.error().message;
  EXPECT_EQ(decoded->getSequence(), 42u);
  EXPECT_EQ(decoded->getBody().getExec().getPid(), 1234u);

  // Not whole words, empty, and a segment table claiming more than the bytes hold: each is
  // refused, and the previous message is gone (envelope() fails rather than serving it).
  EXPECT_FALSE(got.assign("exec", bytes.begin(), bytes.size() - 1));
  EXPECT_FALSE(got.envelope());
  EXPECT_FALSE(got.assign("exec", bytes.begin(), 0));
  const uint32_t lying_table[2] = {0, 1'000'000};  // one segment of a million words
  EXPECT_FALSE(got.assign("exec", lying_table, sizeof lying_table));
  EXPECT_FALSE(got.envelope());
}

TEST(Transport, IpcSocketsAreReachableOnlyByTheirOwnerAndGroup) {
  zmq::context_t ctx;
  auto dir = temp_dir();
  std::string sock_dir = dir + "/run";
  std::string path = sock_dir + "/stage.sock";
  auto pub = Publisher::bind(ctx, "ipc://" + path, "node", "collector", "collector");
  ASSERT_TRUE(pub) << pub.error().message;
  struct stat dst {}, sst {};
  ASSERT_EQ(stat(sock_dir.c_str(), &dst), 0);
  ASSERT_EQ(stat(path.c_str(), &sst), 0);
  EXPECT_EQ(dst.st_mode & 07777, 0700u) << "the directory ZeroMQ's socket lives in";
  EXPECT_EQ(sst.st_mode & 0777, 0660u) << "the socket file: owner and group only";

  if (geteuid() != 0) GTEST_SKIP() << "needs root to try the socket as another user";
  // Open the directory to everyone, so only the socket file's own mode stands in the way
  // of a stranger (uid/gid 65534), then try to connect as that stranger.
  chmod(sock_dir.c_str(), 0755);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    _exit(rc == 0 ? 0 : errno == EACCES ? 1 : 3);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << "a stranger must get EACCES (0: connected, 2: setuid failed, 3: other)";
  std::filesystem::remove_all(dir);
}

TEST(Clock, FormatsTimestampLikeCryptnono) {
  EXPECT_EQ(format_timestamp(1706720372990489000ull), "2024-01-31T16:59:32.990489Z");
}

}  // namespace
}  // namespace cryptnono
