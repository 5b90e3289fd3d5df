// cryptnono-collector: loads the exec probe (and, unless --probes leaves them out, the
// monero (fpu) and connect probes), publishes every exec (and every process a /proc
// sweep finds), every process seen with a non-default FPU rounding mode and every TCP
// connect on a ZeroMQ PUB socket, and decides nothing. Capabilities are needed only to
// load and attach: all of them are dropped before the event loop.
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>

#include <CLI/CLI.hpp>
#include <spdlog/fmt/fmt.h>

#include "cryptnono/caps.h"
#include "cryptnono/clock.h"
#include "cryptnono/collector/collector.h"
#include "cryptnono/collector/config.h"
#include "cryptnono/collector/exec_source.h"
#include "cryptnono/collector/fd.h"
#include "cryptnono/collector/probe_sources.h"
#include "cryptnono/collector/sweeper.h"
#include "cryptnono/log.h"
#include "cryptnono/proc.h"
#include "cryptnono/sched.h"
#include "cryptnono/transport.h"

namespace {

constexpr const char* kProg = "cryptnono-collector";

int error_exit(const std::string& message, int code = 1) {
  std::fprintf(stderr, "%s: error: %s\n", kProg, message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace cryptnono;
  using namespace cryptnono::collector;

  // Blocked before any thread exists (ZeroMQ starts I/O threads), so every thread
  // inherits the mask and SIGTERM/SIGINT arrive only through the signalfd.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  Config config;
  CLI::App app{"Publishes every exec on this node (eBPF) and every running process (/proc sweeps)", kProg};
  add_options(app, config);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (auto ok = validate(config); !ok) return error_exit(ok.error().message, 2);
  auto security = config.curve.load();
  if (!security) return error_exit(security.error().message, 2);
  std::vector<std::string> endpoints = config.also_bind;
  endpoints.push_back(config.bind);
  if (auto ok = check_publish_endpoints(endpoints, *security); !ok) return error_exit(ok.error().message, 2);
  if (config.node.empty()) config.node = node_name();
  if (config.check) {
    std::printf("%s: configuration ok: %s\n", kProg, describe(config).c_str());
    return 0;
  }

  auto logger = make_logger("collector", config.log_level);
  LibbpfLog libbpf_log(logger);
  logger->info("starting: {}", describe(config));

  // Checked up front so a missing capability is one clear line rather than a cascade
  // of libbpf warnings. CAP_SYS_ADMIN covers both on every kernel.
  bool can_bpf = has_capability(CAP_BPF) || has_capability(CAP_SYS_ADMIN);
  bool can_perfmon = has_capability(CAP_PERFMON) || has_capability(CAP_SYS_ADMIN);
  if (!can_bpf || !can_perfmon)
    return error_exit(fmt::format("loading the exec probe needs CAP_BPF and CAP_PERFMON (missing: {}{}{}); "
                                  "effective capabilities: {}",
                                  can_bpf ? "" : "CAP_BPF", !can_bpf && !can_perfmon ? ", " : "",
                                  can_perfmon ? "" : "CAP_PERFMON", effective_capabilities()),
                      3);

  UniqueFd signal_fd(signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd.valid()) return error_exit(std::string("signalfd: ") + std::strerror(errno));

  ExecSourceOptions source_options;
  source_options.max_args_bytes = config.max_args_bytes;
  source_options.ringbuf_bytes = config.ringbuf_bytes;
  // No direct socket, no one to hand the kernel ring to.
  source_options.kernel_ring_bytes = config.direct == "off" ? 0 : config.kernel_ring_bytes;
  auto source = ExecSource::open(source_options, logger);
  if (!source) return error_exit(source.error().message, 3);
  logger->info("exec probe attached ({}), max_args_bytes={} ringbuf_bytes={}", (*source)->attach_mode(),
               config.max_args_bytes, config.ringbuf_bytes);

  // The optional probes load now too: nothing can be loaded once the capabilities are
  // gone. A probe that cannot load (not x86, no such tracepoint, an old kernel) costs
  // one line, and the collector goes on without it.
  std::unique_ptr<FpuSource> fpu;
  if (config.wants("fpu")) {
    FpuSourceOptions fpu_options;
    fpu_options.threshold = config.fpu_threshold;
    if (auto opened = FpuSource::open(fpu_options, logger); opened) {
      fpu = std::move(*opened);
      logger->info("monero probe attached ({}), threshold={}", fpu->attach_mode(), fpu->threshold());
    } else {
      logger->warn("monero probe not loaded: {}", opened.error().message);
    }
  }
  std::unique_ptr<ConnectSource> connect;
  if (config.wants("connect")) {
    if (auto opened = ConnectSource::open(ConnectSourceOptions{}, logger); opened) {
      connect = std::move(*opened);
      logger->info("connect probe attached ({})", connect->attach_mode());
    } else {
      logger->warn("connect probe not loaded: {}", opened.error().message);
    }
  }

  // Opt-in scheduling (--rt-priority, --cpus), after the BPF load (the verifier's work
  // stays in the normal class) and while CAP_SYS_NICE is still effective. Every thread
  // that exists gets it, and the ZeroMQ I/O threads started below inherit it from this
  // one; the drop that follows takes CAP_SYS_NICE away with the rest.
  if (config.rt_priority > 0 || !config.cpus.empty()) {
    if (auto ok = apply_scheduling(config.rt_priority, config.cpus); !ok) return error_exit(ok.error().message, 3);
    logger->info("scheduling: {} (every thread)", describe_scheduling());
  }

  // Every capability goes before the ZeroMQ context exists: capabilities are per
  // thread, and ZeroMQ's I/O threads would otherwise keep the full set.
  logger->info("capabilities before drop: {}", effective_capabilities());
  if (auto dropped = drop_capabilities({}); !dropped) return error_exit(dropped.error().message);
  logger->info("capabilities after drop: {} (no_new_privs set)", effective_capabilities());

  // Bound only once the probe is attached: a process started from now on is in the ring
  // buffer, one started before is in /proc, and every subscriber to "exec" gets a sweep
  // of /proc when its subscription arrives (ZeroMQ drops what is published before that).
  zmq::context_t zmq_context(1);
  auto publisher = Publisher::bind(zmq_context, config.bind, config.node, "collector", "collector", config.send_hwm,
                                   &*security);
  if (!publisher) return error_exit(publisher.error().message);
  for (const auto& ep : config.also_bind) {
    auto bound = (*publisher)->add_endpoint(ep, &*security);
    if (!bound) return error_exit(bound.error().message);
    logger->info("also publishing on {}{}", *bound, ep.rfind("tcp://", 0) == 0 ? " (CurveZMQ)" : "");
  }
  if (auto tracked = (*publisher)->track_subscriptions(); !tracked) return error_exit(tracked.error().message);
  logger->info("publishing on {} as {}", config.bind, (*publisher)->id());
  std::string direct_path = config.direct == "auto" ? direct_path_for(config.bind) : config.direct;
  if (config.direct != "off" && !direct_path.empty()) {
    if (auto ok = (*publisher)->add_direct(direct_path); !ok) return error_exit(ok.error().message);
    logger->info("direct path for the enforcers on {}", direct_path);
    if ((*source)->kernel_ring_fd() >= 0) {
      ExecSource* exec = source->get();
      auto offered = (*publisher)->offer_kernel_ring(std::string(topic::kExec), exec->kernel_ring_fd(),
                                                     exec->kernel_ring_bytes(), [exec, logger](bool held) {
                                                       exec->set_kernel_ring_on(held);
                                                       // The next holder starts with every exec waking it.
                                                       if (!held) exec->turn_wake_filter_off();
                                                       logger->info("{}", held ? "kernel ring taken by an enforcer: execs go to "
                                                                                 "it straight from the probe"
                                                                               : "kernel ring released");
                                                     },
                                                     exec->wake_filter_fd());
      if (!offered) return error_exit(offered.error().message);
      logger->info("kernel ring of {} bytes offered on the direct path", exec->kernel_ring_bytes());
    }
  }

  ProcReader proc("/proc");
  SweepOptions sweep_options;
  sweep_options.self = getpid();
  sweep_options.ticks_per_second = clock_ticks_per_second();
  Sweeper sweeper(proc, sweep_options);
  Collector collector(**publisher, sweeper, logger);
  (*source)->set_callback([&collector](const ExecRecord& record) { collector.publish(record); });
  if (fpu) fpu->set_callback([&collector](const FpuRecord& record) { collector.publish(record); });
  if (connect) connect->set_callback([&collector](const ConnectRecord& record) { collector.publish(record); });

  LoopOptions loop;
  loop.stats_interval = config.stats_interval;
  loop.scan_interval = config.scan_interval;
  Probes probes{**source, fpu.get(), connect.get()};
  if (auto ran = collector.run(probes, signal_fd.get(), loop); !ran) return error_exit(ran.error().message);
  const auto& c = collector.counters();
  auto k = Collector::read_counters(probes);
  logger->info(
      "stopped: events_bpf={} events_scan={} scans={} kernel_ringbuf_drops={} events_fpu={} "
      "kernel_fpu_ringbuf_drops={} events_connect={} kernel_connect_ringbuf_drops={} send_drops={} "
      "direct_sent={} direct_drops={} kernel_ring_drops={} kernel_ring_grants={} kernel_ring_follow_laps={}",
      c.events_bpf, c.events_scan, c.scans, k.exec.ringbuf_drops, c.events_fpu, k.fpu.ringbuf_drops,
      c.events_connect, k.connect.ringbuf_drops, (*publisher)->dropped(),
      (*publisher)->direct() ? (*publisher)->direct()->sent() : 0,
      (*publisher)->direct() ? (*publisher)->direct()->dropped() : 0, k.exec.kernel_ring_drops,
      (*publisher)->direct() ? (*publisher)->direct()->kernel_ring_grants() : 0, k.exec.kernel_ring_follow_laps);
  return 0;
}
