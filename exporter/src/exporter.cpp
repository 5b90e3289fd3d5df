#include "cryptnono/exporter/exporter.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <kj/exception.h>

#include "cryptnono/clock.h"
#include "cryptnono/exporter/decision_log.h"
#include "cryptnono/json_view.h"

namespace cryptnono::exporter {

namespace {

constexpr uint32_t kStopTag = 1;
constexpr uint32_t kHealthTag = 2;
constexpr uint32_t kEnrichTag = 3;
constexpr uint32_t kHeartbeatTag = 4;
// A publisher that misses this many stats intervals is reported silent.
constexpr uint64_t kMissedIntervals = 3;
constexpr size_t kMaxHeartbeats = 64;
constexpr size_t kMaxBatch = 256;  // messages handled before looking at stop/health again
constexpr size_t kMaxKinds = 16;   // publisher kinds tracked for /healthz

std::string_view view(capnp::Text::Reader text) { return std::string_view(text.begin(), text.size()); }

bool valid_prefix(const std::string& prefix) {
  if (prefix.empty()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    char c = prefix[i];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    if (!(letter || (digit && i > 0))) return false;
  }
  return true;
}

}  // namespace

Result<void> validate(const Config& config) {
  if (config.connect.empty()) return fail("at least one --connect endpoint is needed");
  for (const auto& ep : config.connect) {
    if (ep.rfind("ipc://", 0) != 0 && ep.rfind("tcp://", 0) != 0 && ep.rfind("inproc://", 0) != 0) {
      return fail("--connect '" + ep + "' is not an ipc://, tcp:// or inproc:// endpoint");
    }
  }
  if (auto ok = validate_listen_address(config.metrics_address); !ok) return ok;
  if (!valid_prefix(config.metrics_prefix)) {
    return fail("--metrics-prefix '" + config.metrics_prefix + "' is not a metric name ([a-zA-Z_][a-zA-Z0-9_]*)");
  }
  static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  bool level_ok = false;
  for (auto level : kLevels) level_ok = level_ok || config.log_level == level;
  if (!level_ok) return fail("--log-level '" + config.log_level + "' is not one of trace, debug, info, warn, error");
  if (!config.cri_socket.empty()) {
    if (auto path = unix_socket_path(config.cri_socket); !path) return fail("--cri-socket: " + path.error().message);
  }
  if (!config.docker_socket.empty()) {
    if (auto path = unix_socket_path(config.docker_socket); !path) return fail("--docker-socket: " + path.error().message);
  }
  if (config.lookup_timeout_ms < 1 || config.lookup_timeout_ms > 60000) return fail("--lookup-timeout-ms must be 1..60000");
  if (config.lookup_wait_ms < 1 || config.lookup_wait_ms > 60000) return fail("--lookup-wait-ms must be 1..60000");
  if (config.cache_ttl_s < 1) return fail("--cache-ttl must be at least 1 s");
  if (config.cache_size < 1 || config.cache_size > 1'000'000) return fail("--cache-size must be 1..1000000");
  if (config.max_pending < 1 || config.max_pending > 100'000) return fail("--max-pending must be 1..100000");
  return {};
}

std::unique_ptr<Enricher> make_enricher(const Config& config, std::shared_ptr<EnrichMetrics> metrics,
                                        std::shared_ptr<spdlog::logger> logger) {
  std::unique_ptr<RuntimeClient> cri, docker;
  if (auto path = unix_socket_path(config.cri_socket); !config.cri_socket.empty() && path) cri = make_cri_client(*path);
  if (auto path = unix_socket_path(config.docker_socket); !config.docker_socket.empty() && path) {
    docker = make_docker_client(*path);
  }
  if (!cri && !docker) return std::make_unique<NoopEnricher>();
  EnricherConfig ec;
  ec.lookup_timeout = std::chrono::milliseconds(config.lookup_timeout_ms);
  ec.cache_ttl = std::chrono::seconds(config.cache_ttl_s);
  ec.cache_size = config.cache_size;
  return std::make_unique<AsyncEnricher>(std::move(cri), std::move(docker), ec, std::move(metrics), std::move(logger));
}

Exporter::Exporter(const Config& config, int output_fd, std::unique_ptr<Enricher> enricher,
                   std::shared_ptr<spdlog::logger> logger, std::shared_ptr<EnrichMetrics> enrich_metrics)
    : config_(config),
      output_fd_(output_fd),
      enricher_(std::move(enricher)),
      logger_(std::move(logger)),
      metrics_(std::make_unique<ExporterMetrics>(config.metrics_prefix)),
      enrich_metrics_(enrich_metrics ? std::move(enrich_metrics)
                                     : std::make_shared<EnrichMetrics>(config.metrics_prefix,
                                                                       config.metrics_namespace_label)) {}

Result<std::unique_ptr<Exporter>> Exporter::create(const Config& config, zmq::context_t& ctx, int output_fd,
                                                   std::unique_ptr<Enricher> enricher,
                                                   std::shared_ptr<spdlog::logger> logger,
                                                   std::shared_ptr<EnrichMetrics> enrich_metrics) {
  if (auto ok = validate(config); !ok) return tl::unexpected(ok.error());
  if (!enricher) enricher = std::make_unique<NoopEnricher>();
  std::unique_ptr<Exporter> self(
      new Exporter(config, output_fd, std::move(enricher), std::move(logger), std::move(enrich_metrics)));

  self->epoll_fd_ = UniqueFd(epoll_create1(EPOLL_CLOEXEC));
  self->health_fd_ = UniqueFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (self->epoll_fd_.get() < 0 || self->health_fd_.get() < 0) {
    return fail(std::string("cannot create epoll/eventfd: ") + std::strerror(errno));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = kHealthTag;
  if (epoll_ctl(self->epoll_fd_.get(), EPOLL_CTL_ADD, self->health_fd_.get(), &ev) != 0) {
    return fail(std::string("cannot watch the health eventfd: ") + std::strerror(errno));
  }
  if (int fd = self->enricher_->ready_fd(); fd >= 0) {
    ev.data.u32 = kEnrichTag;
    if (epoll_ctl(self->epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return fail(std::string("cannot watch the enricher's eventfd: ") + std::strerror(errno));
    }
  }

  // Heartbeats: once a second, every publisher whose stats stopped coming is looked at.
  self->heartbeat_timer_ = UniqueFd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!self->heartbeat_timer_) return fail(std::string("timerfd_create: ") + std::strerror(errno));
  itimerspec every_second{};
  every_second.it_interval.tv_sec = 1;
  every_second.it_value.tv_sec = 1;
  timerfd_settime(self->heartbeat_timer_.get(), 0, &every_second, nullptr);
  ev.data.u32 = kHeartbeatTag;
  if (epoll_ctl(self->epoll_fd_.get(), EPOLL_CTL_ADD, self->heartbeat_timer_.get(), &ev) != 0) {
    return fail(std::string("cannot watch the heartbeat timer: ") + std::strerror(errno));
  }

  auto sub = Subscriber::connect(ctx, config.connect, {std::string(topic::kDecision), std::string(topic::kStats)},
                                 100'000, &config.security);
  if (!sub) return tl::unexpected(sub.error());
  self->subscriber_ = std::move(*sub);

  Exporter* raw = self.get();
  HttpHandlers handlers;
  handlers.metrics = [raw] { return raw->metrics_->serialize() + raw->enrich_metrics_->serialize(); };
  handlers.health = [raw] { return raw->health(); };
  auto server = HttpServer::start(config.metrics_address, std::move(handlers));
  if (!server) return tl::unexpected(server.error());
  self->server_ = std::move(*server);
  return self;
}

Exporter::~Exporter() {
  {
    std::lock_guard lock(health_mutex_);
    running_ = false;
  }
  health_cv_.notify_all();
  server_.reset();  // waits for in-flight handlers, which were just released
}

Result<void> Exporter::run(int stop_fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = kStopTag;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, stop_fd, &ev) != 0) {
    return fail(std::string("cannot watch the stop fd: ") + std::strerror(errno));
  }
  {
    std::lock_guard lock(health_mutex_);
    running_ = true;
  }
  // On the way out: release waiting health probes, and forget stop_fd (a later run()
  // may pass another one).
  auto stop_running = [this, stop_fd] {
    {
      std::lock_guard lock(health_mutex_);
      running_ = false;
    }
    health_cv_.notify_all();
    epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, stop_fd, nullptr);
  };
  Received message;
  long timeout_ms = -1;
  for (;;) {
    // One poll over the ZeroMQ socket and the epoll fd (stop, health, enricher answers);
    // a timeout only while decision lines wait for a lookup.
    auto woke = subscriber_->wait(epoll_fd_.get(), timeout_ms);
    if (woke == Subscriber::Wait::kMessage) {
      for (size_t n = 0; n < kMaxBatch && !output_error_ && subscriber_->try_receive(message); ++n) {
        // Messages the subscriber discarded (not two frames, not whole words) came before
        // this one: count them first, so the metrics follow the order of the stream.
        if (uint64_t m = subscriber_->malformed(); m > subscriber_malformed_) {
          metrics_->on_malformed(m - subscriber_malformed_);
          subscriber_malformed_ = m;
        }
        handle(message);
      }
      if (uint64_t m = subscriber_->malformed(); m > subscriber_malformed_) {
        metrics_->on_malformed(m - subscriber_malformed_);
        subscriber_malformed_ = m;
      }
      if (output_error_) {
        stop_running();
        return tl::unexpected(*output_error_);
      }
    }
    // Checked after every wake-up (not only on kFd), so a steady stream of messages can
    // neither starve a stop request nor a health probe.
    epoll_event events[4];
    int ready = epoll_wait(epoll_fd_.get(), events, 4, 0);
    bool stop = false;
    for (int i = 0; i < ready; ++i) {
      if (events[i].data.u32 == kHealthTag) answer_health();
      if (events[i].data.u32 == kEnrichTag) enricher_->drain();
      if (events[i].data.u32 == kHeartbeatTag) check_heartbeats();
      if (events[i].data.u32 == kStopTag) stop = true;
    }
    // Lines that wait for a lookup go out on stop too (without their answer): none is lost.
    timeout_ms = flush_pending(stop);
    if (output_error_) {
      stop_running();
      return tl::unexpected(*output_error_);
    }
    if (stop) {
      stop_running();
      return {};
    }
  }
}

void Exporter::write_line(Json& line, const Enrichment& enrichment, std::string_view detector,
                          std::string_view source, std::string_view action) {
  apply_enrichment(line, enrichment);
  auto ns = enrichment.labels.find("io.kubernetes.pod.namespace");
  enrich_metrics_->on_written(detector, source, action, ns == enrichment.labels.end() ? "" : ns->second);
  if (output_error_) return;
  if (auto ok = write_json_line(output_fd_, line, line_); !ok) output_error_ = ok.error();
}

long Exporter::flush_pending(bool all) {
  auto now = std::chrono::steady_clock::now();
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto answer = enricher_->recheck(it->container);
    if (!answer && !all && it->deadline > now) {
      ++it;
      continue;
    }
    Enrichment e;
    if (answer) {
      e = std::move(*answer);
    } else {
      enrich_metrics_->on_pending_timeout();
      e.failure = all ? "exporter stopping before the runtime answered"
                      : "no answer from the runtime within " + std::to_string(config_.lookup_wait_ms) + " ms";
    }
    write_line(it->line, e, it->detector, it->source, it->action);
    it = pending_.erase(it);
  }
  if (pending_.empty()) return -1;
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(pending_.front().deadline - now).count();
  return wait > 0 ? wait + 1 : 1;
}

void Exporter::note_heartbeat(std::string_view stage, std::string_view id, uint32_t interval_ms) {
  uint64_t now = boot_ns();
  auto it = heartbeats_.find(stage);
  if (it == heartbeats_.end()) {
    if (heartbeats_.size() >= kMaxHeartbeats) return;
    it = heartbeats_.emplace(std::string(stage), Heartbeat{}).first;
  }
  Heartbeat& h = it->second;
  if (h.silent) {
    if (h.id == id)
      logger_->info("publisher {} is back after {:.1f} s of silence", label_value(id),
                    static_cast<double>(now - h.last_ns) / 1e9);
    else
      logger_->info("publisher {} replaces {} after {:.1f} s of silence", label_value(id), label_value(h.id),
                    static_cast<double>(now - h.last_ns) / 1e9);
  }
  h.id.assign(id);
  h.last_ns = now;
  h.interval_ms = interval_ms;
  h.silent = false;
}

void Exporter::check_heartbeats() {
  uint64_t expirations = 0;
  (void)!::read(heartbeat_timer_.get(), &expirations, sizeof expirations);
  uint64_t now = boot_ns();
  for (auto& [stage, h] : heartbeats_) {
    if (h.silent || h.interval_ms == 0) continue;
    uint64_t allowed = kMissedIntervals * uint64_t{h.interval_ms} * 1'000'000;
    if (now - h.last_ns <= allowed) continue;
    h.silent = true;
    metrics_->on_silence(std::string_view(h.id).substr(0, h.id.find('/')));
    logger_->warn("publisher {} silent for {:.1f} s ({} stats intervals of {} ms missed): is it running?",
                  label_value(h.id), static_cast<double>(now - h.last_ns) / 1e9,
                  (now - h.last_ns) / (uint64_t{h.interval_ms} * 1'000'000), h.interval_ms);
  }
}

void Exporter::handle(Received& message) {
  auto topic = message.topic();
  bool is_decision = topic == topic::kDecision;
  bool is_stats = topic == topic::kStats;
  if (!is_decision && !is_stats) return;  // ZeroMQ filters by prefix: "decisions" is not ours
  auto envelope = message.envelope();
  if (!envelope) {
    metrics_->on_malformed();
    return;
  }
  try {
    auto env = *envelope;
    auto kind = view(env.getPublisherKind());
    auto id = view(env.getPublisherId());
    auto stage = stage_of(id, kind);
    auto body = env.getBody();
    auto which = body.which();
    if ((is_decision && which != schema::Envelope::Body::DECISION) ||
        (is_stats && which != schema::Envelope::Body::STATS)) {
      throw std::runtime_error("body does not match topic " + std::string(topic));
    }
    if (auto seen = tracker_.observe(id, topic, env.getSequence()); seen.lost > 0) {
      metrics_->on_lost(kind, topic, seen.lost);
    }
    if (metrics_->on_publisher(kind, stage, id, static_cast<double>(wall_ns()) / 1e9)) {
      logger_->info("publisher {} restarted (now {})", label_value(stage), label_value(id));
    }
    note_seen(kind);
    if (is_stats) {
      auto stats = body.getStats();
      note_heartbeat(stage, id, stats.getIntervalMs());
      metrics_->on_stats(kind, stage, id, stats);
      return;
    }
    auto decision = body.getDecision();
    metrics_->on_decision(decision);
    if (!should_log(decision.getAction(), config_.log_no_match)) return;
    auto container = parse_cgroup(view(decision.getEvent().getCgroupName()));
    auto line = decision_line(env, decision, container, Enrichment{});
    auto detector = text_string(decision.getDetector());
    auto source = text_string(decision.getSource());
    std::string action(action_name(decision.getAction()));
    if (auto answer = enricher_->try_enrich(container)) {
      write_line(line, *answer, detector, source, action);
      return;
    }
    if (pending_.size() >= config_.max_pending) {
      // Too many lines wait (a runtime that stopped answering while a burst of decisions
      // came): the oldest goes out now, unenriched, rather than growing without bound.
      enrich_metrics_->on_pending_overflow();
      Enrichment e;
      e.failure = "too many decision lines waiting for the runtime";
      auto& oldest = pending_.front();
      write_line(oldest.line, e, oldest.detector, oldest.source, oldest.action);
      pending_.pop_front();
    }
    pending_.push_back({std::move(line), std::move(container),
                        std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.lookup_wait_ms),
                        std::move(detector), std::move(source), std::move(action)});
  } catch (const kj::Exception& e) {
    metrics_->on_malformed();
    if (malformed_logged_++ < 10) logger_->warn("malformed message on {}: {}", topic, e.getDescription().cStr());
  } catch (const std::exception& e) {
    metrics_->on_malformed();
    if (malformed_logged_++ < 10) logger_->warn("malformed message on {}: {}", topic, e.what());
  }
}

void Exporter::note_seen(std::string_view kind) {
  auto it = last_seen_boot_ns_.find(kind);
  if (it == last_seen_boot_ns_.end()) {
    if (last_seen_boot_ns_.size() >= kMaxKinds) return;
    it = last_seen_boot_ns_.emplace(label_value(kind), 0).first;
  }
  it->second = boot_ns();
}

void Exporter::answer_health() {
  uint64_t drained = 0;
  (void)::read(health_fd_.get(), &drained, sizeof drained);  // reset the eventfd
  std::string body = "ok\n";
  uint64_t now = boot_ns();
  if (last_seen_boot_ns_.empty()) body += "no message from any publisher yet\n";
  for (const auto& [kind, at] : last_seen_boot_ns_) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(now - at) / 1e9);
    body += kind + ": last message " + buf + " s ago\n";
  }
  {
    std::lock_guard lock(health_mutex_);
    health_snapshot_ = std::move(body);
    health_answered_ = health_requested_;
  }
  health_cv_.notify_all();
}

HttpResponse Exporter::health() {
  std::unique_lock lock(health_mutex_);
  if (!running_) return {503, "exporter loop is not running\n"};
  uint64_t ticket = ++health_requested_;
  uint64_t one = 1;
  if (::write(health_fd_.get(), &one, sizeof one) != static_cast<ssize_t>(sizeof one) && errno != EAGAIN) {
    return {503, std::string("cannot reach the exporter loop: ") + std::strerror(errno) + "\n"};
  }
  bool answered = health_cv_.wait_for(lock, std::chrono::milliseconds(kHealthTimeoutMs),
                                      [&] { return health_answered_ >= ticket || !running_; });
  if (answered && health_answered_ >= ticket) return {200, health_snapshot_};
  if (!running_) return {503, "exporter loop is not running\n"};
  return {503, "exporter loop did not answer within 2 s\n"};
}

}  // namespace cryptnono::exporter
