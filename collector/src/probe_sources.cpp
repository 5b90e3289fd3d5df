#include "cryptnono/collector/probe_sources.h"

#include <cerrno>
#include <string>

#include <bpf/libbpf.h>
#include <spdlog/fmt/fmt.h>

#include "connect.skel.h"
#include "probe_util.h"
#ifdef CRYPTNONO_HAVE_FPU_PROBE
#include "fpu.skel.h"
#endif

namespace cryptnono::collector {

using detail::AttemptError;
using detail::errno_text;
using detail::MappedCounters;

namespace {

bool valid_ringbuf_bytes(uint64_t n) { return n >= 4096 && (n & (n - 1)) == 0 && n <= (1ull << 30); }

// " (libbpf: <first warning>)" when libbpf said something, else "".
std::string libbpf_reason(const LibbpfQuiet& quiet) {
  return quiet.first_warning().empty() ? "" : " (" + quiet.first_warning() + ")";
}

// The part of loading that is the same for both probes, for one program: `Ops` knows the
// skeleton's functions and which programs exist.
template <class Skel, class Ops>
tl::expected<Skel*, AttemptError> load_one(AttachMode mode, const char* what, Ops ops) {
  LibbpfQuiet quiet;
  Skel* skel = ops.open();
  if (skel == nullptr) return tl::unexpected(AttemptError{errno, std::string("opening failed: ") + errno_text(errno)});
  auto fail_with = [&](int err, const std::string& step) {
    ops.destroy(skel);
    return tl::unexpected(AttemptError{err, what + std::string(": ") + step + ": " + errno_text(err) + libbpf_reason(quiet)});
  };
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return fail_with(-cpus, "counting possible CPUs");
  int rc = ops.configure(skel, static_cast<__u32>(cpus), mode);
  if (rc != 0) return fail_with(-rc, "configuring");
  rc = ops.load(skel);
  if (rc != 0) return fail_with(-rc, "loading");
  if (!ops.attach(skel, mode)) {
    int err = errno;
    if (mode == AttachMode::kTracepoint)
      return fail_with(err, "attaching (the classic tracepoint needs tracefs at /sys/kernel/tracing)");
    return fail_with(err, "attaching");
  }
  return skel;
}

// tp_btf, then (kAuto) the classic tracepoint; both reasons when neither works.
template <class Skel, class Ops>
tl::expected<std::pair<Skel*, AttachMode>, std::string> load_probe(AttachMode wanted, const char* btf_name,
                                                                  const char* tp_name, Ops ops) {
  std::string why;
  if (wanted != AttachMode::kTracepoint) {
    auto got = load_one<Skel>(AttachMode::kBtf, btf_name, ops);
    if (got) return std::pair{*got, AttachMode::kBtf};
    why = got.error().message;
    if (wanted == AttachMode::kBtf) return tl::unexpected(why);
  }
  auto got = load_one<Skel>(AttachMode::kTracepoint, tp_name, ops);
  if (got) return std::pair{*got, AttachMode::kTracepoint};
  return tl::unexpected(why.empty() ? got.error().message : why + "; " + got.error().message);
}

// Hands one sample to the callback; exceptions must not unwind through libbpf.
template <class Record, class Callback>
void deliver(const std::optional<Record>& rec, const Callback& callback, spdlog::logger& logger, uint64_t& malformed,
             size_t size, const char* what) {
  if (!rec) {
    if (malformed++ == 0) logger.error("malformed {} record ({} bytes); ABI mismatch?", what, size);
    return;
  }
  if (!callback) return;
  try {
    callback(*rec);
  } catch (const std::exception& e) {
    logger.error("{} event handler failed: {}", what, e.what());
  } catch (...) {
    logger.error("{} event handler failed", what);
  }
}

Result<size_t> consume_ring(ring_buffer* ring, const char* what) {
  int n = ring_buffer__consume(ring);
  if (n < 0) return fail(fmt::format("consuming the {} ring buffer failed: {}", what, errno_text(-n)));
  return static_cast<size_t>(n);
}

Result<size_t> poll_ring(ring_buffer* ring, int timeout_ms, const char* what) {
  int n = ring_buffer__poll(ring, timeout_ms);
  if (n < 0 && n != -EINTR) return fail(fmt::format("polling the {} ring buffer failed: {}", what, errno_text(-n)));
  return static_cast<size_t>(n < 0 ? 0 : n);
}

}  // namespace

// ---- FpuSource ------------------------------------------------------------------------

FpuSource::FpuSource() = default;

bool FpuSource::available() {
#ifdef CRYPTNONO_HAVE_FPU_PROBE
  return true;
#else
  return false;
#endif
}

#ifdef CRYPTNONO_HAVE_FPU_PROBE
namespace {
struct FpuOps {
  const FpuSourceOptions& o;
  fpu_bpf* open() const { return fpu_bpf__open(); }
  void destroy(fpu_bpf* s) const { fpu_bpf__destroy(s); }
  int configure(fpu_bpf* s, __u32 cpus, AttachMode mode) const {
    s->rodata->threshold = o.threshold;
    // One counter slot per possible CPU, indexed by bpf_get_smp_processor_id().
    int rc = bpf_map__set_max_entries(s->maps.counters, cpus);
    if (rc == 0) rc = bpf_map__set_max_entries(s->maps.events, static_cast<__u32>(o.ringbuf_bytes));
    if (rc == 0) rc = bpf_program__set_autoload(s->progs.fpu_btf, mode == AttachMode::kBtf);
    if (rc == 0) rc = bpf_program__set_autoload(s->progs.fpu_tp, mode == AttachMode::kTracepoint);
    return rc;
  }
  int load(fpu_bpf* s) const { return fpu_bpf__load(s); }
  bool attach(fpu_bpf* s, AttachMode mode) const {
    if (mode == AttachMode::kBtf) return (s->links.fpu_btf = bpf_program__attach(s->progs.fpu_btf)) != nullptr;
    return (s->links.fpu_tp = bpf_program__attach(s->progs.fpu_tp)) != nullptr;
  }
};
}  // namespace
#endif

Result<std::unique_ptr<FpuSource>> FpuSource::open(const FpuSourceOptions& options,
                                                   std::shared_ptr<spdlog::logger> logger) {
#ifndef CRYPTNONO_HAVE_FPU_PROBE
  (void)options;
  (void)logger;
  return fail("this build is not for x86: the probe reads x86 FPU state (MXCSR)");
#else
  if (options.threshold < FPU_THRESHOLD_MIN || options.threshold > FPU_THRESHOLD_MAX)
    return fail(fmt::format("threshold must be between {} and {}", FPU_THRESHOLD_MIN, FPU_THRESHOLD_MAX));
  if (!valid_ringbuf_bytes(options.ringbuf_bytes)) return fail("ringbuf_bytes must be a power of two");
  auto loaded = load_probe<fpu_bpf>(options.attach, "tp_btf/x86_fpu_regs_deactivated",
                                    "tracepoint x86_fpu/x86_fpu_regs_deactivated", FpuOps{options});
  if (!loaded) return fail(loaded.error());

  std::unique_ptr<FpuSource> self(new FpuSource());
  self->skel_ = loaded->first;
  self->mode_ = loaded->second;
  self->threshold_ = options.threshold;
  self->logger_ = std::move(logger);
  self->counters_ = std::make_unique<MappedCounters<fpu_counters>>();
  if (auto ok = self->counters_->map(self->skel_->maps.counters, "monero probe"); !ok) return tl::unexpected(ok.error());
  self->ring_ = ring_buffer__new(bpf_map__fd(self->skel_->maps.events), &FpuSource::on_sample, self.get(), nullptr);
  if (self->ring_ == nullptr) return fail("opening the monero probe's ring buffer failed: " + errno_text(errno));
  return self;
#endif
}

FpuSource::~FpuSource() {
  if (ring_ != nullptr) ring_buffer__free(ring_);
  counters_.reset();  // unmapped before the map goes away with the skeleton
#ifdef CRYPTNONO_HAVE_FPU_PROBE
  if (skel_ != nullptr) fpu_bpf__destroy(skel_);
#endif
}

int FpuSource::on_sample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<FpuSource*>(ctx);
  ++self->received_;
  deliver(parse_fpu_record(data, size), self->callback_, *self->logger_, self->malformed_, size, "fpu");
  return 0;
}

int FpuSource::epoll_fd() const { return ring_buffer__epoll_fd(ring_); }
Result<size_t> FpuSource::consume() { return consume_ring(ring_, "fpu"); }
Result<size_t> FpuSource::poll(int timeout_ms) { return poll_ring(ring_, timeout_ms, "fpu"); }

FpuKernelCounters FpuSource::counters() const {
  FpuKernelCounters sum;
  for (size_t i = 0; i < counters_->slots(); ++i) {
    const auto& slot = (*counters_)[i];
    sum.nondefault += slot.nondefault;
    sum.published += slot.published;
    sum.ringbuf_drops += slot.ringbuf_drops;
    sum.map_errors += slot.map_errors;
  }
  return sum;
}

// ---- ConnectSource --------------------------------------------------------------------

ConnectSource::ConnectSource() = default;

namespace {
struct ConnectOps {
  const ConnectSourceOptions& o;
  connect_bpf* open() const { return connect_bpf__open(); }
  void destroy(connect_bpf* s) const { connect_bpf__destroy(s); }
  int configure(connect_bpf* s, __u32 cpus, AttachMode mode) const {
    int rc = bpf_map__set_max_entries(s->maps.counters, cpus);
    if (rc == 0) rc = bpf_map__set_max_entries(s->maps.events, static_cast<__u32>(o.ringbuf_bytes));
    if (rc == 0) rc = bpf_program__set_autoload(s->progs.connect_btf, mode == AttachMode::kBtf);
    if (rc == 0) rc = bpf_program__set_autoload(s->progs.connect_tp, mode == AttachMode::kTracepoint);
    return rc;
  }
  int load(connect_bpf* s) const { return connect_bpf__load(s); }
  bool attach(connect_bpf* s, AttachMode mode) const {
    if (mode == AttachMode::kBtf) return (s->links.connect_btf = bpf_program__attach(s->progs.connect_btf)) != nullptr;
    return (s->links.connect_tp = bpf_program__attach(s->progs.connect_tp)) != nullptr;
  }
};
}  // namespace

Result<std::unique_ptr<ConnectSource>> ConnectSource::open(const ConnectSourceOptions& options,
                                                           std::shared_ptr<spdlog::logger> logger) {
  if (!valid_ringbuf_bytes(options.ringbuf_bytes)) return fail("ringbuf_bytes must be a power of two");
  auto loaded = load_probe<connect_bpf>(options.attach, "tp_btf/inet_sock_set_state",
                                        "tracepoint sock/inet_sock_set_state", ConnectOps{options});
  if (!loaded) return fail(loaded.error());

  std::unique_ptr<ConnectSource> self(new ConnectSource());
  self->skel_ = loaded->first;
  self->mode_ = loaded->second;
  self->logger_ = std::move(logger);
  self->counters_ = std::make_unique<MappedCounters<connect_counters>>();
  if (auto ok = self->counters_->map(self->skel_->maps.counters, "connect probe"); !ok) return tl::unexpected(ok.error());
  self->ring_ =
      ring_buffer__new(bpf_map__fd(self->skel_->maps.events), &ConnectSource::on_sample, self.get(), nullptr);
  if (self->ring_ == nullptr) return fail("opening the connect probe's ring buffer failed: " + errno_text(errno));
  return self;
}

ConnectSource::~ConnectSource() {
  if (ring_ != nullptr) ring_buffer__free(ring_);
  counters_.reset();
  if (skel_ != nullptr) connect_bpf__destroy(skel_);
}

int ConnectSource::on_sample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<ConnectSource*>(ctx);
  ++self->received_;
  deliver(parse_connect_record(data, size), self->callback_, *self->logger_, self->malformed_, size, "connect");
  return 0;
}

int ConnectSource::epoll_fd() const { return ring_buffer__epoll_fd(ring_); }
Result<size_t> ConnectSource::consume() { return consume_ring(ring_, "connect"); }
Result<size_t> ConnectSource::poll(int timeout_ms) { return poll_ring(ring_, timeout_ms, "connect"); }

ConnectKernelCounters ConnectSource::counters() const {
  ConnectKernelCounters sum;
  for (size_t i = 0; i < counters_->slots(); ++i) {
    const auto& slot = (*counters_)[i];
    sum.events += slot.events;
    sum.ringbuf_drops += slot.ringbuf_drops;
  }
  return sum;
}

}  // namespace cryptnono::collector
