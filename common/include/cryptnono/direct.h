// The direct path: a same-node fast lane for latency-critical topics (exec events to the
// enforcers), next to ZeroMQ.
//
// Why: between a publisher's send and a subscriber's receive, ZeroMQ wakes three threads
// (the publisher's I/O thread, the subscriber's I/O thread, the subscriber's own thread).
// On a virtualised node each wake-up costs tens to hundreds of microseconds: 334 µs p50 in
// bench/latency/hop_bench against 18 µs for one AF_UNIX SOCK_SEQPACKET datagram, which wakes
// the receiver once. See BENCHMARKS.md (part 2).
//
// How: the publisher listens on a SOCK_SEQPACKET unix socket next to its ipc:// endpoint.
// A client connects and sends one datagram per topic prefix it wants. Every message the
// publisher sends on a matching topic is also written to the client as one datagram (a
// 16-byte header naming the topic, then the same Cap'n Proto envelope ZeroMQ carries:
// same publisher id, same sequence number), without blocking: when the client's socket
// buffer (8 MiB asked for) is full the datagram is dropped for that client and counted.
// A client subscribed on both paths handles whichever copy comes first and skips the
// other; once the direct path has caught up it drops its ZeroMQ subscription and takes
// the topic from the direct path alone, until that goes down (TwoPathJudge, transport.h).
// Gaps are counted on whichever path is primary: a datagram dropped while the direct path
// carries a topic alone is a counted loss, as a ZeroMQ high-water-mark drop is.
//
// The kernel ring: the publisher may also own a BPF ring buffer that its exec probe writes
// every exec to (bpf/exec.bpf.c). A client that asks for it ("kernel-ring exec") gets the
// ring's fd (SCM_RIGHTS) and reads the execs straight from the kernel (KernelRing,
// kernel_ring.h): one wake-up from the exec to the enforcer, as for a bare ring-buffer
// reader, instead of three hops. One client holds the ring at a time, until it leaves;
// the probe writes to the ring only meanwhile, and then to it alone (the publisher
// follows it read-only: KernelRingFollower). An exec that reached the ring is flagged
// (ExecEvent.inKernelRing) and not sent to the holder over this socket; one the ring
// could not take (full) goes the usual way, so nothing is lost while a copy can be sent.
//
// Who may connect: the socket file is mode 0660 in the ipc directory (0700), as the ipc://
// sockets are. Neither class is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cryptnono/result.h"

namespace cryptnono {

namespace direct {
inline constexpr size_t kHeaderBytes = 16;      // byte 0: version, byte 1: topic length, 2..15: topic
inline constexpr size_t kMaxTopicBytes = 14;
inline constexpr uint8_t kVersion = 1;
inline constexpr std::string_view kSubscribe = "cryptnono-direct/1 subscribe ";
// A client's request for the kernel ring of a topic, and the header topic of the answer:
// an 8-byte ring size (0: refused), then the publisher id (granted) or the reason
// (refused); the ring's fd rides along as SCM_RIGHTS when granted, followed by the wake
// filter's fd when the publisher has one.
inline constexpr std::string_view kRingRequest = "cryptnono-direct/1 kernel-ring ";
inline constexpr std::string_view kRingTopic = "@kernel-ring";
// The socket buffer asked for on each connection (the kernel caps it at net.core.wmem_max).
inline constexpr int kSendBufferBytes = 8 * 1024 * 1024;
}  // namespace direct

// The key of one message stream, publisher id and topic: what DuplicateFilter and
// SequenceTracker keep their per-stream state under.
std::string stream_key(std::string_view publisher_id, std::string_view topic);

// The direct socket path that goes with an ipc:// endpoint: "ipc:///run/x/collector.sock" ->
// "/run/x/collector.direct". Empty for other transports and abstract ipc sockets.
std::string direct_path_for(const std::string& endpoint);

// What a publisher offers as its kernel ring (see above).
struct KernelRingOffer {
  std::string topic;        // the topic whose events the ring carries ("exec")
  int fd = -1;              // the ring map's fd (stays owned by the offerer)
  uint64_t bytes = 0;       // its data size (the map's max_entries)
  std::string publisher_id;
  std::function<void(bool held)> on_hold;  // the probe writes to the ring while held
  // The probe's wake filter map (bpf/wake_filter.h), handed to the holder with the ring so
  // it can say which execs wake it at once; -1: none (every exec wakes it). Stays owned by
  // the offerer, which turns the filter off when the holder leaves.
  int wake_filter_fd = -1;
};

class DirectServer {
 public:
  // Binds and listens at `path` (an existing socket file there is replaced; its directory
  // is created 0700 if missing).
  static Result<std::unique_ptr<DirectServer>> listen(const std::string& path);
  ~DirectServer();
  DirectServer(const DirectServer&) = delete;
  DirectServer& operator=(const DirectServer&) = delete;

  // An epoll fd, readable when a client connects, subscribes or leaves: then call service().
  int fd() const { return epoll_fd_; }
  // Accepts new clients, reads their subscriptions, forgets those that left. Non-blocking.
  void service();
  // Writes one datagram to every client subscribed to a prefix of `topic`. Never blocks.
  // `in_kernel_ring`: the event reached the kernel ring, whose holder is skipped.
  void send(std::string_view topic, const void* payload, size_t size, bool in_kernel_ring = false);
  // Offers a kernel ring to the clients that ask (one holder at a time).
  void offer_kernel_ring(KernelRingOffer offer) { ring_ = std::move(offer); }
  bool kernel_ring_held() const { return ring_holder_ >= 0; }
  uint64_t kernel_ring_grants() const { return ring_grants_; }

  const std::string& path() const { return path_; }
  size_t clients() const { return clients_.size(); }
  uint64_t sent() const { return sent_; }        // datagrams written
  uint64_t dropped() const { return dropped_; }  // datagrams a client's full buffer refused

 private:
  DirectServer() = default;
  void close_client(int fd);
  void read_client(int fd);
  void answer_ring_request(int fd, std::string_view topic);

  struct Client {
    std::vector<std::string> topics;
  };
  std::string path_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  std::map<int, Client> clients_;
  KernelRingOffer ring_;
  int ring_holder_ = -1;
  uint64_t ring_grants_ = 0;
  uint64_t sent_ = 0;
  uint64_t dropped_ = 0;
};

// Tells the first copy of each message from the second, for a subscriber that gets every
// message over two paths (direct and ZeroMQ), in any order. Per publisher and topic it
// remembers which of the last kWindow sequence numbers were seen (a bitmap), so it works
// however the two paths interleave, whatever either of them drops.
class DuplicateFilter {
 public:
  // True the first time (publisher, topic, sequence) is seen. A sequence more than kWindow
  // below the highest one seen is too old to tell: it counts as a first copy (handling a
  // message twice is harmless for a killer, which checks identity; missing one is not).
  bool first_copy(std::string_view publisher_id, std::string_view topic, uint64_t sequence);

  // More than either path can hold in flight (ZeroMQ's receive queue is 100,000 messages).
  static constexpr uint64_t kWindow = uint64_t{1} << 18;

 private:
  struct Stream {
    uint64_t highest = 0;
    std::vector<uint64_t> bits = std::vector<uint64_t>(kWindow / 64);  // 32 KiB
    uint64_t last_used = 0;
  };
  static constexpr size_t kMaxStreams = 8;  // publishers restart; keep the recent ones
  std::map<std::string, Stream, std::less<>> streams_;
  uint64_t uses_ = 0;
};

}  // namespace cryptnono
