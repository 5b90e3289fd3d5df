// Pod labels and image for the exporter's decision lines, looked up in the container
// runtime off the exporter's loop.
//
// AsyncEnricher: the loop asks try_enrich(); a cached answer comes back at once, else the
// container goes on a bounded queue for one worker thread, which asks the runtime (CRI
// or Docker, one deadline per lookup), stores the answer (or the failure) in a bounded
// LRU cache with a TTL, and makes ready_fd() readable. The loop never waits on a runtime.
//
// Which runtime: container_type "cri" -> the CRI client, "docker" -> the Docker client.
// Docker-in-Docker (a Docker container nested in a pod's container, as BinderHub builds
// run): the inner container is looked up in Docker and the pod's container in the CRI;
// the line's io.kubernetes.* labels then come from the CRI only, because Docker labels
// come from the image (any Dockerfile LABEL) and must not be able to name another pod.
// A container type with no client (podman, unknown, or a runtime whose socket was set to
// '') gets empty labels and image and no failure: nothing was asked.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <spdlog/logger.h>

#include "cryptnono/exporter/container.h"
#include "cryptnono/exporter/runtime_client.h"
#include "cryptnono/fd.h"
#include "cryptnono/json_view.h"

namespace cryptnono::exporter {

// The exporter's enrichment metrics (own registry, appended to /metrics):
//   <p>_exporter_container_lookups_total{runtime}                   runtime lookups made
//   <p>_exporter_container_lookup_failures_total{runtime,reason}    not_found, unavailable, timeout, error, queue_full
//   <p>_exporter_container_lookup_seconds{runtime}                  histogram of each lookup
//   <p>_exporter_container_cache_hits_total / _misses_total         per decision with a container
//   <p>_exporter_container_lookup_pending_timeouts_total            lines written without an answer (deadline)
//   <p>_exporter_container_lookup_pending_overflows_total           lines written early: pending list full
// and, only with --metrics-namespace-label (one series per namespace: cardinality),
//   <p>_<detector>_processes_killed_by_namespace_total{source,namespace}
//   <p>_<detector>_processes_missed_by_namespace_total{source,namespace}
// Thread-safe (prometheus-cpp metrics are); the by-namespace counters are updated from
// the loop thread only.
class EnrichMetrics {
 public:
  EnrichMetrics(std::string prefix, bool namespace_label);
  std::string serialize() const;

  void on_lookup(std::string_view runtime, double seconds);
  void on_failure(std::string_view runtime, std::string_view reason);
  void on_cache(bool hit);
  void on_pending_timeout() { pending_timeouts_->Increment(); }
  void on_pending_overflow() { pending_overflows_->Increment(); }
  // A line was written for a decision: counts kills and missed kills by namespace when enabled.
  void on_written(std::string_view detector, std::string_view source, std::string_view action,
                  std::string_view pod_namespace);

 private:
  prometheus::Counter& series(prometheus::Family<prometheus::Counter>& family, std::map<std::string, std::string> labels);

  std::string prefix_;
  bool namespace_label_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* lookups_;
  prometheus::Family<prometheus::Counter>* failures_;
  prometheus::Family<prometheus::Histogram>* latency_;
  prometheus::Counter* hits_;
  prometheus::Counter* misses_;
  prometheus::Counter* pending_timeouts_;
  prometheus::Counter* pending_overflows_;
  std::mutex mutex_;  // the lazily made series below (worker thread and loop thread)
  std::map<std::string, prometheus::Counter*, std::less<>> counters_;
  std::map<std::string, prometheus::Histogram*, std::less<>> histograms_;
  std::map<std::string, prometheus::Family<prometheus::Counter>*, std::less<>> namespace_families_;
  std::map<const void*, size_t> family_sizes_;
};

struct EnricherConfig {
  std::chrono::milliseconds lookup_timeout{1000};  // all the runtime calls of one lookup
  std::chrono::seconds cache_ttl{300};             // a found container (labels never change)
  std::chrono::seconds failure_ttl{5};             // a failed lookup, before it is retried
  size_t cache_size = 4096;                        // containers remembered (LRU)
  size_t queue_size = 256;                         // lookups waiting for the worker
};

class AsyncEnricher final : public Enricher {
 public:
  // Either client may be null (that runtime is not asked). Starts the worker thread.
  AsyncEnricher(std::unique_ptr<RuntimeClient> cri, std::unique_ptr<RuntimeClient> docker, EnricherConfig config,
                std::shared_ptr<EnrichMetrics> metrics, std::shared_ptr<spdlog::logger> logger);
  ~AsyncEnricher() override;  // stops the worker (waits for a lookup in progress)
  AsyncEnricher(const AsyncEnricher&) = delete;
  AsyncEnricher& operator=(const AsyncEnricher&) = delete;

  std::optional<Enrichment> try_enrich(const ContainerRef& container) override;
  std::optional<Enrichment> recheck(const ContainerRef& container) override;
  int ready_fd() const override { return ready_fd_.get(); }
  void drain() override;

 private:
  struct Key {
    RuntimeClient* client = nullptr;
    std::string id;
  };
  struct Entry {
    LookupResult<ContainerInfo> result;
    std::chrono::steady_clock::time_point expires;
    std::list<std::string>::iterator lru;
  };
  enum class State { kAnswered, kWaiting };

  std::optional<Enrichment> answer(const ContainerRef& container, bool count);
  // The cached answer for a key, or kWaiting after queueing it (or finding it queued).
  State lookup(const Key& key, LookupResult<ContainerInfo>& out);
  static std::string cache_key(const Key& key) { return std::string(key.client->kind()) + ":" + key.id; }
  void run();
  void store(const std::string& key, LookupResult<ContainerInfo> result);

  std::unique_ptr<RuntimeClient> cri_;
  std::unique_ptr<RuntimeClient> docker_;
  EnricherConfig config_;
  std::shared_ptr<EnrichMetrics> metrics_;
  std::shared_ptr<spdlog::logger> logger_;
  UniqueFd ready_fd_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::deque<Key> queue_;
  std::unordered_set<std::string> in_flight_;  // cache keys queued or being looked up
  std::unordered_map<std::string, Entry> cache_;
  std::list<std::string> lru_;  // most recent first
  std::thread worker_;
};

// Writes an answer into a decision line built by decision_line(): `labels`, `image`, and
// "container-lookup-failed: <why>" appended to `reason` ("; "-joined) on failure.
void apply_enrichment(Json& line, const Enrichment& enrichment);

}  // namespace cryptnono::exporter
