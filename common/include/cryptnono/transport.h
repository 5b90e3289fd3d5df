// ZeroMQ PUB/SUB transport between stages. A message is exactly two frames: the topic,
// then one Cap'n Proto Envelope (schema/cryptnono.capnp).
//
// Publisher: stamps node, publisher id, per-topic sequence number and clocks into each
// envelope; never blocks (a full queue drops the message and counts it, the sequence gap
// tells subscribers). Subscriber: connects to one or more endpoints, filters by topic,
// copies each payload into a word-aligned buffer it reuses, and decodes with traversal
// and nesting limits so a hostile peer cannot make it read unbounded data.
// Neither class is thread-safe: use each from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <zmq.hpp>

#include "cryptnono.capnp.h"
#include "cryptnono/curve.h"
#include "cryptnono/direct.h"
#include "cryptnono/result.h"

namespace cryptnono {

namespace topic {
inline constexpr std::string_view kExec = "exec";
inline constexpr std::string_view kDecision = "decision";
inline constexpr std::string_view kStats = "stats";
inline constexpr std::string_view kFpu = "fpu";          // monero probe (FpuEvent)
inline constexpr std::string_view kConnect = "connect";  // tcp connect probe (ConnectEvent)
}  // namespace topic

// Creates the directory of an ipc:// endpoint (mode 0700 when it has to be made) so the
// socket file can be bound. A no-op for other transports.
Result<void> prepare_endpoint(const std::string& endpoint);
// The same for the directory of a unix socket file (also used by the direct path).
Result<void> prepare_socket_directory(const std::string& socket_path);
// The file system path of an ipc:// endpoint; empty for other transports and for
// abstract-namespace sockets ("ipc://@name"), which have no file.
std::string ipc_socket_path(const std::string& endpoint);

class Publisher {
 public:
  // kind: "collector", "enforcer"; name: the stage or detector ("collector", "execwhacker").
  //
  // A tcp:// endpoint needs `security` with this stage's key pair and at least one
  // authorized client key (see curve.h): it is then CurveZMQ-encrypted and only those
  // clients get a handshake. Without them a tcp:// endpoint is refused. ipc:// endpoints
  // never use CurveZMQ (their directory and file modes decide who connects).
  //
  // send_hwm bounds what is queued for each subscriber (in messages: ZeroMQ counts no
  // bytes); beyond it, messages to that subscriber are dropped and it sees a sequence gap.
  static Result<std::unique_ptr<Publisher>> bind(zmq::context_t& ctx, const std::string& endpoint,
                                                 std::string node, std::string kind, std::string name,
                                                 int send_hwm = kDefaultSendHwm,
                                                 const TransportSecurity* security = nullptr);
  static constexpr int kDefaultSendHwm = 10'000;
  // Binds one more endpoint (e.g. a tcp:// one for remote subscribers next to the pod's
  // ipc:// one), with the same rules as bind(). Returns the endpoint as bound (a "*" port
  // resolved to the real one).
  Result<std::string> add_endpoint(const std::string& endpoint, const TransportSecurity* security);
  // Also sends every message over a direct same-node socket at `path` to the clients
  // subscribed there (direct.h): the fast lane for the enforcers. Call service_direct()
  // when direct_fd() is readable.
  Result<void> add_direct(const std::string& path);
  int direct_fd() const { return direct_ ? direct_->fd() : -1; }
  void service_direct() {
    if (direct_) direct_->service();
  }
  const DirectServer* direct() const { return direct_.get(); }
  // Offers a kernel ring (a BPF ring buffer map's fd and size) over the direct socket for
  // `topic` (direct.h); on_hold(true/false) when a client takes it and when it leaves.
  // Needs add_direct() first.
  // `wake_filter_fd`: the probe's wake filter map, handed over with the ring (-1: none).
  Result<void> offer_kernel_ring(std::string topic, int fd, uint64_t bytes, std::function<void(bool)> on_hold,
                                 int wake_filter_fd = -1);
  // CurveZMQ handshakes refused (unknown client key) on this publisher's tcp:// endpoints.
  uint64_t curve_denied() const { return zap_ ? zap_->denied() : 0; }
  uint64_t curve_accepted() const { return zap_ ? zap_->accepted() : 0; }

  // Turns on subscription tracking (an XPUB socket with every subscription reported, not
  // only the first per topic). Must be called before the first send. The collector uses
  // it to sweep /proc whenever a new subscriber asks for "exec", so a (re)started
  // enforcer never misses processes that started while it was away.
  Result<void> track_subscriptions();
  // Non-blocking. Topics that subscribers subscribed to since the last call (one entry per
  // subscription; unsubscriptions are ignored).
  std::vector<std::string> take_subscriptions();
  // The socket's ZMQ_FD for an epoll loop. It is edge-triggered in ZeroMQ's sense: call
  // take_subscriptions() when it fires and also periodically (after sends it may not fire).
  int fd();

  // Fills the envelope header of `message` for `topic` (taking the next sequence number)
  // and returns it so the caller can init the body.
  schema::Envelope::Builder begin(capnp::MessageBuilder& message, std::string_view topic);
  // Sends without blocking. Returns false (and counts a drop) when it could not be queued.
  // What send_later() holds goes out first, so every topic keeps its order.
  // `in_kernel_ring`: the event also reached the kernel ring; its holder gets no direct copy.
  bool send(std::string_view topic, capnp::MessageBuilder& message, bool in_kernel_ring = false);
  // Holds the message (serialized now, its sequence already taken) until the next send()
  // or flush(). For messages nobody waits for (an enforcer's no-match decisions): sent
  // together, a few dozen wake the ZeroMQ threads on both sides once instead of once each.
  // Past kMaxHeld held messages it flushes by itself.
  void send_later(std::string_view topic, capnp::MessageBuilder& message);
  // Sends what send_later() holds, in order. Returns how many could not be queued (drops).
  size_t flush();
  size_t held() const { return held_.size(); }
  static constexpr size_t kMaxHeld = 256;

  const std::string& id() const { return id_; }
  const std::string& endpoint() const { return endpoint_; }
  uint64_t sent() const { return sent_; }
  uint64_t dropped() const { return dropped_; }

 private:
  Publisher(zmq::socket_t socket, std::string endpoint, std::string node, std::string kind, std::string id);
  static Result<std::string> bind_endpoint(zmq::context_t& ctx, zmq::socket_t& socket, const std::string& endpoint,
                                    const TransportSecurity* security, std::unique_ptr<ZapHandler>& zap);

  zmq::context_t* ctx_ = nullptr;
  std::unique_ptr<ZapHandler> zap_;  // declared before socket_: outlives it
  zmq::socket_t socket_;
  std::unique_ptr<DirectServer> direct_;
  bool xpub_ = false;
  std::string endpoint_;
  std::string node_;
  std::string kind_;
  std::string id_;
  std::map<std::string, uint64_t, std::less<>> sequence_;
  std::vector<std::pair<std::string, zmq::message_t>> held_;
  static zmq::message_t serialize(capnp::MessageBuilder& message);
  bool send_frames(std::string_view topic, zmq::message_t& payload, bool in_kernel_ring = false);
  uint64_t sent_ = 0;
  uint64_t dropped_ = 0;
};

// One received message. Reused across receives to avoid allocation per message.
class Received {
 public:
  std::string_view topic() const { return topic_; }
  // Came over the direct path (direct.h) rather than ZeroMQ.
  bool direct() const { return direct_; }
  size_t payload_bytes() const { return size_words_ * sizeof(capnp::word); }
  // Decodes the envelope. Cap'n Proto readers are lazy: a malformed message can still throw
  // kj::Exception while fields are read, so callers wrap their handling in try/catch.
  Result<schema::Envelope::Reader> envelope();
  // Takes one message's bytes as if received (copies them; used by the subscriber, and by
  // fuzzers and replay tools that decode exactly what the wire path decodes). Returns
  // false when the payload is empty, not whole words, or has no valid segment table; the
  // message is then empty and envelope() fails.
  bool assign(std::string_view topic, const void* payload, size_t size);

 private:
  friend class Subscriber;
  // Makes room for `words` words (the buffer only grows).
  void reserve_words(size_t words);
  // Decodes the first `words` words of the buffer; false (and empty) when they are not a
  // valid message.
  bool adopt(size_t words);
  std::string topic_;
  bool direct_ = false;
  // Word-aligned copy of the payload, grown as needed and reused (capnp::word is not
  // copyable, so no std::vector: libc++/clang refuse to instantiate one).
  std::unique_ptr<capnp::word[]> words_;
  size_t capacity_words_ = 0;
  size_t size_words_ = 0;
  std::optional<capnp::FlatArrayMessageReader> reader_;
};

class Subscriber {
 public:
  ~Subscriber();
  // tcp:// endpoints need `security` with this program's key pair and the publisher's
  // public key (CurveZMQ); they cannot be mixed with ipc:// ones in one Subscriber
  // (CurveZMQ is a property of the socket).
  static Result<std::unique_ptr<Subscriber>> connect(zmq::context_t& ctx, const std::vector<std::string>& endpoints,
                                                     const std::vector<std::string>& topics, int receive_hwm = 100'000,
                                                     const TransportSecurity* security = nullptr);

  enum class Wait { kMessage, kFd, kTimeout };
  // Blocks until a message is queued or `extra_fd` (if >= 0) is readable, or timeout_ms
  // passes (-1: forever). No timed polling: this is one zmq_poll.
  Wait wait(int extra_fd, long timeout_ms);
  // For a caller's own epoll set instead of wait(): the ZeroMQ socket's ZMQ_FD (readable
  // when the socket may have messages; it signals edges, so drain with try_receive() until
  // it returns false before waiting on it again, and after subscribe/unsubscribe) and the
  // direct socket (-1 while down; a new fd after each reconnect).
  int zmq_fd();
  int direct_fd() const { return direct_fd_; }
  // Counts the direct path's connections: a new one may reuse the old fd's number.
  uint64_t direct_connects() const { return direct_connects_; }
  // Non-blocking. Returns false when nothing is queued. Messages that are not exactly two
  // frames are discarded and counted in malformed().
  bool try_receive(Received& out);

  // Adds a topic subscription (e.g. once the program is ready for those messages).
  void subscribe(std::string_view topic);
  // Drops it again (the direct path carries that topic alone: TwoPathJudge).
  void unsubscribe(std::string_view topic);

  // Also receives `topics` over a publisher's direct socket at `path` (direct.h): connects
  // now if it can, and again through maintain_direct() whenever it is down. Messages come
  // over ZeroMQ as well as long as the caller keeps those subscriptions: TwoPathJudge says
  // which copy to handle and when the ZeroMQ subscription can go.
  void use_direct(std::string path, std::vector<std::string> topics);
  // Reconnects the direct path when it is wanted, down, and kDirectRetryNs passed since
  // the last attempt. Returns what changed, for the log: "connected", or empty.
  std::string maintain_direct();
  bool direct_wanted() const { return !direct_path_.empty(); }
  bool direct_connected() const { return direct_fd_ >= 0; }
  const std::string& direct_path() const { return direct_path_; }
  // How long the caller may block before maintain_direct() has work: -1 when none.
  long direct_retry_timeout_ms() const { return direct_wanted() && !direct_connected() ? kDirectRetryMs : -1; }
  // Asks the direct path's publisher for its kernel ring of `topic` (direct.h). The answer
  // arrives like a message (wait() says kMessage) and is kept for take_kernel_ring_answer()
  // instead of being returned by try_receive(). False when the direct path is down.
  bool request_kernel_ring(std::string_view topic);
  struct KernelRingAnswer {
    int fd = -1;               // the ring map's fd, now the caller's (-1: refused)
    int wake_filter_fd = -1;   // the probe's wake filter map's fd, the caller's (-1: none)
    uint64_t bytes = 0;        // its data size
    std::string publisher_id;  // the publisher whose probe writes it
    std::string refusal;       // why not, when refused
  };
  std::optional<KernelRingAnswer> take_kernel_ring_answer();
  uint64_t direct_received() const { return direct_received_; }
  uint64_t direct_losses() const { return direct_losses_; }  // times the direct path went down
  // Leaves the direct path as if it had gone down (counted in direct_losses); it reconnects
  // through maintain_direct() as usual.
  void drop_direct() {
    if (direct_fd_ < 0) return;
    close_direct();
    ++direct_losses_;
  }
  static constexpr long kDirectRetryMs = 250;
  // The largest direct datagram received: what the publisher's socket buffer can hold
  // (direct::kSendBufferBytes, doubled by the kernel).
  static constexpr size_t kDirectMaxBytes = 2 * static_cast<size_t>(direct::kSendBufferBytes);

  uint64_t received() const { return received_; }
  uint64_t malformed() const { return malformed_; }

 private:
  explicit Subscriber(zmq::socket_t socket) : socket_(std::move(socket)) {}
  void keep_ring_answer(const unsigned char* payload, size_t size, int fd, int filter_fd);
  // One direct datagram into `out`: 1 got one, 0 none queued, -1 the path went down.
  int receive_direct(Received& out);
  void close_direct();
  zmq::socket_t socket_;
  std::string direct_path_;
  std::vector<std::string> direct_topics_;
  int direct_fd_ = -1;
  uint64_t direct_last_attempt_ns_ = 0;
  uint64_t direct_received_ = 0;
  uint64_t direct_losses_ = 0;
  uint64_t direct_connects_ = 0;
  std::optional<KernelRingAnswer> ring_answer_;
  zmq::message_t frame_;
  uint64_t received_ = 0;
  uint64_t malformed_ = 0;
};

// Counts messages lost between a publisher and this subscriber from sequence gaps.
class SequenceTracker {
 public:
  struct Observation {
    uint64_t lost = 0;           // messages skipped since the previous one of this publisher/topic
    bool new_publisher = false;  // first message of this publisher id (a start or restart)
  };
  // `gaps_expected`: the messages skipped came another way; not counted as lost.
  Observation observe(std::string_view publisher_id, std::string_view topic, uint64_t sequence,
                      bool gaps_expected = false);
  // The last sequence observed for this publisher and topic, 0 when none.
  uint64_t last(std::string_view publisher_id, std::string_view topic) const;
  // Takes `sequence` as observed without counting the messages up to it as lost (they came
  // another way); no effect when it is not ahead of the last one.
  void advance(std::string_view publisher_id, std::string_view topic, uint64_t sequence);
  uint64_t total_lost() const { return total_lost_; }

 private:
  static constexpr size_t kMaxTracked = 256;  // bound memory against many restarts
  std::map<std::string, uint64_t, std::less<>> last_;  // key: publisher id + '\n' + topic
  uint64_t total_lost_ = 0;
};

// Judges the copies of one subscriber's messages when they may come over both paths, and
// lets the direct path carry a topic alone once that loses nothing.
//
// Why: a second copy over ZeroMQ costs its three thread wake-ups on the publisher's and the
// subscriber's side for every message, only to be skipped: under an exec storm that is a
// third of the agent's CPU on a virtualised node (BENCHMARKS.md, part 4).
//
// How: the subscriber starts on ZeroMQ alone (the primary path: gaps and restarts are
// counted on it). When the direct path connects, both copies come; the first one is handled
// and the second skipped (DuplicateFilter). Once the direct path has delivered an unbroken
// run of sequence numbers that starts no later than where ZeroMQ has got to, nothing can
// fall between the two: the direct path becomes primary, judge() says so once
// (direct_now_primary) and the caller drops its ZeroMQ subscription. When the direct path
// goes down, direct_lost() says to subscribe again, and ZeroMQ is primary again: what was
// published in between shows up as a gap there, counted, never hidden.
//
// Only for a subscriber of one publisher (the collector): a ZeroMQ subscription covers every
// endpoint the socket is connected to, and the direct path reaches only one of them.
class TwoPathJudge {
 public:
  struct Verdict {
    bool handle = false;               // the first copy: handle it (else a duplicate)
    uint64_t lost = 0;                 // gap before this message on the primary path
    bool new_publisher = false;        // first message of this publisher id on the primary path
    bool direct_now_primary = false;   // the caller should drop its ZeroMQ subscription now
  };
  // `direct_alone`: may the direct path become primary (see above)?
  explicit TwoPathJudge(bool direct_alone) : direct_alone_(direct_alone) {}
  Verdict judge(std::string_view publisher_id, std::string_view topic, uint64_t sequence, bool direct);
  // The direct path went down. True when it was primary: the caller subscribes on ZeroMQ again.
  // It also ends expect_direct_gaps().
  bool direct_lost();
  // While the subscriber holds the publisher's kernel ring (direct.h), the direct path skips
  // what the ring carries: its gaps are not losses. (The publisher counts what it could not
  // send either way: the ring's drops go the direct way, and the direct path's drops are
  // its direct_drops.)
  void expect_direct_gaps(bool on) { direct_gaps_expected_ = on; }
  bool direct_primary() const { return direct_primary_; }
  uint64_t total_lost() const { return tracker_.total_lost(); }

 private:
  bool direct_alone_;
  bool direct_primary_ = false;
  bool direct_gaps_expected_ = false;
  SequenceTracker tracker_;  // on the primary path's copies
  DuplicateFilter duplicates_;
  // The unbroken run of direct copies since the direct path (re)connected.
  std::string run_publisher_, run_topic_;
  uint64_t run_first_ = 0, run_last_ = 0;
};

// Reader limits for messages from the wire: 64 MiB of words, nesting 16.
capnp::ReaderOptions wire_reader_options();

}  // namespace cryptnono
