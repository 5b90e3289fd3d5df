#include "cryptnono/exporter/enricher.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <prometheus/text_serializer.h>

#include "cryptnono/exporter/metrics.h"

namespace cryptnono::exporter {

namespace {

constexpr std::string_view kOverflow = "_overflow";

// Lookups over a unix socket take about a millisecond; the deadline is a second.
const prometheus::Histogram::BucketBoundaries& lookup_buckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {250e-6, 500e-6, 1e-3,  2.5e-3, 5e-3, 10e-3,
                                                                    25e-3,  50e-3,  0.1, 0.25,   0.5,  1.0, 2.5};
  return kBuckets;
}

bool is_kubernetes_label(const std::string& key) { return key.rfind("io.kubernetes.", 0) == 0; }

}  // namespace

EnrichMetrics::EnrichMetrics(std::string prefix, bool namespace_label)
    : prefix_(std::move(prefix)), namespace_label_(namespace_label), registry_(std::make_shared<prometheus::Registry>()) {
  auto counter = [&](const std::string& name, const std::string& help) -> prometheus::Family<prometheus::Counter>& {
    return prometheus::BuildCounter().Name(prefix_ + name).Help(help).Register(*registry_);
  };
  lookups_ = &counter("_exporter_container_lookups_total", "Container lookups made in a runtime (cache misses)");
  failures_ = &counter("_exporter_container_lookup_failures_total", "Container lookups that failed, by reason");
  latency_ = &prometheus::BuildHistogram()
                  .Name(prefix_ + "_exporter_container_lookup_seconds")
                  .Help("Time taken by one container lookup in a runtime")
                  .Register(*registry_);
  hits_ = &counter("_exporter_container_cache_hits_total", "Decisions whose container was already known").Add({});
  misses_ = &counter("_exporter_container_cache_misses_total", "Decisions whose container had to be looked up").Add({});
  pending_timeouts_ = &counter("_exporter_container_lookup_pending_timeouts_total",
                               "Decision lines written without the runtime's answer (pending deadline passed)")
                           .Add({});
  pending_overflows_ = &counter("_exporter_container_lookup_pending_overflows_total",
                                "Decision lines written before the runtime answered because too many were waiting")
                            .Add({});
}

std::string EnrichMetrics::serialize() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

prometheus::Counter& EnrichMetrics::series(prometheus::Family<prometheus::Counter>& family,
                                           std::map<std::string, std::string> labels) {
  std::string prefix = std::to_string(reinterpret_cast<uintptr_t>(&family));
  std::string key = prefix;
  for (const auto& [k, v] : labels) key += "\n" + k + "=" + v;
  std::lock_guard lock(mutex_);
  auto it = counters_.find(key);
  if (it != counters_.end()) return *it->second;
  // Every label value comes from a runtime or the wire: past kMaxSeries per family, new
  // values share one series.
  if (family_sizes_[&family] >= kMaxSeries) {
    key = prefix;
    for (auto& [k, v] : labels) {
      v = std::string(kOverflow);
      key += "\n" + k + "=" + v;
    }
    it = counters_.find(key);
    if (it != counters_.end()) return *it->second;
  }
  ++family_sizes_[&family];
  return *counters_.emplace(key, &family.Add(labels)).first->second;
}

void EnrichMetrics::on_lookup(std::string_view runtime, double seconds) {
  series(*lookups_, {{"runtime", std::string(runtime)}}).Increment();
  prometheus::Histogram* histogram = nullptr;
  {
    std::lock_guard lock(mutex_);
    auto it = histograms_.find(runtime);
    if (it == histograms_.end()) {
      it = histograms_.emplace(std::string(runtime), &latency_->Add({{"runtime", std::string(runtime)}}, lookup_buckets()))
               .first;
    }
    histogram = it->second;
  }
  histogram->Observe(seconds);
}

void EnrichMetrics::on_failure(std::string_view runtime, std::string_view reason) {
  series(*failures_, {{"runtime", std::string(runtime)}, {"reason", std::string(reason)}}).Increment();
}

void EnrichMetrics::on_cache(bool hit) { (hit ? hits_ : misses_)->Increment(); }

void EnrichMetrics::on_written(std::string_view detector, std::string_view source, std::string_view action,
                               std::string_view pod_namespace) {
  if (!namespace_label_) return;
  bool killed = action == "killed";
  if (!killed && action != "missed-kill") return;
  std::string family_name = prefix_ + "_" + metric_token(detector) +
                            (killed ? "_processes_killed_by_namespace_total" : "_processes_missed_by_namespace_total");
  prometheus::Family<prometheus::Counter>* family = nullptr;
  {
    std::lock_guard lock(mutex_);
    auto it = namespace_families_.find(family_name);
    if (it == namespace_families_.end()) {
      if (namespace_families_.size() >= 2 * kMaxDetectors) return;
      auto& f = prometheus::BuildCounter()
                    .Name(family_name)
                    .Help(std::string(killed ? "Processes killed" : "Processes that matched but could not be killed") +
                          " by the " + label_value(detector) + " detector, by pod namespace")
                    .Register(*registry_);
      it = namespace_families_.emplace(family_name, &f).first;
    }
    family = it->second;
  }
  // Namespaces are few on a hub, but one per user on some: hence off by default, and bounded.
  series(*family, {{"namespace", label_value(pod_namespace)}, {"source", label_value(source)}}).Increment();
}

AsyncEnricher::AsyncEnricher(std::unique_ptr<RuntimeClient> cri, std::unique_ptr<RuntimeClient> docker,
                             EnricherConfig config, std::shared_ptr<EnrichMetrics> metrics,
                             std::shared_ptr<spdlog::logger> logger)
    : cri_(std::move(cri)),
      docker_(std::move(docker)),
      config_(config),
      metrics_(std::move(metrics)),
      logger_(std::move(logger)),
      ready_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!ready_fd_) throw std::runtime_error(std::string("cannot create the enricher's eventfd: ") + std::strerror(errno));
  worker_ = std::thread([this] { run(); });
}

AsyncEnricher::~AsyncEnricher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  worker_.join();
}

void AsyncEnricher::drain() {
  uint64_t count = 0;
  (void)::read(ready_fd_.get(), &count, sizeof count);
}

std::optional<Enrichment> AsyncEnricher::try_enrich(const ContainerRef& container) { return answer(container, true); }

std::optional<Enrichment> AsyncEnricher::recheck(const ContainerRef& container) { return answer(container, false); }

std::optional<Enrichment> AsyncEnricher::answer(const ContainerRef& container, bool count) {
  if (container.container_id.empty()) return Enrichment{};
  RuntimeClient* inner = container.container_type == "cri" ? cri_.get()
                         : container.container_type == "docker" ? docker_.get()
                                                                : nullptr;
  // Docker-in-Docker: the pod is known from the pod's own container, through the CRI.
  RuntimeClient* outer = !container.outer_container_id.empty() && !container.pod_uid.empty() ? cri_.get() : nullptr;
  if (!inner && !outer) return Enrichment{};

  LookupResult<ContainerInfo> inner_result, outer_result;
  bool waiting = false;
  if (inner) waiting |= lookup({inner, container.container_id}, inner_result) == State::kWaiting;
  if (outer) waiting |= lookup({outer, container.outer_container_id}, outer_result) == State::kWaiting;
  if (count && metrics_) metrics_->on_cache(!waiting);
  if (waiting) return std::nullopt;

  Enrichment e;
  std::vector<std::string> failures;
  if (inner) {
    if (inner_result) {
      // Nested in a pod's container, the inner container was not made by the kubelet: its
      // io.kubernetes.* labels are the image's own, whoever wrote it. Only the CRI's count.
      bool nested = !container.outer_container_id.empty();
      for (const auto& [key, value] : inner_result->labels) {
        if (!(nested && is_kubernetes_label(key))) e.labels.emplace(key, value);
      }
      e.image = inner_result->image;
    } else {
      failures.push_back(inner_result.error().message);
    }
  }
  if (outer) {
    if (outer_result) {
      for (const auto& [key, value] : outer_result->labels) {
        if (is_kubernetes_label(key)) e.labels.insert_or_assign(key, value);
      }
      if (!inner) e.image = outer_result->image;
    } else {
      failures.push_back("pod container " + container.outer_container_id.substr(0, 12) + ": " +
                         outer_result.error().message);
    }
  }
  for (const auto& f : failures) e.failure += (e.failure.empty() ? "" : "; ") + f;
  return e;
}

AsyncEnricher::State AsyncEnricher::lookup(const Key& key, LookupResult<ContainerInfo>& out) {
  std::string k = cache_key(key);
  std::lock_guard lock(mutex_);
  auto it = cache_.find(k);
  if (it != cache_.end()) {
    if (it->second.expires > std::chrono::steady_clock::now()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      out = it->second.result;
      return State::kAnswered;
    }
    lru_.erase(it->second.lru);
    cache_.erase(it);
  }
  if (in_flight_.count(k)) return State::kWaiting;
  if (queue_.size() >= config_.queue_size) {
    // The worker is far behind (a runtime timing out on every call): answer now rather
    // than letting decisions pile up.
    if (metrics_) metrics_->on_failure(key.client->kind(), "queue_full");
    out = tl::unexpected(LookupError{"queue_full", std::string(key.client->kind()) + ": too many lookups waiting"});
    return State::kAnswered;
  }
  in_flight_.insert(k);
  queue_.push_back(key);
  wake_.notify_one();
  return State::kWaiting;
}

void AsyncEnricher::store(const std::string& key, LookupResult<ContainerInfo> result) {
  auto ttl = result ? std::chrono::duration_cast<std::chrono::steady_clock::duration>(config_.cache_ttl)
                    : std::chrono::duration_cast<std::chrono::steady_clock::duration>(config_.failure_ttl);
  std::lock_guard lock(mutex_);
  in_flight_.erase(key);
  auto it = cache_.find(key);
  if (it != cache_.end()) {
    lru_.erase(it->second.lru);
    cache_.erase(it);
  }
  while (!lru_.empty() && cache_.size() >= config_.cache_size) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  cache_.emplace(key, Entry{std::move(result), std::chrono::steady_clock::now() + ttl, lru_.begin()});
}

void AsyncEnricher::run() {
  for (;;) {
    Key key;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      key = std::move(queue_.front());
      queue_.pop_front();
    }
    auto started = std::chrono::steady_clock::now();
    LookupResult<ContainerInfo> result;
    try {
      result = key.client->inspect(key.id, config_.lookup_timeout);
    } catch (const std::exception& e) {  // a client bug must not end the worker
      result = tl::unexpected(LookupError{"error", std::string(key.client->kind()) + ": " + e.what()});
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (metrics_) {
      metrics_->on_lookup(key.client->kind(), seconds);
      if (!result) metrics_->on_failure(key.client->kind(), result.error().kind);
    }
    if (!result && logger_) logger_->debug("lookup of {} failed: {}", key.id, result.error().message);
    store(cache_key(key), std::move(result));
    uint64_t one = 1;
    (void)::write(ready_fd_.get(), &one, sizeof one);
  }
}

void apply_enrichment(Json& line, const Enrichment& enrichment) {
  line["labels"] = Json::object();
  for (const auto& [key, value] : enrichment.labels) line["labels"][key] = value;
  line["image"] = enrichment.image;
  if (!enrichment.failure.empty()) {
    std::string reason = line.contains("reason") && line["reason"].is_string() ? line["reason"].get<std::string>() : "";
    line["reason"] = (reason.empty() ? "" : reason + "; ") + "container-lookup-failed: " + enrichment.failure;
  }
}

}  // namespace cryptnono::exporter
