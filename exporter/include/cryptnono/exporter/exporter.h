// The exporter stage: subscribes to decisions and stats from every --connect endpoint,
// writes one cryptnono-style JSON line per decision worth logging, keeps the Prometheus
// metrics, and answers /metrics and /healthz.
//
// One loop thread (run()) owns everything but the HTTP server's worker threads, which
// only read the metrics registry (thread-safe) and ask the loop for health (see health()),
// and the enricher's worker thread, which asks the container runtime (enricher.h).
//
// Container lookups never block the loop: a decision whose container the enricher does
// not know yet waits in a bounded pending list until the answer arrives (the enricher's
// eventfd wakes the loop) or until --lookup-wait-ms has passed, and is then written,
// enriched or with "container-lookup-failed: <why>" in its reason. Lines are therefore
// not always in the order decisions arrived: a decision that needs no lookup (a host
// process, a cached container) overtakes one that waits.
#pragma once

#include <condition_variable>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <zmq.hpp>

#include "cryptnono/curve.h"
#include "cryptnono/exporter/container.h"
#include "cryptnono/exporter/enricher.h"
#include "cryptnono/exporter/http_server.h"
#include "cryptnono/exporter/metrics.h"
#include "cryptnono/fd.h"
#include "cryptnono/result.h"
#include "cryptnono/transport.h"

namespace cryptnono::exporter {

struct Config {
  std::vector<std::string> connect = {"ipc:///run/cryptnono/execwhacker.sock", "ipc:///run/cryptnono/monero.sock",
                                      "ipc:///run/cryptnono/flowkiller.sock", "ipc:///run/cryptnono/collector.sock"};
  std::string metrics_address = "0.0.0.0:12121";
  std::string metrics_prefix = "cryptnono";
  bool log_no_match = false;
  std::string log_level = "info";
  bool check = false;
  // Container runtimes asked for pod labels and image ('' disables one).
  std::string cri_socket = "unix:///run/containerd/containerd.sock";
  std::string docker_socket = "unix:///var/run/docker.sock";
  int lookup_timeout_ms = 1000;  // all the runtime calls of one lookup
  int lookup_wait_ms = 2000;     // how long a decision line waits for its lookup
  int cache_ttl_s = 300;
  size_t cache_size = 4096;
  size_t max_pending = 1024;     // decision lines waiting for a lookup
  bool metrics_namespace_label = false;
  TransportSecurity security;  // CurveZMQ keys, for tcp:// --connect endpoints
};

// Everything that can be checked without opening a socket.
Result<void> validate(const Config& config);

// The enricher the flags ask for: an AsyncEnricher over the CRI and/or Docker clients,
// or a NoopEnricher when both sockets are ''. Counts into `metrics`.
std::unique_ptr<Enricher> make_enricher(const Config& config, std::shared_ptr<EnrichMetrics> metrics,
                                        std::shared_ptr<spdlog::logger> logger);


class Exporter {
 public:
  // Connects the subscriber (topics "decision" and "stats") and starts the HTTP server.
  // JSON lines are written to output_fd (stdout in production; not owned). enrich_metrics
  // is the registry the enricher counts its lookups in (make_enricher); null: a new one.
  static Result<std::unique_ptr<Exporter>> create(const Config& config, zmq::context_t& ctx, int output_fd,
                                                  std::unique_ptr<Enricher> enricher,
                                                  std::shared_ptr<spdlog::logger> logger,
                                                  std::shared_ptr<EnrichMetrics> enrich_metrics = nullptr);
  ~Exporter();
  Exporter(const Exporter&) = delete;
  Exporter& operator=(const Exporter&) = delete;

  // The loop: blocks in Subscriber::wait (no timeout) until messages arrive, stop_fd
  // becomes readable (then returns; stop_fd is not read) or an HTTP health probe asks.
  // Returns an error only when the JSON lines cannot be written.
  Result<void> run(int stop_fd);

  // The HTTP port actually bound (useful with port 0).
  int metrics_port() const { return server_ ? server_->port() : 0; }
  const ExporterMetrics& metrics() const { return *metrics_; }

  // What /healthz answers. Called on an HTTP thread: it asks the loop thread (through an
  // eventfd) and waits up to kHealthTimeoutMs for the answer, so 200 means the loop is
  // alive and turning, not merely that the process exists. The body says, per publisher
  // kind, how long since its last message.
  HttpResponse health();
  static constexpr int kHealthTimeoutMs = 2000;

 private:
  Exporter(const Config& config, int output_fd, std::unique_ptr<Enricher> enricher,
           std::shared_ptr<spdlog::logger> logger, std::shared_ptr<EnrichMetrics> enrich_metrics);
  struct Pending {
    Json line;  // built by decision_line(), enriched when written
    ContainerRef container;
    std::chrono::steady_clock::time_point deadline;
    std::string detector, source, action;
  };

  void handle(Received& message);
  void write_line(Json& line, const Enrichment& enrichment, std::string_view detector, std::string_view source,
                  std::string_view action);
  // Writes the pending lines whose answer has arrived or whose deadline has passed (all
  // of them when `all`, e.g. on stop); returns the ms until the next deadline, -1 if none.
  long flush_pending(bool all);
  void note_seen(std::string_view kind);
  // Stats are heartbeats: a publisher whose stats stop for kMissedIntervals of its own
  // interval is logged (and counted) as silent once, and its return is logged.
  void note_heartbeat(std::string_view stage, std::string_view id, uint32_t interval_ms);
  void check_heartbeats();
  struct Heartbeat {
    std::string id;
    uint64_t last_ns = 0;
    uint32_t interval_ms = 0;
    bool silent = false;
  };
  std::map<std::string, Heartbeat, std::less<>> heartbeats_;  // by stage
  UniqueFd heartbeat_timer_;
  void answer_health();

  Config config_;
  int output_fd_;
  std::unique_ptr<Enricher> enricher_;
  std::shared_ptr<spdlog::logger> logger_;
  std::unique_ptr<ExporterMetrics> metrics_;
  std::shared_ptr<EnrichMetrics> enrich_metrics_;
  std::deque<Pending> pending_;  // deadlines in insertion order (one wait for all)
  std::unique_ptr<Subscriber> subscriber_;
  SequenceTracker tracker_;
  uint64_t subscriber_malformed_ = 0;
  uint64_t malformed_logged_ = 0;
  std::string line_;
  std::optional<Error> output_error_;
  std::map<std::string, uint64_t, std::less<>> last_seen_boot_ns_;  // by publisher kind

  UniqueFd epoll_fd_;   // health_fd_ + the caller's stop fd, handed to Subscriber::wait
  UniqueFd health_fd_;  // eventfd: an HTTP thread wants a health answer

  std::mutex health_mutex_;
  std::condition_variable health_cv_;
  bool running_ = false;
  uint64_t health_requested_ = 0;
  uint64_t health_answered_ = 0;
  std::string health_snapshot_;

  // Last: destroyed first, so no handler runs once the rest is gone.
  std::unique_ptr<HttpServer> server_;
};

}  // namespace cryptnono::exporter
