// The enforcer's event loop: receive an event, let the detector decide (and kill), publish
// the decision, in that order, on one thread. It blocks in Subscriber::wait with an epoll
// fd as the extra fd (a wake-up eventfd, the stats timerfd and the caller's stop fd), so
// there is no timed polling on the event path. The detector (execwhacker, monero,
// flowkiller; see detector.h) says which topic is judged and how.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/logger.h>
#include <zmq.hpp>

#include "cryptnono/enforcer/decider.h"
#include "cryptnono/enforcer/detector.h"
#include "cryptnono/enforcer/killer.h"
#include "cryptnono/enforcer/matcher.h"
#include "cryptnono/kernel_ring.h"
#include "cryptnono/transport.h"

namespace cryptnono::enforcer {

struct EnforcerOptions {
  std::vector<std::string> connect;  // collector endpoints (the detector's topic)
  std::string bind;                  // where decisions and stats are published
  std::string node;
  bool dry_run = false;
  uint32_t stats_interval_ms = 5000;
  std::vector<std::string> also_bind;  // more publish endpoints (tcp:// needs `security`)
  int send_hwm = Publisher::kDefaultSendHwm;
  TransportSecurity security;
  // At start, wait up to this long for a first decision subscriber (the exporter) before
  // subscribing to events. PUB drops what is published before a subscriber connects; the
  // collector sweeps /proc when this enforcer subscribes, so waiting costs no event, and
  // the kills of that sweep (processes that started while no enforcer ran) are logged.
  uint32_t wait_for_subscriber_ms = 0;
  // The collector's direct socket (direct.h; empty: ZeroMQ only). Events then come over
  // both paths; the first copy of each is judged, the second skipped.
  std::string direct;
  // Once the direct path carries the events alone, ask the collector for its kernel ring
  // (direct.h, kernel_ring.h) and read the execs it takes straight from the probe.
  bool kernel_ring = true;
  // No-match decisions (the benign majority, which no one waits for) are published in
  // batches, at most this long after their event; every other decision goes out at once,
  // after the no-match ones before it. 0: each at once. See Publisher::send_later.
  uint32_t no_match_batch_ms = 20;
  // A killed decision goes out this long after the kill (with any no-match ones held before
  // it), not at once: publishing wakes ZeroMQ's threads here and in every subscriber, on
  // the CPUs where the killed process is being torn down and its parent waits for it.
  // Measured in BENCHMARKS.md (part 2). 0: at once.
  uint32_t kill_decision_delay_ms = 5;
  // While holding the kernel ring, write the probe's wake filter (wake_filter.h): the execs
  // it rules out do not wake this enforcer one by one but are judged in batches, at most
  // ring_batch_ms after the first of a batch. false: every exec wakes it.
  bool wake_filter = true;
  uint32_t ring_batch_ms = 20;
};

class Enforcer {
 public:
  // Binds the publisher and connects the subscriber for `detector`.
  static Result<std::unique_ptr<Enforcer>> create(zmq::context_t& ctx, const EnforcerOptions& options,
                                                  std::unique_ptr<Detector> detector,
                                                  std::shared_ptr<spdlog::logger> log);
  // The execwhacker detector with `matcher`. `killer` must outlive the Enforcer.
  static Result<std::unique_ptr<Enforcer>> create(zmq::context_t& ctx, const EnforcerOptions& options,
                                                  Killer& killer, std::unique_ptr<Matcher> matcher,
                                                  std::shared_ptr<spdlog::logger> log);
  ~Enforcer();

  // Runs until stop() is called or `stop_fd` (e.g. a signalfd for SIGTERM/SIGINT; -1 for
  // none) becomes readable. Call from one thread.
  void run(int stop_fd = -1);

  // The rest is thread-safe.
  void stop();
  // Hands over a new configuration: `update` runs on the event thread, before its next
  // event, with the detector; the old configuration serves until then. An older update
  // that has not run yet is dropped (it never served). Increments config_generation (and
  // config_reloads).
  // `same_rules`: the update changes how the rules are held, not the rules (a database
  // rebuilt whole after a layered build): config_generation and config_reloads stay.
  void install_update(std::function<void(Detector&)> update, bool same_rules = false);
  // install_update for the execwhacker detector: swaps in a newly built matcher.
  void install(std::unique_ptr<Matcher> matcher, bool same_rules = false);
  void count_reload_failure();
  uint64_t config_generation() const { return counters_.config_generation.load(); }
  // The counters published in stats messages, in the contract's order.
  std::vector<std::pair<std::string, uint64_t>> counters() const;
  const std::string& publisher_id() const { return publisher_->id(); }

 private:
  struct Counters {
    std::atomic<uint64_t> events_received{0};
    std::atomic<uint64_t> events_lost{0};
    std::atomic<uint64_t> malformed{0};       // decoded here
    std::atomic<uint64_t> wire_malformed{0};  // dropped by the subscriber (bad framing)
    std::atomic<uint64_t> decisions{0};
    std::atomic<uint64_t> killed{0};
    std::atomic<uint64_t> spared{0};
    std::atomic<uint64_t> missed{0};
    std::atomic<uint64_t> would_kill{0};
    std::atomic<uint64_t> errors{0};
    std::atomic<uint64_t> config_reloads{0};
    std::atomic<uint64_t> publisher_restarts{0};  // a collector came back as a new publisher
    std::atomic<uint64_t> config_reload_failures{0};
    std::atomic<uint64_t> config_generation{0};
    std::atomic<uint64_t> send_drops{0};
    std::atomic<uint64_t> direct_events{0};  // events judged from their direct-path copy
    std::atomic<uint64_t> duplicates{0};     // second copies skipped
    std::atomic<uint64_t> ring_events{0};    // events judged from the kernel ring
    std::atomic<uint64_t> ring_batched{0};   // of those, judged on the batch timer (the wake filter)
  };

  Enforcer(const EnforcerOptions& options, std::unique_ptr<Detector> detector, std::shared_ptr<spdlog::logger> log);
  Result<void> setup_fds();
  void handle(Received& received);
  void publish_decision(uint64_t received_boot_ns, bool from_ring = false);
  // The kernel ring: asked for once the direct path is primary, taken when granted, read
  // when its fd is ready, let go (after reading what it holds) when the direct path drops.
  void request_ring();
  void take_ring();
  void consume_ring();
  // The ring's fd woke the loop: with the wake filter on, judges now if the probe flagged
  // a waiting exec (those first), else leaves the batch to ring_timer_.
  void on_ring_ready();
  void consume_ring_flagged_first();
  void apply_wake_filter();  // writes the serving config's plan into the probe's filter
  void drop_ring();
  void handle_ring_record(const void* data, size_t size);
  void publish_stats();
  void trace_decision();  // --log-level trace: what each event was judged on
  void take_pending_update();
  // One epoll_wait over everything the loop waits for (the kernel ring, the direct socket,
  // ZeroMQ's ZMQ_FD, the control fds): handles the ring and the control fds, and returns
  // whether a socket may hold messages. One system call per wake-up: on a paravirtualised
  // node each costs about a microsecond, and zmq_poll made seven of them per exec.
  bool wait_and_dispatch(int stop_fd, int timeout_ms);
  void watch_sockets();
  void count(schema::Action action);

  EnforcerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Publisher> publisher_;
  std::unique_ptr<Subscriber> subscriber_;
  // Which copy of an event to handle (ZeroMQ or direct), gaps on the primary path, and when
  // the direct path may carry the events alone (one upstream publisher only).
  TwoPathJudge paths_;
  uint64_t direct_losses_seen_ = 0;
  void subscribe_events();
  void maintain_direct();
  std::string upstream_publisher_;  // the collector's publisher id, to tell its restarts
  void wait_for_decision_subscriber();
  std::unique_ptr<Detector> detector_;
  uint64_t serving_generation_ = 1;  // the config generation that judges events now
  uint64_t event_sent_boot_ns_ = 0;  // the judged event's publish time (its envelope)
  Received received_;
  kj::Array<capnp::word> first_segment_;  // reused, zeroed by MallocMessageBuilder after use
  std::unique_ptr<KernelRing> ring_;
  bool ring_requested_ = false;
  std::unique_ptr<WakeFilterMap> wake_map_;  // the probe's wake filter, with the ring
  bool wake_filter_on_ = false;              // what was last written into it
  std::string wake_filter_said_;             // the last state logged
  bool ring_timer_armed_ = false;
  uint64_t batch_due_ns_ = 0;  // when the batch timer fires for the held decisions
  kj::Array<capnp::word> ring_segment_;  // an exec from the ring, built into an ExecEvent
  uint64_t started_boot_ns_ = 0;

  UniqueFd epoll_;
  UniqueFd wake_;   // eventfd: stop() and install() write it
  UniqueFd timer_;  // timerfd: stats
  UniqueFd batch_timer_;  // timerfd, one-shot: publish the held no-match decisions
  UniqueFd ring_timer_;   // timerfd, one-shot: judge the execs the wake filter left waiting
  int stop_fd_registered_ = -1;
  int zmq_fd_ = -1;              // the subscriber's ZMQ_FD, in epoll_
  uint64_t subscription_changes_ = 0;  // ZeroMQ (un)subscriptions: each may swallow a ZMQ_FD edge
  int direct_fd_registered_ = -1;  // the direct socket's fd in epoll_ (it changes on reconnects)
  uint64_t direct_connects_watched_ = 0;  // the direct connection that fd belongs to

  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> pending_ready_{false};
  std::mutex pending_mutex_;
  std::function<void(Detector&)> pending_;
  uint64_t pending_generation_ = 0;

  Counters counters_;
};

}  // namespace cryptnono::enforcer
