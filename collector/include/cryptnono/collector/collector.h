// The collector's event loop: publishes each exec record from the probe and each
// process a sweep finds as an "exec" message, each monero-probe record as "fpu", each
// connect-probe record as "connect", and its counters as "stats". It decides nothing.
// One thread: one epoll over the ring buffers (one per probe), a signalfd, two timerfds
// and the publisher (new subscribers to "exec" get a sweep of every running process).
#pragma once

#include <cstdint>
#include <memory>

#include <capnp/message.h>
#include <kj/array.h>
#include <spdlog/logger.h>

#include "cryptnono/collector/events.h"
#include "cryptnono/collector/exec_source.h"
#include "cryptnono/collector/probe_sources.h"
#include "cryptnono/collector/sweeper.h"
#include "cryptnono/result.h"
#include "cryptnono/transport.h"

namespace cryptnono::collector {

struct CollectorCounters {
  uint64_t events_bpf = 0;   // records published from the probe
  uint64_t events_scan = 0;  // processes published by sweeps
  uint64_t scans = 0;        // sweeps done
  uint64_t truncated = 0;    // published events with argvTruncated set (both sources)
  uint64_t events_fpu = 0;      // records published from the monero probe
  uint64_t events_connect = 0;  // records published from the connect probe
};

// The probes the loop reads. exec is required; a probe that did not load is null.
struct Probes {
  ExecSource& exec;
  FpuSource* fpu = nullptr;
  ConnectSource* connect = nullptr;
};

// The kernel-side counters of every probe, for the stats message (zeros for a probe
// that is not loaded).
struct ProbeCounters {
  KernelCounters exec;
  FpuKernelCounters fpu;
  ConnectKernelCounters connect;
};

struct LoopOptions {
  double stats_interval = 5;  // seconds
  double scan_interval = 60;  // seconds; 0: no periodic sweeps
  // While an enforcer holds the kernel ring, the exec ring is read this often (seconds)
  // instead of on a wake-up per exec: what other subscribers get of exec events (the
  // holder reads them from its ring) comes up to this much later.
  double held_ring_poll = 0.025;
};

class Collector {
 public:
  // Borrows both; they must outlive the collector.
  Collector(Publisher& publisher, const Sweeper& sweeper, std::shared_ptr<spdlog::logger> logger);

  void publish(const ExecRecord& record);
  void publish(const FpuRecord& record);
  void publish(const ConnectRecord& record);
  // Sweeps /proc and publishes what it finds.
  SweepResult sweep();
  void publish_stats(const ProbeCounters& kernel, uint32_t interval_ms);
  static ProbeCounters read_counters(const Probes& probes);

  // Sweeps when a subscriber subscribed to "exec" since the last check (the publisher
  // must track subscriptions).
  void sweep_for_new_subscribers();

  // Until SIGTERM or SIGINT is read from signal_fd (a signalfd for them; the caller
  // blocked them). Publishes a stats message at the start and every stats_interval.
  // The probes' callbacks must already point at publish().
  Result<void> run(const Probes& probes, int signal_fd, const LoopOptions& options);

  const CollectorCounters& counters() const { return counters_; }

 private:
  Publisher& publisher_;
  const Sweeper& sweeper_;
  std::shared_ptr<spdlog::logger> logger_;
  CollectorCounters counters_;
  uint64_t started_boot_ns_;
  // Zeroed first segment reused by every message: a maximum-size probe record fits, so
  // publishing an exec event allocates only the ZeroMQ frame. MallocMessageBuilder
  // re-zeroes what it used when it is destroyed.
  kj::Array<capnp::word> first_segment_;
};

}  // namespace cryptnono::collector
