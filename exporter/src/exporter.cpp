#include "cryptnono/exporter/exporter.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
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
  return {};
}

Exporter::Exporter(const Config& config, int output_fd, std::unique_ptr<Enricher> enricher,
                   std::shared_ptr<spdlog::logger> logger)
    : config_(config),
      output_fd_(output_fd),
      enricher_(std::move(enricher)),
      logger_(std::move(logger)),
      metrics_(std::make_unique<ExporterMetrics>(config.metrics_prefix)) {}

Result<std::unique_ptr<Exporter>> Exporter::create(const Config& config, zmq::context_t& ctx, int output_fd,
                                                   std::unique_ptr<Enricher> enricher,
                                                   std::shared_ptr<spdlog::logger> logger) {
  if (auto ok = validate(config); !ok) return tl::unexpected(ok.error());
  if (!enricher) enricher = std::make_unique<NoopEnricher>();
  std::unique_ptr<Exporter> self(new Exporter(config, output_fd, std::move(enricher), std::move(logger)));

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

  auto sub = Subscriber::connect(ctx, config.connect, {std::string(topic::kDecision), std::string(topic::kStats)});
  if (!sub) return tl::unexpected(sub.error());
  self->subscriber_ = std::move(*sub);

  Exporter* raw = self.get();
  HttpHandlers handlers;
  handlers.metrics = [raw] { return raw->metrics_->serialize(); };
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
  for (;;) {
    // One poll over the ZeroMQ socket and the epoll fd (stop + health); no timeout.
    auto woke = subscriber_->wait(epoll_fd_.get(), -1);
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
    epoll_event events[2];
    int ready = epoll_wait(epoll_fd_.get(), events, 2, 0);
    bool stop = false;
    for (int i = 0; i < ready; ++i) {
      if (events[i].data.u32 == kHealthTag) answer_health();
      if (events[i].data.u32 == kStopTag) stop = true;
    }
    if (stop) {
      stop_running();
      return {};
    }
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
      metrics_->on_stats(kind, stage, id, body.getStats());
      return;
    }
    auto decision = body.getDecision();
    metrics_->on_decision(decision);
    if (!should_log(decision.getAction(), config_.log_no_match)) return;
    auto container = parse_cgroup(view(decision.getEvent().getCgroupName()));
    auto enrichment = enricher_->enrich(container);
    if (auto ok = write_json_line(output_fd_, decision_line(env, decision, container, enrichment), line_); !ok) {
      output_error_ = ok.error();
    }
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
