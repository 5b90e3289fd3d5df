// The two optional probes seen from user space, beside the exec probe (exec_source.h):
//
//   FpuSource      bpf/fpu.bpf.c, the monero probe (x86 only): one record per process
//                  whose saved MXCSR showed a non-default rounding mode `threshold` times.
//   ConnectSource  bpf/connect.bpf.c: one record per TCP socket entering SYN_SENT.
//
// Each loads its skeleton (tp_btf, else the classic tracepoint), attaches, owns its
// ring buffer and the mmap of its per-CPU counters (RAII), and hands records to a
// callback. open() fails with one line saying why (no such tracepoint, kernel too old,
// not x86) and keeps libbpf's own messages at debug level: the caller logs that line
// and goes on without the probe. After open() no capability is needed. Not
// thread-safe: use each from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include <spdlog/logger.h>

#include "cryptnono/collector/events.h"
#include "cryptnono/collector/exec_source.h"
#include "cryptnono/result.h"

struct fpu_bpf;
struct connect_bpf;
struct ring_buffer;

namespace cryptnono::collector {

namespace detail {
template <class Slot>
class MappedCounters;
}

struct FpuSourceOptions {
  uint32_t threshold = FPU_THRESHOLD_DEFAULT;  // FPU_THRESHOLD_MIN..FPU_THRESHOLD_MAX
  uint64_t ringbuf_bytes = 256u << 10;         // a power of two; records are rare
  AttachMode attach = AttachMode::kAuto;
};

// Sums over CPUs of struct fpu_counters.
struct FpuKernelCounters {
  uint64_t nondefault = 0;
  uint64_t published = 0;
  uint64_t ringbuf_drops = 0;
  uint64_t map_errors = 0;
};

class FpuSource {
 public:
  using Callback = std::function<void(const FpuRecord&)>;

  // Whether this build has the probe at all (x86 builds only).
  static bool available();
  static Result<std::unique_ptr<FpuSource>> open(const FpuSourceOptions& options,
                                                 std::shared_ptr<spdlog::logger> logger);
  ~FpuSource();
  FpuSource(const FpuSource&) = delete;
  FpuSource& operator=(const FpuSource&) = delete;

  void set_callback(Callback callback) { callback_ = std::move(callback); }
  int epoll_fd() const;
  Result<size_t> consume();
  Result<size_t> poll(int timeout_ms);

  FpuKernelCounters counters() const;
  uint64_t received() const { return received_; }
  uint64_t malformed() const { return malformed_; }
  const char* attach_mode() const { return mode_ == AttachMode::kTracepoint ? "tracepoint" : "tp_btf"; }
  uint32_t threshold() const { return threshold_; }

 private:
  FpuSource();
  static int on_sample(void* ctx, void* data, size_t size);

  fpu_bpf* skel_ = nullptr;
  ring_buffer* ring_ = nullptr;
  std::unique_ptr<detail::MappedCounters<fpu_counters>> counters_;
  AttachMode mode_ = AttachMode::kBtf;
  uint32_t threshold_ = 0;
  Callback callback_;
  std::shared_ptr<spdlog::logger> logger_;
  uint64_t received_ = 0;
  uint64_t malformed_ = 0;
};

struct ConnectSourceOptions {
  uint64_t ringbuf_bytes = 4u << 20;  // a power of two; ~250 bytes per record
  AttachMode attach = AttachMode::kAuto;
};

// Sums over CPUs of struct connect_counters.
struct ConnectKernelCounters {
  uint64_t events = 0;
  uint64_t ringbuf_drops = 0;
};

class ConnectSource {
 public:
  using Callback = std::function<void(const ConnectRecord&)>;

  static Result<std::unique_ptr<ConnectSource>> open(const ConnectSourceOptions& options,
                                                     std::shared_ptr<spdlog::logger> logger);
  ~ConnectSource();
  ConnectSource(const ConnectSource&) = delete;
  ConnectSource& operator=(const ConnectSource&) = delete;

  void set_callback(Callback callback) { callback_ = std::move(callback); }
  int epoll_fd() const;
  Result<size_t> consume();
  Result<size_t> poll(int timeout_ms);

  ConnectKernelCounters counters() const;
  uint64_t received() const { return received_; }
  uint64_t malformed() const { return malformed_; }
  const char* attach_mode() const { return mode_ == AttachMode::kTracepoint ? "tracepoint" : "tp_btf"; }

 private:
  ConnectSource();
  static int on_sample(void* ctx, void* data, size_t size);

  connect_bpf* skel_ = nullptr;
  ring_buffer* ring_ = nullptr;
  std::unique_ptr<detail::MappedCounters<connect_counters>> counters_;
  AttachMode mode_ = AttachMode::kBtf;
  Callback callback_;
  std::shared_ptr<spdlog::logger> logger_;
  uint64_t received_ = 0;
  uint64_t malformed_ = 0;
};

}  // namespace cryptnono::collector
