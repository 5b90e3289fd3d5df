#include "cryptnono/exporter/metrics.h"

#include <prometheus/text_serializer.h>

#include "cryptnono/json_view.h"

namespace cryptnono::exporter {

namespace {

constexpr std::string_view kOverflow = "_overflow";
constexpr size_t kMaxLabelBytes = 200;
constexpr size_t kMaxTokenBytes = 64;
constexpr size_t kMaxCountersPerPublisher = 256;
constexpr std::string_view kFlowkiller = "flowkiller";

std::string_view view(capnp::Text::Reader text) { return std::string_view(text.begin(), text.size()); }

// Exec -> kill latency buckets: the kill path is meant to take tens of microseconds;
// anything near a second is the "up to a second" of the polling design we replace.
const prometheus::Histogram::BucketBoundaries& kill_buckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0};
  return kBuckets;
}

// What a spared process's `allowedby` label says: the allowed pattern, or for a
// protection rule the kind of rule ("protected" from "protected: pid 1"), so that pids
// in the reason never become label values.
std::string_view allowed_by_label(schema::Decision::Reader decision) {
  auto pattern = view(decision.getAllowedBy());
  if (!pattern.empty()) return pattern;
  auto reason = view(decision.getReason());
  return reason.substr(0, reason.find(':'));
}

}  // namespace

std::string metric_token(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, kMaxTokenBytes)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    out.push_back(ok ? c : '_');
  }
  return out.empty() ? "unknown" : out;
}

std::string label_value(std::string_view text) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= text.size();
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t k = 1; ok && k < len; ++k) {
      auto cc = static_cast<unsigned char>(text[i + k]);
      ok = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF, as a strict decoder does.
    if (ok && len == 2) ok = cp >= 0x80;
    if (ok && len == 3) ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
    if (ok && len == 4) ok = cp >= 0x10000 && cp <= 0x10FFFF;
    std::string_view piece = ok ? text.substr(i, len) : kReplacement;
    // Control characters make label values unreadable (and some scrapers choke on them).
    if (ok && len == 1 && (c < 0x20 || c == 0x7F)) piece = "?";
    if (out.size() + piece.size() > kMaxLabelBytes) break;
    out.append(piece);
    i += ok ? len : 1;
  }
  return out;
}

std::string_view stage_of(std::string_view publisher_id, std::string_view kind) {
  size_t first = publisher_id.find('/');
  if (first == std::string_view::npos) return kind;
  size_t second = publisher_id.find('/', first + 1);
  if (second == std::string_view::npos) return kind;
  auto stage = publisher_id.substr(first + 1, second - first - 1);
  return stage.empty() ? kind : stage;
}

ExporterMetrics::ExporterMetrics(std::string prefix)
    : prefix_(std::move(prefix)), registry_(std::make_shared<prometheus::Registry>()) {
  restarts_ = &counter_family(prefix_ + "_publisher_restarts_total",
                              "Publishers that came back with a new id (a stage restarted)");
  silences_ = &counter_family(prefix_ + "_publisher_silences_total",
                              "Times a publisher missed 3 of its stats intervals (stopped, hung or unreachable)");
  lost_ = &counter_family(prefix_ + "_messages_lost_total",
                          "Messages this exporter missed, from publisher sequence gaps");
  last_seen_ = &prometheus::BuildGauge()
                    .Name(prefix_ + "_publisher_last_seen_timestamp_seconds")
                    .Help("Wall-clock time of the last message from a publisher")
                    .Register(*registry_);
  malformed_ = &counter_family(prefix_ + "_exporter_malformed_messages_total",
                               "Messages dropped because they could not be decoded or made no sense")
                    .Add({});
  // The default detector's series exist from the start, at zero.
  auto& execwhacker = detector("execwhacker");
  for (std::string_view source : {"execwhacker.bpf", "execwhacker.scan"}) {
    by_source(execwhacker, *execwhacker.checked, execwhacker.checked_by_source, source);
    by_source(execwhacker, *execwhacker.killed, execwhacker.killed_by_source, source);
    by_source(execwhacker, *execwhacker.missed, execwhacker.missed_by_source, source);
    by_source(execwhacker, *execwhacker.would_kill, execwhacker.would_kill_by_source, source);
  }
}

void ExporterMetrics::touch_detector(std::string_view stage) {
  if (stage == "monero") {
    auto& d = detector(stage);
    by_source(d, *d.checked, d.checked_by_source, "monero.bpf");
    by_source(d, *d.killed, d.killed_by_source, "monero.bpf");
    by_source(d, *d.missed, d.missed_by_source, "monero.bpf");
  } else if (stage == kFlowkiller) {
    // cryptnono's tcpflowkiller makes its reason series at start as well.
    auto& d = detector(stage);
    for (std::string_view rule : {"banned", "fanout"}) {
      by_source(d, *d.killed, d.killed_by_source, rule);
      by_source(d, *d.missed, d.missed_by_source, rule);
    }
  }
}

std::string ExporterMetrics::serialize() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

prometheus::Family<prometheus::Counter>& ExporterMetrics::counter_family(const std::string& name,
                                                                         const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(*registry_);
}

ExporterMetrics::Detector& ExporterMetrics::detector(std::string_view name) {
  if (auto it = detectors_.find(name); it != detectors_.end()) return *it->second;
  if (detectors_.size() >= kMaxDetectors) name = kOverflow;
  if (auto it = detectors_.find(name); it != detectors_.end()) return *it->second;
  auto d = std::make_unique<Detector>();
  std::string base = prefix_ + "_" + metric_token(name);
  std::string who = "by the " + label_value(name) + " detector";
  bool flowkiller = name == kFlowkiller;
  d->label = flowkiller ? "reason" : "source";
  if (flowkiller)
    d->connects_checked = &counter_family(base + "_connects_checked_total", "TCP connects checked " + who).Add({});
  else
    d->checked = &counter_family(base + "_processes_checked_total", "Processes checked " + who);
  d->killed = &counter_family(base + "_processes_killed_total", "Processes killed " + who);
  d->missed = &counter_family(base + "_processes_missed_total",
                              "Processes that matched but were gone or not the one seen, " + who);
  d->allowed = &counter_family(base + "_processes_allowed_total",
                               "Processes that matched but were spared (allowed pattern or protection), " + who);
  d->would_kill = &counter_family(base + "_processes_would_kill_total", "Processes a dry run would kill, " + who);
  d->errors = &counter_family(base + "_unexpected_errors_total", "Decisions that failed with an error, " + who).Add({});
  if (!flowkiller)
    d->exec_to_kill = &prometheus::BuildHistogram()
                           .Name(base + "_exec_to_kill_seconds")
                           .Help("Time from exec to SIGKILL, " + who)
                           .Register(*registry_)
                           .Add({}, kill_buckets());
  return *detectors_.emplace(std::string(name), std::move(d)).first->second;
}

prometheus::Counter& ExporterMetrics::by_source(const Detector& d, prometheus::Family<prometheus::Counter>& family,
                                                CounterCache& cache, std::string_view source) {
  if (auto it = cache.find(source); it != cache.end()) return *it->second;
  if (cache.size() >= kMaxSeries) source = kOverflow;
  if (auto it = cache.find(source); it != cache.end()) return *it->second;
  auto& counter = family.Add({{d.label, label_value(source)}});
  cache.emplace(std::string(source), &counter);
  return counter;
}

void ExporterMetrics::on_decision(schema::Decision::Reader decision) {
  Detector& d = detector(view(decision.getDetector()));
  // The per-detector label: the source ("execwhacker.bpf"), or for the flowkiller the rule
  // that fired ("banned", "fanout"; empty for a connect that fired none).
  auto source = d.connects_checked != nullptr ? view(decision.getRule()) : view(decision.getSource());
  if (d.connects_checked != nullptr)
    d.connects_checked->Increment();
  else
    by_source(d, *d.checked, d.checked_by_source, source).Increment();
  switch (decision.getAction()) {
    case schema::Action::NO_MATCH:
      break;
    case schema::Action::KILLED: {
      by_source(d, *d.killed, d.killed_by_source, source).Increment();
      uint64_t exec = decision.getEvent().getExecBootNs();
      uint64_t killed = decision.getKilledBootNs();
      if (d.exec_to_kill != nullptr && exec != 0 && killed >= exec)
        d.exec_to_kill->Observe(static_cast<double>(killed - exec) / 1e9);
      break;
    }
    case schema::Action::SPARED: {
      auto allowed_by = allowed_by_label(decision);
      std::string key;
      key.reserve(source.size() + allowed_by.size() + 1);
      key.append(source).push_back('\n');
      key.append(allowed_by);
      auto it = d.allowed_by_key.find(key);
      if (it == d.allowed_by_key.end()) {
        bool overflow = d.allowed_by_key.size() >= kMaxSeries;
        if (overflow) key = std::string(kOverflow);
        it = d.allowed_by_key.find(key);
        if (it == d.allowed_by_key.end()) {
          auto& counter = d.allowed->Add({{d.label, label_value(overflow ? kOverflow : source)},
                                          {"allowedby", label_value(overflow ? kOverflow : allowed_by)}});
          it = d.allowed_by_key.emplace(key, &counter).first;
        }
      }
      it->second->Increment();
      break;
    }
    case schema::Action::MISSED_KILL:
      by_source(d, *d.missed, d.missed_by_source, source).Increment();
      break;
    case schema::Action::WOULD_KILL:
      by_source(d, *d.would_kill, d.would_kill_by_source, source).Increment();
      break;
    case schema::Action::ERROR:
      d.errors->Increment();
      break;
  }
}

bool ExporterMetrics::on_publisher(std::string_view kind, std::string_view stage, std::string_view publisher_id,
                                   double wall_seconds) {
  // Called for every message: the key is built in a reused buffer, not a new string.
  std::string& key = scratch_;
  key.assign(kind).push_back('\n');
  key.append(stage);
  bool restarted = false;
  auto it = publisher_of_stage_.find(key);
  if (it == publisher_of_stage_.end()) {
    if (publisher_of_stage_.size() >= kMaxPublishers) publisher_of_stage_.erase(publisher_of_stage_.begin());
    publisher_of_stage_.emplace(key, std::string(publisher_id));
    if (kind == "enforcer") touch_detector(stage);
  } else if (it->second != publisher_id) {
    // Stats are cumulative per publisher id: the old id's baseline means nothing now.
    stats_baseline_.erase(it->second);
    it->second = std::string(publisher_id);
    restarted = true;
    auto r = restarts_by_kind_.find(kind);
    if (r == restarts_by_kind_.end()) {
      bool overflow = restarts_by_kind_.size() >= kMaxSeries;
      auto& counter = restarts_->Add({{"publisher_kind", label_value(overflow ? kOverflow : kind)}});
      r = restarts_by_kind_.emplace(overflow ? std::string(kOverflow) : std::string(kind), &counter).first;
    }
    r->second->Increment();
  }
  auto g = last_seen_by_key_.find(key);
  if (g == last_seen_by_key_.end()) {
    bool overflow = last_seen_by_key_.size() >= kMaxSeries;
    if (overflow) key = std::string(kOverflow);
    g = last_seen_by_key_.find(key);
    if (g == last_seen_by_key_.end()) {
      auto& gauge = last_seen_->Add({{"publisher_kind", label_value(overflow ? kOverflow : kind)},
                                     {"name", label_value(overflow ? kOverflow : stage)}});
      g = last_seen_by_key_.emplace(key, &gauge).first;
    }
  }
  g->second->Set(wall_seconds);
  return restarted;
}

void ExporterMetrics::on_stats(std::string_view kind, std::string_view stage, std::string_view publisher_id,
                               schema::Stats::Reader stats) {
  auto b = stats_baseline_.find(publisher_id);
  if (b == stats_baseline_.end()) {
    if (stats_baseline_.size() >= kMaxPublishers) stats_baseline_.erase(stats_baseline_.begin());
    b = stats_baseline_.emplace(std::string(publisher_id), std::map<std::string, uint64_t, std::less<>>{}).first;
  }
  auto& baseline = b->second;
  std::string kind_token = metric_token(kind);
  // Only the first kMaxCountersPerPublisher are looked at: a hostile message can claim
  // millions of (zero-sized) list elements in a few bytes, and walking them all would
  // stall the loop even though none of them would be exported.
  auto counters = stats.getCounters();
  unsigned limit = std::min<unsigned>(counters.size(), static_cast<unsigned>(kMaxCountersPerPublisher));
  for (unsigned i = 0; i < limit; ++i) {
    auto counter = counters[i];
    auto name = view(counter.getName());
    uint64_t value = counter.getValue();
    auto prev = baseline.find(name);
    uint64_t delta = value;
    if (prev != baseline.end()) {
      // A value that went down means the publisher reset it: count it afresh.
      delta = value >= prev->second ? value - prev->second : value;
      prev->second = value;
    } else if (baseline.size() < kMaxCountersPerPublisher) {
      baseline.emplace(std::string(name), value);
    } else {
      continue;  // a publisher with absurdly many counters: the rest are not exported
    }
    std::string family_name = prefix_ + "_" + kind_token + "_" + metric_token(name) + "_total";
    std::string series_key = family_name + "\n" + std::string(stage);
    auto s = stats_series_.find(series_key);
    if (s == stats_series_.end()) {
      if (stats_series_.size() >= kMaxStatsSeries) continue;
      auto f = stats_families_.find(family_name);
      if (f == stats_families_.end()) {
        auto& family = counter_family(family_name, "Stats counter '" + label_value(name) + "' of the " +
                                                       label_value(kind) + " (from its stats messages)");
        f = stats_families_.emplace(family_name, &family).first;
      }
      s = stats_series_.emplace(series_key, &f->second->Add({{"name", label_value(stage)}})).first;
    }
    if (delta > 0) s->second->Increment(static_cast<double>(delta));
  }
}

void ExporterMetrics::on_lost(std::string_view kind, std::string_view topic, uint64_t lost) {
  std::string key;
  key.append(kind).push_back('\n');
  key.append(topic);
  auto it = lost_by_key_.find(key);
  if (it == lost_by_key_.end()) {
    bool overflow = lost_by_key_.size() >= kMaxSeries;
    if (overflow) key = std::string(kOverflow);
    it = lost_by_key_.find(key);
    if (it == lost_by_key_.end()) {
      auto& counter = lost_->Add({{"publisher_kind", label_value(overflow ? kOverflow : kind)},
                                  {"topic", label_value(overflow ? kOverflow : topic)}});
      it = lost_by_key_.emplace(key, &counter).first;
    }
  }
  it->second->Increment(static_cast<double>(lost));
}

void ExporterMetrics::on_silence(std::string_view kind) {
  auto it = silences_by_kind_.find(kind);
  if (it == silences_by_kind_.end()) {
    bool overflow = silences_by_kind_.size() >= kMaxSeries;
    std::string key(overflow ? kOverflow : kind);
    it = silences_by_kind_.find(key);
    if (it == silences_by_kind_.end())
      it = silences_by_kind_.emplace(key, &silences_->Add({{"publisher_kind", label_value(key)}})).first;
  }
  it->second->Increment();
}

void ExporterMetrics::on_malformed(uint64_t count) {
  if (count > 0) malformed_->Increment(static_cast<double>(count));
}

}  // namespace cryptnono::exporter
