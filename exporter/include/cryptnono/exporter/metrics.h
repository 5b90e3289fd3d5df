// The exporter's Prometheus metrics, named as cryptnono names them (prefix configurable):
//
//   <p>_<detector>_processes_checked_total{source}      every decision, noMatch included
//   <p>_<detector>_processes_killed_total{source}
//   <p>_<detector>_processes_missed_total{source}        missedKill
//   <p>_<detector>_processes_allowed_total{source,allowedby}   spared
//   <p>_<detector>_processes_would_kill_total{source}    --dry-run
//   <p>_<detector>_unexpected_errors_total               action error
//   <p>_<detector>_exec_to_kill_seconds                  histogram, 10 us .. 1 s
//
// except for the flowkiller, whose names are cryptnono's tcpflowkiller's:
//
//   <p>_flowkiller_connects_checked_total                every connect judged
//   <p>_flowkiller_processes_killed_total{reason}        reason = the rule: banned | fanout
//   <p>_flowkiller_processes_missed_total{reason}
//   <p>_flowkiller_processes_allowed_total{reason,allowedby}   spared (protection rules)
//   <p>_flowkiller_processes_would_kill_total{reason}    --dry-run
//   <p>_flowkiller_unexpected_errors_total
//
// and the rest:
//
//   <p>_<publisherKind>_<counter>_total{name}            each Stats counter (name = stage)
//   <p>_publisher_restarts_total{publisher_kind}
//   <p>_publisher_silences_total{publisher_kind}         3 stats intervals missed
//   <p>_messages_lost_total{publisher_kind,topic}        sequence gaps
//   <p>_publisher_last_seen_timestamp_seconds{publisher_kind,name}
//   <p>_exporter_malformed_messages_total
//
// Families for a detector are made the first time one of its decisions arrives, so a new
// detector gets its metrics without a code change. execwhacker's exist from the start, at
// zero, so dashboards and alerts see them before the first kill; monero's
// (source="monero.bpf") and flowkiller's (reason="banned"/"fanout") from the first
// message of their enforcer (its stats come every few seconds), so a node that does not
// run them shows none.
//
// Everything that reaches a metric name or label comes off the wire, so it is bounded:
// name parts are reduced to [a-zA-Z0-9_], label values to valid UTF-8 of at most 200
// bytes, and each family holds at most kMaxSeries series (further label values share one
// series labelled "_overflow"); at most kMaxDetectors detectors and kMaxStatsSeries
// stats series are tracked.
//
// Thread safety: the on_* methods are called from one thread (the exporter loop);
// serialize() may be called from any thread at the same time (prometheus-cpp's registry
// and metrics are thread-safe).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "cryptnono.capnp.h"

namespace cryptnono::exporter {

inline constexpr size_t kMaxSeries = 256;
inline constexpr size_t kMaxDetectors = 16;
inline constexpr size_t kMaxStatsSeries = 1024;
inline constexpr size_t kMaxPublishers = 256;

// A metric-name part: every character outside [a-zA-Z0-9_] becomes '_', at most 64 bytes,
// "unknown" when empty.
std::string metric_token(std::string_view text);
// A label value: invalid UTF-8 replaced by U+FFFD, cut (on a character boundary) to 200 bytes.
std::string label_value(std::string_view text);
// The stage or detector name from a publisher id "<kind>/<name>/<hex>"; `kind` when the
// id has no such part.
std::string_view stage_of(std::string_view publisher_id, std::string_view kind);

class ExporterMetrics {
 public:
  // prefix must already be a valid metric name prefix (validated by the Config).
  explicit ExporterMetrics(std::string prefix);
  ExporterMetrics(const ExporterMetrics&) = delete;
  ExporterMetrics& operator=(const ExporterMetrics&) = delete;

  // Prometheus text exposition format (0.0.4). Any thread.
  std::string serialize() const;

  void on_decision(schema::Decision::Reader decision);
  // Called for every message: notices a new publisher id for a (kind, stage) already
  // seen (a restart), and updates the last-seen gauge. Returns true on a restart.
  bool on_publisher(std::string_view kind, std::string_view stage, std::string_view publisher_id,
                    double wall_seconds);
  // Adds to each stats counter the increase since this publisher's previous stats (all
  // of its value for a publisher's first stats: the counters count from its start).
  void on_stats(std::string_view kind, std::string_view stage, std::string_view publisher_id,
                schema::Stats::Reader stats);
  void on_lost(std::string_view kind, std::string_view topic, uint64_t lost);
  void on_silence(std::string_view kind);
  void on_malformed(uint64_t count = 1);

 private:
  using CounterCache = std::map<std::string, prometheus::Counter*, std::less<>>;
  struct Detector {
    std::string label;  // the per-detector label: "source", or "reason" for the flowkiller
    prometheus::Counter* connects_checked = nullptr;  // flowkiller: instead of `checked`
    prometheus::Family<prometheus::Counter>* checked = nullptr;
    prometheus::Family<prometheus::Counter>* killed = nullptr;
    prometheus::Family<prometheus::Counter>* missed = nullptr;
    prometheus::Family<prometheus::Counter>* allowed = nullptr;
    prometheus::Family<prometheus::Counter>* would_kill = nullptr;
    prometheus::Counter* errors = nullptr;
    prometheus::Histogram* exec_to_kill = nullptr;  // not for the flowkiller (no exec)
    CounterCache checked_by_source, killed_by_source, missed_by_source, allowed_by_key, would_kill_by_source;
  };

  Detector& detector(std::string_view name);
  // Makes a known detector's series (at zero) when its enforcer is first heard from.
  void touch_detector(std::string_view stage);
  // The series of `family` whose per-detector label (d.label) is `value`.
  prometheus::Counter& by_source(const Detector& d, prometheus::Family<prometheus::Counter>& family,
                                 CounterCache& cache, std::string_view value);
  prometheus::Family<prometheus::Counter>& counter_family(const std::string& name, const std::string& help);

  std::string prefix_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::map<std::string, std::unique_ptr<Detector>, std::less<>> detectors_;

  prometheus::Family<prometheus::Counter>* restarts_ = nullptr;
  prometheus::Family<prometheus::Counter>* silences_ = nullptr;
  prometheus::Family<prometheus::Counter>* lost_ = nullptr;
  prometheus::Family<prometheus::Gauge>* last_seen_ = nullptr;
  prometheus::Counter* malformed_ = nullptr;
  CounterCache restarts_by_kind_, lost_by_key_, silences_by_kind_;
  std::map<std::string, prometheus::Gauge*, std::less<>> last_seen_by_key_;

  // Stats: family per (kind, counter), series per stage; baselines per publisher id.
  std::map<std::string, prometheus::Family<prometheus::Counter>*, std::less<>> stats_families_;
  CounterCache stats_series_;
  std::map<std::string, std::map<std::string, uint64_t, std::less<>>, std::less<>> stats_baseline_;  // by publisher id
  std::map<std::string, std::string, std::less<>> publisher_of_stage_;  // "<kind>\n<stage>" -> publisher id
  std::string scratch_;
};

}  // namespace cryptnono::exporter
