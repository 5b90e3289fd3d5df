// The direct path (cryptnono/direct.h): real AF_UNIX SOCK_SEQPACKET sockets and real ZeroMQ
// sockets on ipc in a temp dir, the Publisher and Subscriber the stages use.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <capnp/message.h>

#include "cryptnono/direct.h"
#include "cryptnono/transport.h"

namespace cryptnono {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/cryptnono-direct-XXXXXX";
  return mkdtemp(tmpl);
}

struct Pair {
  zmq::context_t ctx;
  std::string dir = temp_dir();
  std::string ep = "ipc://" + dir + "/collector.sock";
  std::string path = dir + "/collector.direct";
  std::unique_ptr<Publisher> pub;
  std::unique_ptr<Subscriber> sub;

  void start_publisher() {
    auto p = Publisher::bind(ctx, ep, "node-a", "collector", "collector");
    ASSERT_TRUE(p) << p.error().message;
    pub = std::move(*p);
    auto d = pub->add_direct(path);
    ASSERT_TRUE(d) << d.error().message;
  }
  void start() {
    start_publisher();
    auto s = Subscriber::connect(ctx, {ep}, {std::string(topic::kExec)});
    ASSERT_TRUE(s) << s.error().message;
    sub = std::move(*s);
    sub->use_direct(path, {std::string(topic::kExec)});
    ASSERT_TRUE(sub->direct_connected());
    // The connection and its subscription reach the publisher's side.
    for (int i = 0; i < 100 && (pub->direct()->clients() == 0 || !subscribed()); ++i) {
      pub->service_direct();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_EQ(pub->direct()->clients(), 1u);
  }
  // True once a probe message goes out on the direct path (the subscription was read).
  bool subscribed() {
    uint64_t before = pub->direct()->sent();
    send(0, "probe");
    return pub->direct()->sent() > before;
  }
  // Waits until messages also come over ZeroMQ (its subscription joins asynchronously),
  // then drains everything queued.
  void join_zmq() {
    Received got;
    bool zmq_seen = false;
    for (int i = 0; i < 300 && !zmq_seen; ++i) {
      send(1, "join");
      sub->wait(-1, 10);
      while (sub->try_receive(got)) zmq_seen |= !got.direct();
    }
    ASSERT_TRUE(zmq_seen);
    while (sub->wait(-1, 50) == Subscriber::Wait::kMessage && sub->try_receive(got)) {
    }
  }
  void send(uint32_t pid, const std::string& comm, std::string_view t = topic::kExec) {
    capnp::MallocMessageBuilder mb;
    auto env = pub->begin(mb, t);
    auto ev = env.getBody().initExec();
    ev.setPid(pid);
    ev.setComm(comm);
    pub->send(t, mb);
  }
  ~Pair() { std::filesystem::remove_all(dir); }
};

TEST(DirectPath, PathFollowsTheIpcEndpoint) {
  EXPECT_EQ(direct_path_for("ipc:///run/cryptnono/collector.sock"), "/run/cryptnono/collector.direct");
  EXPECT_EQ(direct_path_for("ipc:///tmp/x/pub"), "/tmp/x/pub.direct");
  EXPECT_EQ(direct_path_for("ipc://@abstract"), "");
  EXPECT_EQ(direct_path_for("ipc://*"), "");
  EXPECT_EQ(direct_path_for("tcp://127.0.0.1:5556"), "");
}

TEST(DirectPath, EachMessageComesOnBothPathsWithTheSameSequence) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  ASSERT_NO_FATAL_FAILURE(p.join_zmq());
  Received got;
  p.send(4242, "victim");
  std::set<std::pair<bool, uint64_t>> copies;  // (direct?, sequence)
  for (int i = 0; i < 100 && copies.size() < 2; ++i) {
    p.sub->wait(-1, 20);
    while (p.sub->try_receive(got)) {
      auto env = got.envelope();
      ASSERT_TRUE(env);
      ASSERT_EQ(got.topic(), "exec");
      EXPECT_EQ(env->getBody().getExec().getPid(), 4242u);
      EXPECT_EQ(std::string(env->getBody().getExec().getComm().cStr()), "victim");
      copies.emplace(got.direct(), env->getSequence());
    }
  }
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_TRUE(copies.begin()->first == false && copies.rbegin()->first == true);
  EXPECT_EQ(copies.begin()->second, copies.rbegin()->second);  // one message, two copies
  EXPECT_GE(p.sub->direct_received(), 1u);
  EXPECT_EQ(p.sub->malformed(), 0u);
}

TEST(DirectPath, OnlySubscribedTopicsAreSentDirectly) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  uint64_t before = p.pub->direct()->sent();
  p.send(1, "stats-like", topic::kStats);
  EXPECT_EQ(p.pub->direct()->sent(), before);
  p.send(2, "exec");
  EXPECT_EQ(p.pub->direct()->sent(), before + 1);
}

TEST(DirectPath, SocketFileIsOwnerAndGroupOnly) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start_publisher());
  struct stat st{};
  ASSERT_EQ(stat(p.path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST(DirectPath, AFullClientBufferDropsWithoutBlockingAndZeroMqStillDelivers) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  ASSERT_NO_FATAL_FAILURE(p.join_zmq());
  // The subscriber reads nothing while 2,000 messages of ~8 KiB go out: more than any
  // socket buffer holds (net.core.wmem_max caps ours). send() must return each time.
  std::string big(8000, 'x');
  auto t0 = std::chrono::steady_clock::now();
  for (uint32_t i = 100; i < 2100; ++i) p.send(i, big);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GT(p.pub->direct()->dropped(), 0u);
  EXPECT_LT(took, std::chrono::seconds(10));  // a blocking send would hang forever here
  EXPECT_EQ(p.pub->direct()->clients(), 1u);  // a slow client is not disconnected
  // Every message still arrives once the subscriber reads: the dropped ones over ZeroMQ.
  DuplicateFilter first;
  std::set<uint32_t> pids;
  Received got;
  size_t firsts = 0;
  while (p.sub->wait(-1, 200) == Subscriber::Wait::kMessage) {
    while (p.sub->try_receive(got)) {
      auto env = got.envelope();
      ASSERT_TRUE(env);
      if (!first.first_copy(env->getPublisherId().cStr(), got.topic(), env->getSequence())) continue;
      ++firsts;
      pids.insert(env->getBody().getExec().getPid());
    }
  }
  EXPECT_EQ(firsts, 2000u);
  EXPECT_EQ(pids.size(), 2000u);
  EXPECT_EQ(*pids.begin(), 100u);
  EXPECT_EQ(*pids.rbegin(), 2099u);
}

TEST(DirectPath, GarbageFromAClientClosesItsConnection) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start_publisher());
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", p.path.c_str());
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  for (int i = 0; i < 50 && p.pub->direct()->clients() == 0; ++i) {
    p.pub->service_direct();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(p.pub->direct()->clients(), 1u);
  ASSERT_EQ(send(fd, "GET / HTTP/1.0\r\n", 16, 0), 16);
  for (int i = 0; i < 50 && p.pub->direct()->clients() == 1; ++i) {
    p.pub->service_direct();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(p.pub->direct()->clients(), 0u);
  char c;
  EXPECT_EQ(recv(fd, &c, 1, 0), 0);  // closed by the publisher
  close(fd);
}

TEST(DirectPath, SubscriberNoticesARestartAndReconnects) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  p.pub.reset();  // the publisher stops: its direct socket closes
  Received got;
  for (int i = 0; i < 50 && p.sub->direct_connected(); ++i) {
    p.sub->wait(-1, 10);
    (void)p.sub->try_receive(got);
  }
  EXPECT_FALSE(p.sub->direct_connected());
  EXPECT_EQ(p.sub->direct_losses(), 1u);
  EXPECT_EQ(p.sub->direct_retry_timeout_ms(), Subscriber::kDirectRetryMs);
  EXPECT_EQ(p.sub->maintain_direct(), "");  // nothing listens there now

  ASSERT_NO_FATAL_FAILURE(p.start_publisher());  // a new publisher at the same path
  std::string changed;
  for (int i = 0; i < 100 && changed.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    changed = p.sub->maintain_direct();
  }
  EXPECT_EQ(changed, "connected");
  EXPECT_TRUE(p.sub->direct_connected());
  EXPECT_EQ(p.sub->direct_retry_timeout_ms(), -1);
  for (int i = 0; i < 100 && !p.subscribed(); ++i) {
    p.pub->service_direct();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  p.send(77, "after-restart");
  bool direct_copy = false;
  for (int i = 0; i < 100 && !direct_copy; ++i) {
    p.sub->wait(-1, 10);
    while (p.sub->try_receive(got)) {
      auto env = got.envelope();
      ASSERT_TRUE(env);
      direct_copy |= got.direct() && env->getBody().getExec().getPid() == 77u;
    }
  }
  EXPECT_TRUE(direct_copy);
}

TEST(DuplicateFilter, FirstCopyWinsInAnyOrder) {
  DuplicateFilter f;
  EXPECT_TRUE(f.first_copy("pub-a", "exec", 1));   // direct
  EXPECT_TRUE(f.first_copy("pub-a", "exec", 2));   // direct
  EXPECT_FALSE(f.first_copy("pub-a", "exec", 1));  // ZeroMQ's copies
  EXPECT_FALSE(f.first_copy("pub-a", "exec", 2));
  // The direct path skipped 3 and 4 (full buffer) and delivered 5; ZeroMQ brings 3..5.
  EXPECT_TRUE(f.first_copy("pub-a", "exec", 5));
  EXPECT_TRUE(f.first_copy("pub-a", "exec", 3));
  EXPECT_TRUE(f.first_copy("pub-a", "exec", 4));
  EXPECT_FALSE(f.first_copy("pub-a", "exec", 5));
  // Other topics and other publishers (a restart) are their own streams.
  EXPECT_TRUE(f.first_copy("pub-a", "fpu", 1));
  EXPECT_TRUE(f.first_copy("pub-b", "exec", 1));
  EXPECT_FALSE(f.first_copy("pub-b", "exec", 1));
}

TEST(DuplicateFilter, WindowSlidesAndForgetsOnlyWhatIsOutOfIt) {
  DuplicateFilter f;
  const uint64_t w = DuplicateFilter::kWindow;
  EXPECT_TRUE(f.first_copy("p", "exec", 10));
  EXPECT_TRUE(f.first_copy("p", "exec", 10 + w - 1));  // 10 is still inside the window
  EXPECT_FALSE(f.first_copy("p", "exec", 10));
  EXPECT_TRUE(f.first_copy("p", "exec", 10 + w + 5));  // now 10 is out of it
  // Too old to tell: treated as a first copy (judging twice is safe, missing one is not).
  EXPECT_TRUE(f.first_copy("p", "exec", 10));
  // The slot reused for 10 + w + 5 does not make its old tenant (15) look seen.
  EXPECT_FALSE(f.first_copy("p", "exec", 10 + w + 5));
  EXPECT_TRUE(f.first_copy("p", "exec", 10 + w + 4));
  // A jump past the whole window starts clean.
  EXPECT_TRUE(f.first_copy("p", "exec", 10 * w));
  EXPECT_TRUE(f.first_copy("p", "exec", 10 * w - 1));
  EXPECT_FALSE(f.first_copy("p", "exec", 10 * w - 1));
}

TEST(DuplicateFilter, BoundsTheNumberOfStreams) {
  DuplicateFilter f;
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(f.first_copy("pub-" + std::to_string(i), "exec", 1));
  // The most recent publishers are remembered, the oldest forgotten.
  EXPECT_FALSE(f.first_copy("pub-99", "exec", 1));
  EXPECT_TRUE(f.first_copy("pub-0", "exec", 1));
}

}  // namespace
}  // namespace cryptnono
