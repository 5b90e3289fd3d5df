#include "cryptnono/collector/config.h"

#include "cryptnono/curve_cli.h"
#include "cryptnono/sched.h"

#include <cmath>

#include <spdlog/fmt/fmt.h>

namespace cryptnono::collector {

void add_options(CLI::App& app, Config& c) {
  app.add_option("--bind", c.bind, "ZeroMQ endpoint to publish on (ipc:// or tcp://)")->capture_default_str();
  app.add_option("--node", c.node, "node name stamped on messages (default: $NODE_NAME, else the hostname)");
  app.add_option("--scan-interval", c.scan_interval, "seconds between /proc sweeps (0: only at start-up)")
      ->capture_default_str();
  app.add_option("--stats-interval", c.stats_interval, "seconds between stats messages")->capture_default_str();
  app.add_option("--max-args-bytes", c.max_args_bytes,
                 fmt::format("argv bytes copied per exec event ({}..{}); longer argv is flagged truncated",
                             EXEC_ARGS_MIN, EXEC_ARGS_CAP))
      ->capture_default_str();
  app.add_option("--direct", c.direct,
                 "direct socket for the enforcers (a low-latency lane next to ZeroMQ): a path, 'auto' (next to an "
                 "ipc:// --bind: collector.sock -> collector.direct) or 'off'")
      ->capture_default_str();
  app.add_option("--ringbuf-bytes", c.ringbuf_bytes, "BPF ring buffer size (a power of two)")->capture_default_str();
  app.add_option("--kernel-ring-bytes", c.kernel_ring_bytes,
                 "size of the kernel ring one enforcer may take over the direct socket, to read execs straight from "
                 "the probe (a power of two; 0: none)")
      ->capture_default_str();
  app.add_option("--probes", c.probes, "comma-separated probes to load: exec (required), fpu (monero, x86 only), connect")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--fpu-threshold", c.fpu_threshold,
                 fmt::format("context switches with a non-default FPU rounding mode before a process is reported "
                             "on the fpu topic ({}..{})",
                             FPU_THRESHOLD_MIN, FPU_THRESHOLD_MAX))
      ->capture_default_str();
  add_publisher_options(app, c.also_bind, c.send_hwm);
  add_curve_options(app, c.curve);
  add_scheduling_options(app, c.rt_priority, c.cpus);
  app.add_option("--log-level", c.log_level, "trace, debug, info, warn, error")->capture_default_str();
  app.add_flag("--check", c.check, "validate the flags, print one line and exit");
}

Result<void> validate(const Config& c) {
  if (c.bind.empty()) return fail("--bind: empty endpoint");
  if (c.bind.find("://") == std::string::npos) return fail("--bind: not a ZeroMQ endpoint (ipc://... or tcp://...): " + c.bind);
  for (const auto& ep : c.also_bind)
    if (ep.find("://") == std::string::npos) return fail("--also-bind: not a ZeroMQ endpoint: " + ep);
  if (!std::isfinite(c.scan_interval) || c.scan_interval < 0 || c.scan_interval > 86400)
    return fail("--scan-interval: must be between 0 and 86400 seconds");
  if (!std::isfinite(c.stats_interval) || c.stats_interval < 0.01 || c.stats_interval > 86400)
    return fail("--stats-interval: must be between 0.01 and 86400 seconds");
  if (c.max_args_bytes < EXEC_ARGS_MIN || c.max_args_bytes > EXEC_ARGS_CAP)
    return fail(fmt::format("--max-args-bytes: must be between {} and {} (the probe's compile-time capacity)",
                            EXEC_ARGS_MIN, EXEC_ARGS_CAP));
  if (c.ringbuf_bytes < kMinRingbufBytes || c.ringbuf_bytes > kMaxRingbufBytes ||
      (c.ringbuf_bytes & (c.ringbuf_bytes - 1)) != 0)
    return fail(fmt::format("--ringbuf-bytes: must be a power of two between {} and {}", kMinRingbufBytes,
                            kMaxRingbufBytes));
  if (c.kernel_ring_bytes != 0 && (c.kernel_ring_bytes < kMinKernelRingBytes || c.kernel_ring_bytes > kMaxRingbufBytes ||
                                   (c.kernel_ring_bytes & (c.kernel_ring_bytes - 1)) != 0))
    return fail(fmt::format("--kernel-ring-bytes: must be 0 or a power of two between {} and {}", kMinKernelRingBytes,
                            kMaxRingbufBytes));
  for (size_t i = 0; i < c.probes.size(); ++i) {
    bool known_probe = false;
    for (const char* p : kKnownProbes) known_probe = known_probe || c.probes[i] == p;
    if (!known_probe) return fail("--probes: unknown probe '" + c.probes[i] + "' (known: exec, fpu, connect)");
    for (size_t j = 0; j < i; ++j)
      if (c.probes[j] == c.probes[i]) return fail("--probes: '" + c.probes[i] + "' given twice");
  }
  if (!c.wants("exec")) return fail("--probes: exec is required (the enforcer's execwhacker needs it)");
  if (c.fpu_threshold < FPU_THRESHOLD_MIN || c.fpu_threshold > FPU_THRESHOLD_MAX)
    return fail(fmt::format("--fpu-threshold: must be between {} and {}", FPU_THRESHOLD_MIN, FPU_THRESHOLD_MAX));
  static constexpr const char* kLevels[] = {"trace", "debug", "info", "warn", "warning", "error", "critical", "off"};
  bool known = false;
  for (const char* l : kLevels) known = known || c.log_level == l;
  if (!known) return fail("--log-level: unknown level " + c.log_level);
  if (auto ok = validate_scheduling(c.rt_priority, c.cpus); !ok) return ok;
  return {};
}

bool Config::wants(std::string_view probe) const {
  for (const auto& p : probes)
    if (p == probe) return true;
  return false;
}

std::string describe(const Config& c) {
  std::string probes;
  for (const auto& p : c.probes) probes += (probes.empty() ? "" : ",") + p;
  std::string out = fmt::format(
      "bind={} node={} scan_interval={}s stats_interval={}s max_args_bytes={} ringbuf_bytes={} kernel_ring_bytes={} "
      "probes={} fpu_threshold={}",
      c.bind, c.node.empty() ? "(auto)" : c.node, c.scan_interval, c.stats_interval, c.max_args_bytes,
      c.ringbuf_bytes, c.kernel_ring_bytes, probes, c.fpu_threshold);
  if (c.rt_priority > 0) out += fmt::format(" rt_priority={}", c.rt_priority);
  if (!c.cpus.empty()) out += " cpus=" + c.cpus;
  return out;
}

}  // namespace cryptnono::collector
