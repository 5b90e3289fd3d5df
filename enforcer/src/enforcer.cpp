#include "cryptnono/enforcer/enforcer.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include <capnp/message.h>

#include "cryptnono/clock.h"
#include "cryptnono/collector/events.h"
#include "cryptnono/json_view.h"
#include "cryptnono/enforcer/execwhacker.h"
#include "cryptnono/enforcer/wake_plan.h"
#include "exec_event.h"

namespace cryptnono::enforcer {

namespace {

constexpr size_t kFirstSegmentWords = 16 * 1024;  // 128 KiB: a 64 KiB argv and its cmdline
constexpr int kBatch = 256;                       // messages handled between control checks

}  // namespace

Enforcer::Enforcer(const EnforcerOptions& options, std::unique_ptr<Detector> detector,
                   std::shared_ptr<spdlog::logger> log)
    : options_(options),
      log_(std::move(log)),
      paths_(options.connect.size() == 1),
      detector_(std::move(detector)),
      first_segment_(kj::heapArray<capnp::word>(kFirstSegmentWords)),
      ring_segment_(kj::heapArray<capnp::word>(kFirstSegmentWords)) {
  std::memset(first_segment_.begin(), 0, first_segment_.size() * sizeof(capnp::word));
  std::memset(ring_segment_.begin(), 0, ring_segment_.size() * sizeof(capnp::word));
  counters_.config_generation = 1;
  started_boot_ns_ = boot_ns();
}

Enforcer::~Enforcer() = default;

Result<std::unique_ptr<Enforcer>> Enforcer::create(zmq::context_t& ctx, const EnforcerOptions& options,
                                                   Killer& killer, std::unique_ptr<Matcher> matcher,
                                                   std::shared_ptr<spdlog::logger> log) {
  if (!matcher) return fail("no matcher");
  return create(ctx, options, std::make_unique<ExecwhackerDetector>(killer, options.dry_run, std::move(matcher)),
                std::move(log));
}

Result<std::unique_ptr<Enforcer>> Enforcer::create(zmq::context_t& ctx, const EnforcerOptions& options,
                                                   std::unique_ptr<Detector> detector,
                                                   std::shared_ptr<spdlog::logger> log) {
  if (!detector) return fail("no detector");
  std::string name(detector->name());
  std::string subscribed(detector->topic());
  std::unique_ptr<Enforcer> e(new Enforcer(options, std::move(detector), std::move(log)));
  auto pub = Publisher::bind(ctx, options.bind, options.node, "enforcer", name, options.send_hwm, &options.security);
  if (!pub) return tl::unexpected(pub.error());
  e->publisher_ = std::move(*pub);
  for (const auto& ep : options.also_bind) {
    auto bound = e->publisher_->add_endpoint(ep, &options.security);
    if (!bound) return tl::unexpected(bound.error());
  }
  if (options.wait_for_subscriber_ms > 0) {
    if (auto tracked = e->publisher_->track_subscriptions(); !tracked) return tl::unexpected(tracked.error());
  }
  // Connected now (so a bad endpoint fails here), subscribed in run() once the decision
  // subscriber is there (see wait_for_subscriber_ms).
  auto sub = Subscriber::connect(ctx, options.connect, {}, 100'000);
  if (!sub) return tl::unexpected(sub.error());
  e->subscriber_ = std::move(*sub);
  if (options.wait_for_subscriber_ms == 0) e->subscribe_events();
  if (auto ok = e->setup_fds(); !ok) return tl::unexpected(ok.error());
  return e;
}

Result<void> Enforcer::setup_fds() {
  epoll_ = UniqueFd(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return fail(std::string("epoll_create1: ") + std::strerror(errno));
  wake_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) return fail(std::string("eventfd: ") + std::strerror(errno));
  timer_ = UniqueFd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!timer_) return fail(std::string("timerfd_create: ") + std::strerror(errno));
  uint32_t ms = options_.stats_interval_ms > 0 ? options_.stats_interval_ms : 5000;
  itimerspec spec{};
  spec.it_interval.tv_sec = ms / 1000;
  spec.it_interval.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000;
  spec.it_value = spec.it_interval;
  if (timerfd_settime(timer_.get(), 0, &spec, nullptr) != 0)
    return fail(std::string("timerfd_settime: ") + std::strerror(errno));
  batch_timer_ = UniqueFd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!batch_timer_) return fail(std::string("timerfd_create: ") + std::strerror(errno));
  ring_timer_ = UniqueFd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!ring_timer_) return fail(std::string("timerfd_create: ") + std::strerror(errno));
  for (int fd : {wake_.get(), timer_.get(), batch_timer_.get(), ring_timer_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
      return fail(std::string("epoll_ctl: ") + std::strerror(errno));
  }
  return {};
}

void Enforcer::subscribe_events() {
  subscriber_->subscribe(detector_->topic());
  ++subscription_changes_;
  if (!options_.direct.empty()) {
    subscriber_->use_direct(options_.direct, {std::string(detector_->topic())});
    if (subscriber_->direct_connected()) log_->info("direct path connected ({})", options_.direct);
  }
}

void Enforcer::maintain_direct() {
  if (subscriber_->direct_losses() != direct_losses_seen_) {
    direct_losses_seen_ = subscriber_->direct_losses();
    drop_ring();
    if (paths_.direct_lost()) {
      subscriber_->subscribe(detector_->topic());
      ++subscription_changes_;
    }
    log_->warn("direct path {} lost: events keep coming over ZeroMQ; reconnecting", options_.direct);
  }
  if (subscriber_->maintain_direct() == "connected") log_->info("direct path connected ({})", options_.direct);
}

void Enforcer::stop() {
  stop_requested_.store(true);
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

void Enforcer::install_update(std::function<void(Detector&)> update, bool same_rules) {
  {
    std::lock_guard<std::mutex> lock(pending_mutex_);
    pending_ = std::move(update);  // an older pending one that never served is dropped
    if (same_rules) {
      // The rules of the latest generation (pending or serving), held another way.
      pending_generation_ = counters_.config_generation.load();
    } else {
      pending_generation_ = counters_.config_generation.fetch_add(1) + 1;
      counters_.config_reloads.fetch_add(1);
    }
    pending_ready_.store(true, std::memory_order_release);
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

void Enforcer::install(std::unique_ptr<Matcher> matcher, bool same_rules) {
  // std::function needs a copyable callable: the matcher travels in a shared holder and
  // is moved out when the update runs.
  auto holder = std::make_shared<std::unique_ptr<Matcher>>(std::move(matcher));
  install_update([holder](Detector& d) {
    // install() is only used with the execwhacker detector (create() with a Matcher).
    static_cast<ExecwhackerDetector&>(d).set_matcher(std::move(*holder));
  }, same_rules);
}

void Enforcer::count_reload_failure() { counters_.config_reload_failures.fetch_add(1); }

void Enforcer::take_pending_update() {
  std::function<void(Detector&)> update;
  uint64_t before = serving_generation_;
  {
    std::lock_guard<std::mutex> lock(pending_mutex_);
    if (!pending_) return;
    update = std::move(pending_);
    pending_ = nullptr;
    serving_generation_ = pending_generation_;
    pending_ready_.store(false, std::memory_order_relaxed);
  }
  // Outside the lock: the old configuration (a Vectorscan database, a banned set) is freed
  // here, between events, without blocking the watcher thread.
  update(*detector_);
  apply_wake_filter();
  // Which configuration judges the events from here on (decisions carry its generation).
  if (serving_generation_ != before)
    log_->info("config generation {} judges events from now on ({})", serving_generation_, detector_->describe());
  else
    log_->debug("config generation {} rebuilt ({})", serving_generation_, detector_->describe());
}

std::vector<std::pair<std::string, uint64_t>> Enforcer::counters() const {
  const auto& c = counters_;
  std::vector<std::pair<std::string, uint64_t>> out = {
      {"events_received", c.events_received.load()},
      {"events_lost", c.events_lost.load()},
      {"malformed", c.malformed.load() + c.wire_malformed.load()},
      {"decisions", c.decisions.load()},
      {"killed", c.killed.load()},
      {"spared", c.spared.load()},
      {"missed", c.missed.load()},
      {"would_kill", c.would_kill.load()},
      {"errors", c.errors.load()},
      {"config_reloads", c.config_reloads.load()},
      {"config_reload_failures", c.config_reload_failures.load()},
      {"config_generation", c.config_generation.load()},
      {"send_drops", c.send_drops.load()},
      {"publisher_restarts", c.publisher_restarts.load()},
      {"direct_events", c.direct_events.load()},
      {"duplicates", c.duplicates.load()},
      {"ring_events", c.ring_events.load()},
      {"ring_batched", c.ring_batched.load()},
  };
  detector_->add_counters(out);
  return out;
}

void Enforcer::count(schema::Action action) {
  counters_.decisions.fetch_add(1, std::memory_order_relaxed);
  switch (action) {
    case schema::Action::NO_MATCH:
      break;
    case schema::Action::KILLED:
      counters_.killed.fetch_add(1, std::memory_order_relaxed);
      break;
    case schema::Action::SPARED:
      counters_.spared.fetch_add(1, std::memory_order_relaxed);
      break;
    case schema::Action::MISSED_KILL:
      counters_.missed.fetch_add(1, std::memory_order_relaxed);
      break;
    case schema::Action::WOULD_KILL:
      counters_.would_kill.fetch_add(1, std::memory_order_relaxed);
      break;
    case schema::Action::ERROR:
      counters_.errors.fetch_add(1, std::memory_order_relaxed);
      break;
  }
}

void Enforcer::handle(Received& received) {
  uint64_t received_boot_ns = boot_ns();
  // ZeroMQ subscriptions are prefixes: "exec" also lets "execfoo" through.
  if (received.topic() != detector_->topic()) return;
  auto envelope = received.envelope();
  if (!envelope) {
    counters_.malformed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  try {
    auto env = *envelope;
    std::string_view publisher(env.getPublisherId().cStr(), env.getPublisherId().size());
    // Gaps and restarts are judged on the primary path (ZeroMQ, or the direct path once it
    // carries the events alone), which delivers its messages in order.
    auto seen = paths_.judge(publisher, received.topic(), env.getSequence(), received.direct());
    if (seen.direct_now_primary) {
      subscriber_->unsubscribe(detector_->topic());
      ++subscription_changes_;
      log_->info("direct path {} carries the {} events alone now (ZeroMQ subscription dropped until it goes down)",
                 options_.direct, detector_->topic());
      request_ring();
    }
    if (seen.lost > 0) counters_.events_lost.fetch_add(seen.lost, std::memory_order_relaxed);
    if (seen.new_publisher) {
      std::string id = text_string(env.getPublisherId());
      if (!upstream_publisher_.empty() && id != upstream_publisher_) {
        counters_.publisher_restarts.fetch_add(1, std::memory_order_relaxed);
        log_->warn("{} restarted: new publisher {} (was {}); its sweep covers what started meanwhile",
                   text_string(env.getPublisherKind()), id, upstream_publisher_);
      }
      upstream_publisher_ = std::move(id);
    }
    if (!seen.handle) {
      counters_.duplicates.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    // An exec this enforcer read (or will read) from its kernel ring: a ZeroMQ copy still
    // queued from before the ring was taken.
    if (ring_ && env.getBody().isExec() && env.getBody().getExec().getInKernelRing()) {
      counters_.duplicates.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (received.direct()) counters_.direct_events.fetch_add(1, std::memory_order_relaxed);
    event_sent_boot_ns_ = env.getSentBootNs();
    if (!detector_->read(env.getBody())) {
      counters_.malformed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  } catch (const kj::Exception&) {
    counters_.malformed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  counters_.events_received.fetch_add(1, std::memory_order_relaxed);
  count(detector_->decide(received_boot_ns));
  trace_decision();
  publish_decision(received_boot_ns);
}

void Enforcer::trace_decision() {
  if (log_->should_log(spdlog::level::trace))
    log_->trace("judged (config generation {}): {}", serving_generation_, detector_->last_judged());
}

void Enforcer::request_ring() {
  if (!options_.kernel_ring || ring_ || ring_requested_ || detector_->topic() != topic::kExec) return;
  ring_requested_ = subscriber_->request_kernel_ring(detector_->topic());
}

void Enforcer::take_ring() {
  auto answer = subscriber_->take_kernel_ring_answer();
  if (!answer) return;
  ring_requested_ = false;
  if (answer->fd < 0) {
    log_->info("kernel ring not taken ({}): execs keep coming over the direct path", answer->refusal);
    return;
  }
  // From the grant on, the collector flags what the ring takes and sends this enforcer no
  // copy of it: a ring this enforcer cannot read must be handed back, and leaving the direct
  // socket is how (the collector then stops writing to it). The direct path reconnects and
  // carries everything, and the ring is not asked for again.
  auto give_back = [this](const std::string& why) {
    log_->warn("kernel ring handed back ({}): execs keep coming over the direct path", why);
    options_.kernel_ring = false;
    subscriber_->drop_direct();
  };
  UniqueFd filter_fd(answer->wake_filter_fd);
  auto mapped = KernelRing::map(answer->fd, answer->bytes);  // owns the fd from here
  if (!mapped) return give_back(mapped.error().message);
  // Edge-triggered: with the wake filter on, records are left waiting for the batch timer,
  // and a level-triggered fd would report them again at once.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.fd = (*mapped)->fd();
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, (*mapped)->fd(), &ev) != 0)
    return give_back(std::string("epoll_ctl: ") + std::strerror(errno));
  ring_ = std::move(*mapped);
  paths_.expect_direct_gaps(true);
  log_->info("kernel ring of {} bytes taken from {}: execs come straight from the probe", ring_->data_bytes(),
             answer->publisher_id);
  if (filter_fd && options_.wake_filter) {
    auto filter = WakeFilterMap::map(filter_fd.release());
    if (filter) {
      wake_map_ = std::move(*filter);
    } else {
      log_->warn("wake filter not used ({}): every exec wakes this enforcer", filter.error().message);
    }
  } else if (!filter_fd) {
    log_->info("the collector offers no wake filter: every exec wakes this enforcer");
  }
  apply_wake_filter();
  consume_ring();
}

namespace {

// The probe's flags of a kernel ring record (bpf/exec_event.h); 0 if it is too short to be one.
uint32_t ring_record_flags(const void* data, size_t size) {
  if (size < sizeof(exec_event)) return 0;
  uint32_t flags = 0;
  std::memcpy(&flags, static_cast<const unsigned char*>(data) + offsetof(exec_event, flags), sizeof flags);
  return flags;
}

}  // namespace

void Enforcer::apply_wake_filter() {
  if (!wake_map_) return;
  const WakePlan* plan = detector_->wake_plan();
  if (plan != nullptr && plan->on) {
    wake_map_->write(*plan);
  } else {
    wake_map_->turn_off();
  }
  wake_filter_on_ = plan != nullptr && plan->on;
  std::string said = plan != nullptr ? plan->describe() : "off (this detector has none): every exec wakes the enforcer";
  if (said != wake_filter_said_) {
    if (wake_filter_on_) {
      log_->info("wake filter {}; other execs are judged in batches, within {} ms", said, options_.ring_batch_ms);
    } else {
      log_->info("wake filter {}", said);
    }
    wake_filter_said_ = std::move(said);
  }
  // Execs the old filter left waiting are judged by the new rules on the batch timer (not
  // here: this runs between two records of a consume()).
}

void Enforcer::consume_ring() {
  if (!ring_) return;
  ring_->consume([this](const void* data, size_t size) { handle_ring_record(data, size); });
}

void Enforcer::on_ring_ready() {
  if (!ring_) return;
  if (!wake_filter_on_) return consume_ring();
  bool flagged = false;
  ring_->peek([&](const void* data, size_t size, uint64_t) {
    flagged = flagged || (ring_record_flags(data, size) & EXEC_FLAG_WAKE) != 0;
  });
  // A quarter of the ring waiting (this enforcer was held up) is not left to the timer.
  if (flagged || ring_->pending_bytes() > ring_->data_bytes() / 4) return consume_ring_flagged_first();
  if (ring_->pending() && !ring_timer_armed_) {
    itimerspec once{};
    once.it_value.tv_sec = options_.ring_batch_ms / 1000;
    once.it_value.tv_nsec = static_cast<long>(options_.ring_batch_ms % 1000) * 1'000'000 + 1;
    if (timerfd_settime(ring_timer_.get(), 0, &once, nullptr) == 0) {
      ring_timer_armed_ = true;
    } else {
      consume_ring();  // no timer to be had: judge now
    }
  }
}

void Enforcer::consume_ring_flagged_first() {
  // The execs the probe flagged might be banned: judged (and killed) before the batch of
  // benign ones queued ahead of them, which is judged right after, in order.
  const uint64_t upto = ring_->peek([this](const void* data, size_t size, uint64_t) {
    if ((ring_record_flags(data, size) & EXEC_FLAG_WAKE) != 0) handle_ring_record(data, size);
  });
  ring_->consume([this, upto](const void* data, size_t size, uint64_t position) {
    if (position < upto && (ring_record_flags(data, size) & EXEC_FLAG_WAKE) != 0) return;  // judged above
    handle_ring_record(data, size);
  });
}

void Enforcer::drop_ring() {
  ring_requested_ = false;
  if (!ring_) return;
  consume_ring();  // what the probe wrote before the collector went away is still to judge
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, ring_->fd(), nullptr);
  ring_.reset();
  if (wake_map_) wake_map_->turn_off();
  wake_map_.reset();
  wake_filter_on_ = false;
  wake_filter_said_.clear();
  log_->warn("kernel ring let go (the direct path went down)");
}

void Enforcer::handle_ring_record(const void* data, size_t size) {
  uint64_t received_boot_ns = boot_ns();
  // A config installed before this exec was written must judge it.
  if (pending_ready_.load(std::memory_order_acquire)) take_pending_update();
  auto rec = collector::parse_exec_record(data, size);
  if (!rec) {
    counters_.malformed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  try {
    capnp::MallocMessageBuilder message(ring_segment_.asPtr());
    auto body = message.initRoot<schema::Envelope>().getBody();
    collector::fill_exec_event(body.initExec(), *rec);
    counters_.ring_events.fetch_add(1, std::memory_order_relaxed);
    if (wake_filter_on_ && (rec->header.flags & EXEC_FLAG_WAKE) == 0)
      counters_.ring_batched.fetch_add(1, std::memory_order_relaxed);
    event_sent_boot_ns_ = 0;
    if (!detector_->read(body.asReader())) {
      counters_.malformed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    counters_.events_received.fetch_add(1, std::memory_order_relaxed);
    count(detector_->decide(received_boot_ns));
    trace_decision();
    publish_decision(received_boot_ns, true);
  } catch (const kj::Exception& e) {
    counters_.errors.fetch_add(1, std::memory_order_relaxed);
    log_->error("an exec from the kernel ring could not be judged: {}", e.getDescription().cStr());
  }
}

void Enforcer::publish_decision(uint64_t received_boot_ns, bool from_ring) {
  capnp::MallocMessageBuilder message(first_segment_.asPtr());
  auto envelope = publisher_->begin(message, topic::kDecision);
  auto d = envelope.getBody().initDecision();
  detector_->fill(d);
  d.setReceivedBootNs(received_boot_ns);
  d.setEventSentBootNs(event_sent_boot_ns_);
  d.setFromKernelRing(from_ring);
  d.setConfigGeneration(serving_generation_);
  const bool no_match = d.getAction() == schema::Action::NO_MATCH && options_.no_match_batch_ms > 0;
  const bool killed = d.getAction() == schema::Action::KILLED && options_.kill_decision_delay_ms > 0;
  if (no_match || killed) {
    publisher_->send_later(topic::kDecision, message);
    // The held messages go out when the batch timer fires: no_match_batch_ms after the
    // first one, or sooner when a killed decision waits among them.
    const bool first = publisher_->held() == 1;
    if (first || killed) {
      const uint32_t ms = killed ? options_.kill_decision_delay_ms : options_.no_match_batch_ms;
      const uint64_t due = boot_ns() + uint64_t{ms} * 1'000'000u;
      if (first || due < batch_due_ns_) {
        itimerspec once{};
        once.it_value.tv_sec = ms / 1000;
        once.it_value.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000;
        (void)timerfd_settime(batch_timer_.get(), 0, &once, nullptr);
        batch_due_ns_ = due;
      }
    }
  } else {
    (void)publisher_->send(topic::kDecision, message);  // also sends the held ones first
  }
  counters_.send_drops.store(publisher_->dropped(), std::memory_order_relaxed);
}

void Enforcer::publish_stats() {
  auto values = counters();
  capnp::MallocMessageBuilder message(first_segment_.asPtr());
  auto envelope = publisher_->begin(message, topic::kStats);
  auto stats = envelope.getBody().initStats();
  stats.setUptimeNs(boot_ns() - started_boot_ns_);
  stats.setIntervalMs(options_.stats_interval_ms);
  auto list = stats.initCounters(static_cast<unsigned>(values.size()));
  for (unsigned i = 0; i < values.size(); ++i) {
    list[i].setName(values[i].first);
    list[i].setValue(values[i].second);
  }
  (void)publisher_->send(topic::kStats, message);  // held decisions first: the counters cover them
  counters_.send_drops.store(publisher_->dropped(), std::memory_order_relaxed);
}

void Enforcer::watch_sockets() {
  auto add = [this](int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    return epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
  };
  if (zmq_fd_ < 0) {
    int fd = subscriber_->zmq_fd();
    if (add(fd)) zmq_fd_ = fd;
  }
  // A new connection of the direct path (the old socket was closed, which took it out of
  // epoll) may have the old one's number: connections are told apart by their count.
  if (subscriber_->direct_connects() != direct_connects_watched_) {
    direct_connects_watched_ = subscriber_->direct_connects();
    int direct = subscriber_->direct_fd();
    direct_fd_registered_ = direct >= 0 && add(direct) ? direct : -1;
  } else if (subscriber_->direct_fd() < 0) {
    direct_fd_registered_ = -1;
  }
}

bool Enforcer::wait_and_dispatch(int stop_fd, int timeout_ms) {
  epoll_event events[8];
  int n = epoll_wait(epoll_.get(), events, 8, timeout_ms);
  bool sockets = false;
  for (int i = 0; i < n; ++i) {
    int fd = events[i].data.fd;
    if (ring_ && fd == ring_->fd()) {
      on_ring_ready();
    } else if (fd == ring_timer_.get()) {
      uint64_t expirations = 0;
      (void)!::read(fd, &expirations, sizeof expirations);
      ring_timer_armed_ = false;
      consume_ring();
    } else if (fd == zmq_fd_ || fd == direct_fd_registered_) {
      sockets = true;
    } else if (fd == wake_.get()) {
      uint64_t v = 0;
      (void)!::read(fd, &v, sizeof v);
    } else if (fd == timer_.get()) {
      uint64_t expirations = 0;
      (void)!::read(fd, &expirations, sizeof expirations);
      counters_.wire_malformed.store(subscriber_->malformed(), std::memory_order_relaxed);
      publish_stats();
    } else if (fd == batch_timer_.get()) {
      uint64_t expirations = 0;
      (void)!::read(fd, &expirations, sizeof expirations);
      (void)publisher_->flush();
      counters_.send_drops.store(publisher_->dropped(), std::memory_order_relaxed);
    } else if (fd == stop_fd) {
      // A signalfd: consume the signal so it is not left pending. Any other fd: readable
      // means stop.
      signalfd_siginfo info{};
      (void)!::read(fd, &info, sizeof info);
      log_->info("signal {} received: stopping", info.ssi_signo);
      stop_requested_.store(true);
    }
  }
  take_pending_update();
  return sockets;
}

void Enforcer::wait_for_decision_subscriber() {
  // Start-up only (not the event path): a short sleep between checks is fine here.
  uint64_t start = boot_ns();
  uint64_t deadline = start + uint64_t{options_.wait_for_subscriber_ms} * 1'000'000;
  while (!stop_requested_.load() && boot_ns() < deadline) {
    for (const auto& t : publisher_->take_subscriptions()) {
      // A prefix of "decision" (including "", everything) receives decisions.
      if (std::string_view(topic::kDecision).rfind(t, 0) == 0) {
        log_->info("decision subscriber connected after {} ms", (boot_ns() - start) / 1'000'000);
        return;
      }
    }
    ::usleep(2000);
  }
  log_->warn("no decision subscriber after {} ms: starting anyway (decisions published before one connects "
             "are not logged anywhere)",
             options_.wait_for_subscriber_ms);
}

void Enforcer::run(int stop_fd) {
  if (stop_fd >= 0 && stop_fd != stop_fd_registered_) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = stop_fd;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_fd, &ev) == 0) stop_fd_registered_ = stop_fd;
  }
  if (options_.wait_for_subscriber_ms > 0) {
    wait_for_decision_subscriber();
    subscribe_events();
  }
  std::string connect;
  for (const auto& ep : options_.connect) connect += (connect.empty() ? "" : ", ") + ep;
  if (!options_.direct.empty()) connect += " (direct: " + options_.direct + ")";
  log_->info("enforcer running ({}: {}); events from {}; decisions on {} as {}{}", detector_->name(),
             detector_->describe(), connect, options_.bind, publisher_->id(),
             options_.dry_run ? " (dry run: nothing is killed)" : "");
  // ZMQ_FD signals edges: the sockets are drained (try_receive until it says no) before the
  // loop waits on them, at start, after every (un)subscription and after a cut-short batch.
  bool drain = true;
  while (!stop_requested_.load()) {
    watch_sockets();
    // Blocks for good unless messages are left or the direct path is down and due for a
    // reconnect.
    long timeout = drain ? 0 : subscriber_->direct_retry_timeout_ms();
    if (wait_and_dispatch(stop_fd, static_cast<int>(timeout))) drain = true;
    if (stop_requested_.load()) break;
    if (drain) {
      drain = false;
      const uint64_t subscriptions = subscription_changes_;
      int i = 0;
      for (; i < kBatch; ++i) {
        // A config installed before this event was published must judge it.
        if (pending_ready_.load(std::memory_order_acquire)) take_pending_update();
        try {
          if (!subscriber_->try_receive(received_)) break;
        } catch (const zmq::error_t& e) {
          if (e.num() == EINTR) continue;
          log_->error("receiving events failed: {}", e.what());
          stop_requested_.store(true);
          break;
        }
        handle(received_);
      }
      counters_.wire_malformed.store(subscriber_->malformed(), std::memory_order_relaxed);
      if (i == kBatch || subscription_changes_ != subscriptions) drain = true;
      if (ring_requested_) take_ring();
    }
    const uint64_t subscriptions = subscription_changes_;
    maintain_direct();
    if (subscription_changes_ != subscriptions) drain = true;
  }
  consume_ring();  // judged before the last stats, which count them
  counters_.wire_malformed.store(subscriber_->malformed(), std::memory_order_relaxed);
  publish_stats();
}

}  // namespace cryptnono::enforcer
