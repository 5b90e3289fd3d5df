// The collector's flags: one Config with in-class defaults, filled by CLI11 and
// validated before anything touches the kernel or a socket.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "cryptnono/curve.h"
#include "cryptnono/result.h"
#include "cryptnono/transport.h"
#include "exec_event.h"
#include "fpu_event.h"

namespace cryptnono::collector {

inline constexpr uint64_t kDefaultRingbufBytes = 16u << 20;
inline constexpr uint64_t kMinRingbufBytes = 1u << 20;   // holds a few maximum-size records
inline constexpr uint64_t kMaxRingbufBytes = 1u << 30;
inline constexpr uint64_t kDefaultKernelRingBytes = 4u << 20;
inline constexpr uint64_t kMinKernelRingBytes = 4096;

struct Config {
  std::string bind = "ipc:///run/cryptnono/collector.sock";
  std::string node;                 // empty: $NODE_NAME, else the hostname
  double scan_interval = 60;        // seconds between /proc sweeps; 0 = only the start-up sweep
  double stats_interval = 5;        // seconds between "stats" messages
  uint32_t max_args_bytes = EXEC_ARGS_DEFAULT;
  uint64_t ringbuf_bytes = kDefaultRingbufBytes;
  // The kernel ring handed to one enforcer over the direct socket (direct.h): a power of
  // two between kMinKernelRingBytes and kMaxRingbufBytes, or 0 for none.
  uint64_t kernel_ring_bytes = kDefaultKernelRingBytes;
  // Seconds between binding the socket and the start-up sweep, so subscribers already
  // waiting on the endpoint (ZeroMQ reconnects every 100 ms by default) are connected
  // when it is published: PUB drops what is sent before a subscription arrives. Exec
  // events are not lost meanwhile: they wait in the ring buffer.
  std::string log_level = "info";
  bool check = false;
  // Probes to load: exec (required), fpu (the monero probe, x86 only), connect. An
  // optional probe that cannot load is logged in one line and left out.
  std::vector<std::string> probes = {"exec", "fpu", "connect"};
  // Switches with a non-default MXCSR rounding mode before a process is reported.
  uint32_t fpu_threshold = FPU_THRESHOLD_DEFAULT;
  // More endpoints to publish on next to --bind (e.g. tcp:// for remote forensics
  // subscribers, which needs the CurveZMQ flags).
  std::vector<std::string> also_bind;
  // The direct same-node socket for the enforcers (cryptnono/direct.h): "auto" derives it
  // from an ipc:// --bind (collector.sock -> collector.direct), "off" disables it.
  std::string direct = "auto";
  int send_hwm = Publisher::kDefaultSendHwm;  // messages queued per subscriber
  // Opt-in scheduling of every thread (cryptnono/sched.h): SCHED_FIFO at this priority
  // (0: the default policy) and pinning to these CPUs ("": anywhere).
  int rt_priority = 0;
  std::string cpus;
  CurveOptions curve;

  bool wants(std::string_view probe) const;
};

inline constexpr const char* kKnownProbes[] = {"exec", "fpu", "connect"};

// Registers every flag on `app`, writing into `config`.
void add_options(CLI::App& app, Config& config);

// Range and consistency checks CLI11 cannot express (power of two, bounds from the
// BPF ABI). The error is one line naming the flag.
Result<void> validate(const Config& config);

// One line describing the effective configuration (for --check and the start-up log).
std::string describe(const Config& config);

}  // namespace cryptnono::collector
