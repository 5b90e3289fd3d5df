// The exec probe seen from user space: loads bpf/exec.bpf.c through its skeleton,
// attaches it, and hands every ring-buffer record to a callback. RAII over the
// skeleton (maps, programs, links), the ring buffer and the counters mapping.
//
// After open() returns, the source needs no capability: the ring buffer and the
// counters are memory-mapped, and the epoll fd is an ordinary fd. Not thread-safe:
// use it from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "cryptnono/collector/events.h"
#include "wake_filter.h"
#include "cryptnono/kernel_ring.h"
#include "cryptnono/result.h"

struct exec_bpf;
struct ring_buffer;

namespace cryptnono::collector {

enum class AttachMode {
  kAuto,        // tp_btf, else the classic tracepoint
  kBtf,         // tp_btf/sched_process_exec only
  kTracepoint,  // tracepoint/sched/sched_process_exec only (needs tracefs)
};

struct ExecSourceOptions {
  uint32_t max_args_bytes = EXEC_ARGS_DEFAULT;  // EXEC_ARGS_MIN..EXEC_ARGS_CAP
  uint64_t ringbuf_bytes = 16u << 20;           // a power of two
  // The kernel ring an enforcer may hold (direct.h): a power of two, at least a page;
  // 0: none (the probe never writes one).
  uint64_t kernel_ring_bytes = 4u << 20;
  AttachMode attach = AttachMode::kAuto;
};

// Sums over CPUs of the probe's per-CPU counters (struct exec_counters).
struct KernelCounters {
  uint64_t events = 0;
  uint64_t ringbuf_drops = 0;
  uint64_t argv_read_errors = 0;
  uint64_t truncated = 0;
  uint64_t kernel_ring_drops = 0;
  uint64_t kernel_ring_woken = 0;  // execs that woke the kernel ring's holder at once
  // Times the collector fell a whole kernel ring behind while following it, and the bytes
  // it skipped then (execs the enforcer had but the collector's subscribers did not get).
  uint64_t kernel_ring_follow_laps = 0;
  uint64_t kernel_ring_follow_skipped_bytes = 0;
};

class ExecSource {
 public:
  using Callback = std::function<void(const ExecRecord&)>;

  // Opens, sizes (max_args, ring buffer, one scratch and counter slot per possible CPU),
  // loads and attaches. A refusal for lack of privilege reads "... needs CAP_BPF and
  // CAP_PERFMON ...". Libbpf's own messages go to libbpf's print hook (see LibbpfLog).
  static Result<std::unique_ptr<ExecSource>> open(const ExecSourceOptions& options,
                                                  std::shared_ptr<spdlog::logger> logger);
  ~ExecSource();
  ExecSource(const ExecSource&) = delete;
  ExecSource& operator=(const ExecSource&) = delete;

  // Where records go. Set before consume()/poll(); records consumed with no callback
  // set are dropped (and counted as received).
  void set_callback(Callback callback) { callback_ = std::move(callback); }

  // Readable when records are waiting: add it to an epoll set, then call consume().
  int epoll_fd() const;
  // Hands every record waiting now to the callback, without blocking: the exec ring's,
  // then the kernel ring's written since the last call (the ones the probe wrote there
  // alone, see bpf/exec.bpf.c; they wake nothing here). Returns how many.
  Result<size_t> consume();
  // Waits up to timeout_ms for records, then consumes them (tests and tools).
  Result<size_t> poll(int timeout_ms);

  KernelCounters counters() const;

  // The kernel ring (bpf/exec.bpf.c): its map fd (owned here; -1 when there is none) and
  // size, and the switch the probe reads before writing to it, flipped through the mmap
  // of the program's .bss (no capability needed).
  int kernel_ring_fd() const;
  uint64_t kernel_ring_bytes() const { return kernel_ring_bytes_; }
  void set_kernel_ring_on(bool on);
  // The probe's wake filter (bpf/wake_filter.h): its map fd, handed to the kernel ring's
  // holder, which writes it; turned off here when the holder leaves.
  int wake_filter_fd() const;
  void turn_wake_filter_off();
  uint64_t received() const { return received_; }
  uint64_t malformed() const { return malformed_; }
  // "tp_btf" or "tracepoint".
  const char* attach_mode() const { return mode_ == AttachMode::kTracepoint ? "tracepoint" : "tp_btf"; }

 private:
  ExecSource() = default;
  static int on_sample(void* ctx, void* data, size_t size);
  size_t follow_kernel_ring();

  exec_bpf* skel_ = nullptr;
  ring_buffer* ring_ = nullptr;
  std::unique_ptr<KernelRingFollower> follower_;  // while held, the kernel ring has the execs
  const void* counters_map_ = nullptr;  // mmap of the counters array
  size_t counters_map_bytes_ = 0;
  wake_filter* wake_filter_ = nullptr;  // mmap of the wake filter map, read-write
  size_t wake_filter_map_bytes_ = 0;
  size_t counter_slots_ = 0;
  uint64_t kernel_ring_bytes_ = 0;
  AttachMode mode_ = AttachMode::kBtf;
  Callback callback_;
  std::shared_ptr<spdlog::logger> logger_;
  uint64_t received_ = 0;
  uint64_t malformed_ = 0;
};

// Routes libbpf's messages into `logger` (warnings as warn, info as info, debug as
// debug) for the lifetime of this object, then restores libbpf's previous hook.
// libbpf's print hook takes no context argument, so the logger has to sit in a
// file-local pointer; keep one LibbpfLog at a time (main owns it).
class LibbpfLog {
 public:
  explicit LibbpfLog(std::shared_ptr<spdlog::logger> logger);
  ~LibbpfLog();
  LibbpfLog(const LibbpfLog&) = delete;
  LibbpfLog& operator=(const LibbpfLog&) = delete;
  spdlog::logger& logger() const { return *logger_; }

 private:
  std::shared_ptr<spdlog::logger> logger_;
};

// While alive, libbpf's warnings are logged at debug level and the first one is kept:
// an optional probe that cannot load (no such tracepoint, not x86) is one line from its
// caller, quoting that first warning, instead of libbpf's cascade. Nests; one thread.
class LibbpfQuiet {
 public:
  LibbpfQuiet();
  ~LibbpfQuiet();
  LibbpfQuiet(const LibbpfQuiet&) = delete;
  LibbpfQuiet& operator=(const LibbpfQuiet&) = delete;
  // libbpf's first warning since construction (without its "libbpf: " prefix), or "".
  const std::string& first_warning() const { return first_warning_; }

 private:
  friend struct LibbpfQuietAccess;
  LibbpfQuiet* outer_ = nullptr;
  std::string first_warning_;
};

}  // namespace cryptnono::collector
