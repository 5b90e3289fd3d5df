// The direct path (cryptnono/direct.h): real AF_UNIX SOCK_SEQPACKET sockets and real ZeroMQ
// sockets on ipc in a temp dir, the Publisher and Subscriber the stages use.
#include <sys/mman.h>
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
  void send(uint32_t pid, const std::string& comm, std::string_view t = topic::kExec, bool in_kernel_ring = false) {
    capnp::MallocMessageBuilder mb;
    auto env = pub->begin(mb, t);
    auto ev = env.getBody().initExec();
    ev.setPid(pid);
    ev.setComm(comm);
    ev.setInKernelRing(in_kernel_ring);
    pub->send(t, mb, in_kernel_ring);
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

TEST(DirectPath, ALargeMessageArrivesWholeInOneDatagram) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  // As large as an exec event with the most argv the probe copies (256 KiB), and more.
  std::string big(600 * 1024, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  p.send(777, big);
  Received got;
  bool seen = false;
  for (int i = 0; i < 100 && !seen; ++i) {
    p.sub->wait(-1, 20);
    while (p.sub->try_receive(got)) {
      if (!got.direct()) continue;
      auto env = got.envelope();
      ASSERT_TRUE(env);
      if (env->getBody().getExec().getPid() != 777u) continue;  // the fixture's probes
      auto comm = env->getBody().getExec().getComm();
      EXPECT_EQ(comm.size(), big.size());
      EXPECT_TRUE(std::string_view(comm.cStr(), comm.size()) == big) << "the message came back altered";
      seen = true;
    }
  }
  EXPECT_TRUE(seen);
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

// --- TwoPathJudge: which copy to handle, gaps, and the hand-over to the direct path -----

TEST(TwoPathJudge, ZeroMqAloneCountsGapsAndHandlesEveryFirstCopy) {
  TwoPathJudge j(true);
  auto v = j.judge("pub-a", "exec", 1, false);
  EXPECT_TRUE(v.handle);
  EXPECT_TRUE(v.new_publisher);
  EXPECT_EQ(j.judge("pub-a", "exec", 2, false).lost, 0u);
  v = j.judge("pub-a", "exec", 5, false);
  EXPECT_TRUE(v.handle);
  EXPECT_EQ(v.lost, 2u);
  EXPECT_FALSE(v.direct_now_primary);
  EXPECT_FALSE(j.direct_primary());
  EXPECT_EQ(j.total_lost(), 2u);
}

TEST(TwoPathJudge, DirectTakesOverOnceZeroMqReachedTheStartOfItsRun) {
  TwoPathJudge j(true);
  EXPECT_TRUE(j.judge("pub-a", "exec", 1, false).handle);
  // The direct path connects and its first copy (5) is ahead of ZeroMQ (at 1): 2..4 can
  // still only come over ZeroMQ, so no hand-over yet.
  auto v = j.judge("pub-a", "exec", 5, true);
  EXPECT_TRUE(v.handle);
  EXPECT_FALSE(v.direct_now_primary);
  EXPECT_EQ(v.lost, 0u);  // direct copies are not the primary path's: no gap judged on them
  EXPECT_TRUE(j.judge("pub-a", "exec", 6, true).handle);
  EXPECT_TRUE(j.judge("pub-a", "exec", 2, false).handle);
  EXPECT_TRUE(j.judge("pub-a", "exec", 3, false).handle);
  EXPECT_FALSE(j.direct_primary());
  v = j.judge("pub-a", "exec", 4, false);  // ZeroMQ reaches the run's start: nothing is missing
  EXPECT_TRUE(v.handle);
  EXPECT_TRUE(v.direct_now_primary);
  EXPECT_TRUE(j.direct_primary());
  // ZeroMQ copies still in flight are second copies; the direct path goes on without a gap.
  EXPECT_FALSE(j.judge("pub-a", "exec", 5, false).handle);
  EXPECT_FALSE(j.judge("pub-a", "exec", 6, false).handle);
  v = j.judge("pub-a", "exec", 7, true);
  EXPECT_TRUE(v.handle);
  EXPECT_EQ(v.lost, 0u);
  EXPECT_FALSE(v.direct_now_primary);  // said once
  // From now a datagram the direct path drops is a counted loss.
  v = j.judge("pub-a", "exec", 10, true);
  EXPECT_EQ(v.lost, 2u);
  EXPECT_EQ(j.total_lost(), 2u);
}

TEST(TwoPathJudge, ABrokenDirectRunRestartsTheWait) {
  TwoPathJudge j(true);
  j.judge("pub-a", "exec", 1, false);
  j.judge("pub-a", "exec", 3, true);
  j.judge("pub-a", "exec", 5, true);  // 4 dropped on the direct path: the run starts again at 5
  EXPECT_FALSE(j.judge("pub-a", "exec", 2, false).direct_now_primary);  // would do for a run from 3
  EXPECT_FALSE(j.judge("pub-a", "exec", 3, false).direct_now_primary);
  EXPECT_TRUE(j.judge("pub-a", "exec", 4, false).direct_now_primary);
  EXPECT_EQ(j.total_lost(), 0u);
}

TEST(TwoPathJudge, LosingTheDirectPathHandsBackToZeroMqAndCountsWhatFellBetween) {
  TwoPathJudge j(true);
  j.judge("pub-a", "exec", 1, false);
  EXPECT_TRUE(j.judge("pub-a", "exec", 2, true).direct_now_primary);  // ZeroMQ at 1, run from 2
  j.judge("pub-a", "exec", 3, true);
  EXPECT_TRUE(j.direct_lost());  // it was primary: the caller subscribes on ZeroMQ again
  EXPECT_FALSE(j.direct_primary());
  EXPECT_FALSE(j.direct_lost());  // already ZeroMQ's
  // 4 and 5 went out while neither path took them.
  auto v = j.judge("pub-a", "exec", 6, false);
  EXPECT_TRUE(v.handle);
  EXPECT_EQ(v.lost, 2u);
  // A restarted publisher is a new one on whichever path is primary.
  v = j.judge("pub-b", "exec", 1, false);
  EXPECT_TRUE(v.new_publisher);
  EXPECT_EQ(v.lost, 0u);
}

TEST(TwoPathJudge, WithoutDirectAloneZeroMqStaysPrimary) {
  TwoPathJudge j(false);
  j.judge("pub-a", "exec", 1, false);
  for (uint64_t s = 2; s < 10; ++s) {
    auto v = j.judge("pub-a", "exec", s, true);
    EXPECT_TRUE(v.handle);
    EXPECT_FALSE(v.direct_now_primary);
    EXPECT_FALSE(j.judge("pub-a", "exec", s, false).handle);
  }
  EXPECT_FALSE(j.direct_primary());
  EXPECT_EQ(j.total_lost(), 0u);
}

TEST(TwoPathJudge, WhileTheKernelRingIsHeldDirectGapsAreNotLosses) {
  TwoPathJudge j(true);
  j.judge("pub-a", "exec", 1, false);
  EXPECT_TRUE(j.judge("pub-a", "exec", 2, true).direct_now_primary);
  j.expect_direct_gaps(true);
  auto v = j.judge("pub-a", "exec", 9, true);  // 3..8 went to the kernel ring
  EXPECT_TRUE(v.handle);
  EXPECT_EQ(v.lost, 0u);
  EXPECT_FALSE(j.judge("pub-a", "exec", 9, false).handle);  // a late ZeroMQ copy is still a duplicate
  // Losing the direct path (and with it the ring) ends the allowance.
  EXPECT_TRUE(j.direct_lost());
  j.judge("pub-a", "exec", 10, false);
  EXPECT_TRUE(j.judge("pub-a", "exec", 11, true).direct_now_primary);
  EXPECT_EQ(j.judge("pub-a", "exec", 14, true).lost, 2u);
  EXPECT_EQ(j.total_lost(), 2u);
}

// --- The kernel ring offer: one holder, an fd over SCM_RIGHTS, its events skipped -------

namespace {

// Serves the publisher's direct socket until `sub` has an answer to its ring request.
std::optional<Subscriber::KernelRingAnswer> ask_for_ring(Publisher& pub, Subscriber& sub) {
  if (!sub.request_kernel_ring(topic::kExec)) return std::nullopt;
  Received got;
  for (int i = 0; i < 200; ++i) {
    pub.service_direct();
    if (sub.wait(-1, 5) == Subscriber::Wait::kMessage)
      while (sub.try_receive(got)) {
      }
    if (auto a = sub.take_kernel_ring_answer()) return a;
  }
  return std::nullopt;
}

}  // namespace

TEST(DirectPath, TheKernelRingGoesToOneClientAndItsEventsAreNotSentToIt) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  // Stands in for the BPF ring map (tests/bpf covers the real one): the server only passes
  // the fd on, and the test can tell it arrived by writing through one end and reading the other.
  int memfd = memfd_create("ring-stand-in", MFD_CLOEXEC);
  ASSERT_GE(memfd, 0);
  ASSERT_EQ(ftruncate(memfd, 4096), 0);
  std::vector<bool> holds;
  ASSERT_TRUE(p.pub->offer_kernel_ring(std::string(topic::kExec), memfd, 1 << 20,
                                       [&holds](bool held) { holds.push_back(held); }));

  auto answer = ask_for_ring(*p.pub, *p.sub);
  ASSERT_TRUE(answer);
  ASSERT_GE(answer->fd, 0) << answer->refusal;
  EXPECT_EQ(answer->bytes, uint64_t{1} << 20);
  EXPECT_EQ(answer->publisher_id, p.pub->id());
  EXPECT_NE(answer->fd, memfd);
  ASSERT_EQ(::pwrite(memfd, "ring", 4, 0), 4);
  char buf[4] = {};
  ASSERT_EQ(::pread(answer->fd, buf, 4, 0), 4);  // the same file
  EXPECT_EQ(std::string(buf, 4), "ring");
  ::close(answer->fd);
  EXPECT_EQ(holds, std::vector<bool>{true});
  EXPECT_TRUE(p.pub->direct()->kernel_ring_held());
  EXPECT_EQ(p.pub->direct()->kernel_ring_grants(), 1u);

  // A second client is refused while the first holds it, and still gets every event.
  auto second = Subscriber::connect(p.ctx, {p.ep}, {});
  ASSERT_TRUE(second);
  (*second)->use_direct(p.path, {std::string(topic::kExec)});
  ASSERT_TRUE((*second)->direct_connected());
  auto refused = ask_for_ring(*p.pub, **second);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->fd, -1);
  EXPECT_EQ(refused->bytes, 0u);
  EXPECT_NE(refused->refusal.find("held by another client"), std::string::npos) << refused->refusal;

  // An event that reached the ring skips its holder on the direct path, not the others.
  p.send(7001, "in-ring", topic::kExec, true);
  p.send(7002, "not-in-ring", topic::kExec, false);
  auto direct_pids = [](Subscriber& sub, size_t want) {
    std::vector<uint32_t> pids;
    Received got;
    for (int i = 0; i < 100 && pids.size() < want; ++i) {
      sub.wait(-1, 10);
      while (sub.try_receive(got))
        if (got.direct()) pids.push_back(got.envelope()->getBody().getExec().getPid());
    }
    return pids;
  };
  EXPECT_EQ(direct_pids(*p.sub, 1), std::vector<uint32_t>{7002});
  EXPECT_EQ(direct_pids(**second, 2), (std::vector<uint32_t>{7001, 7002}));

  // The holder leaves: the ring is released and the next client may take it.
  p.sub.reset();
  for (int i = 0; i < 100 && p.pub->direct()->kernel_ring_held(); ++i) {
    p.pub->service_direct();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(holds, (std::vector<bool>{true, false}));
  auto taken = ask_for_ring(*p.pub, **second);
  ASSERT_TRUE(taken);
  ASSERT_GE(taken->fd, 0) << taken->refusal;
  ::close(taken->fd);
  EXPECT_EQ(p.pub->direct()->kernel_ring_grants(), 2u);
  ::close(memfd);
}

TEST(DirectPath, AKernelRingIsRefusedWhenNoneIsOffered) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  auto answer = ask_for_ring(*p.pub, *p.sub);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->fd, -1);
  EXPECT_NE(answer->refusal.find("no kernel ring"), std::string::npos) << answer->refusal;
  // The connection stays up and keeps delivering.
  p.send(7003, "after");
  Received got;
  bool seen = false;
  for (int i = 0; i < 100 && !seen; ++i) {
    p.sub->wait(-1, 10);
    while (p.sub->try_receive(got)) seen |= got.direct() && got.envelope()->getBody().getExec().getPid() == 7003;
  }
  EXPECT_TRUE(seen);
}

// --- Publisher::send_later: held messages keep their order and go out together ---------

TEST(DirectPath, HeldMessagesGoOutInOrderBeforeTheNextSendOrOnFlush) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(p.start());
  ASSERT_NO_FATAL_FAILURE(p.join_zmq());
  auto later = [&](uint32_t pid) {
    capnp::MallocMessageBuilder mb;
    auto env = p.pub->begin(mb, topic::kExec);
    env.getBody().initExec().setPid(pid);
    p.pub->send_later(topic::kExec, mb);
  };
  auto zmq_pids = [&](long wait_ms) {
    std::vector<uint32_t> pids;
    Received got;
    while (p.sub->wait(-1, wait_ms) == Subscriber::Wait::kMessage) {
      while (p.sub->try_receive(got))
        if (!got.direct()) pids.push_back(got.envelope()->getBody().getExec().getPid());
    }
    return pids;
  };
  later(11);
  later(12);
  EXPECT_EQ(p.pub->held(), 2u);
  EXPECT_TRUE(zmq_pids(100).empty());  // held: not on either path yet
  p.send(13, "now");                    // goes out after the held ones
  EXPECT_EQ(p.pub->held(), 0u);
  EXPECT_EQ(zmq_pids(100), (std::vector<uint32_t>{11, 12, 13}));
  later(14);
  EXPECT_EQ(p.pub->flush(), 0u);
  EXPECT_EQ(zmq_pids(100), (std::vector<uint32_t>{14}));
  // Past kMaxHeld the publisher flushes by itself.
  for (uint32_t i = 0; i < Publisher::kMaxHeld; ++i) later(100 + i);
  EXPECT_EQ(p.pub->held(), 0u);
  EXPECT_EQ(zmq_pids(200).size(), Publisher::kMaxHeld);
}

}  // namespace
}  // namespace cryptnono
