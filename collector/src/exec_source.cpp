#include "cryptnono/collector/exec_source.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include <bpf/libbpf.h>

#include "cryptnono/caps.h"
#include "exec.skel.h"

namespace cryptnono::collector {

namespace {

struct LoadError {
  int err = 0;  // positive errno
  std::string message;
};

std::string errno_text(int err) { return std::string(std::strerror(err)); }

// EPERM only: the verifier refuses a program with EACCES, which is not about privilege.
bool permission_error(int err) { return err == EPERM; }

std::string privilege_message(const std::string& what, int err) {
  return what + " was refused (" + errno_text(err) +
         "): the exec probe needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN on kernels before 5.8); effective now: " +
         effective_capabilities();
}

struct SkelDeleter {
  void operator()(exec_bpf* s) const { exec_bpf__destroy(s); }
};
using SkelPtr = std::unique_ptr<exec_bpf, SkelDeleter>;

// Opens, sizes, loads and attaches the one program `mode` names. The skeleton owns the
// link (exec_bpf__destroy detaches it).
tl::expected<SkelPtr, LoadError> load_and_attach(AttachMode mode, const ExecSourceOptions& o) {
  SkelPtr skel(exec_bpf__open());
  if (!skel) return tl::unexpected(LoadError{errno, "opening the exec probe failed: " + errno_text(errno)});
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return tl::unexpected(LoadError{-cpus, "cannot count possible CPUs: " + errno_text(-cpus)});

  skel->rodata->max_args = o.max_args_bytes;
  // One scratch slot and one counter slot per possible CPU: the program indexes both
  // with bpf_get_smp_processor_id(), which is always below the possible-CPU count.
  int rc = bpf_map__set_max_entries(skel->maps.scratch, static_cast<__u32>(cpus));
  if (rc == 0) rc = bpf_map__set_value_size(skel->maps.scratch, static_cast<__u32>(EXEC_SLOT_BYTES(o.max_args_bytes)));
  if (rc == 0) rc = bpf_map__set_max_entries(skel->maps.counters, static_cast<__u32>(cpus));
  if (rc == 0) rc = bpf_map__set_max_entries(skel->maps.events, static_cast<__u32>(o.ringbuf_bytes));
  // Without a kernel ring the map still exists (the program refers to it), one page long,
  // and kernel_ring_on stays 0.
  if (rc == 0)
    rc = bpf_map__set_max_entries(skel->maps.kernel_ring, static_cast<__u32>(o.kernel_ring_bytes != 0
                                                                               ? o.kernel_ring_bytes
                                                                               : static_cast<uint64_t>(sysconf(_SC_PAGESIZE))));
  if (rc == 0) rc = bpf_program__set_autoload(skel->progs.exec_btf, mode == AttachMode::kBtf);
  if (rc == 0) rc = bpf_program__set_autoload(skel->progs.exec_tp, mode == AttachMode::kTracepoint);
  if (rc != 0) return tl::unexpected(LoadError{-rc, "configuring the exec probe failed: " + errno_text(-rc)});

  rc = exec_bpf__load(skel.get());
  if (rc != 0) {
    int err = -rc;
    if (permission_error(err)) return tl::unexpected(LoadError{err, privilege_message("loading the exec probe", err)});
    return tl::unexpected(LoadError{err, std::string("loading the exec probe (") +
                                             (mode == AttachMode::kBtf ? "tp_btf" : "tracepoint") +
                                             ") failed: " + errno_text(err) + " (the libbpf lines above say why)"});
  }

  if (mode == AttachMode::kBtf) {
    skel->links.exec_btf = bpf_program__attach(skel->progs.exec_btf);
    if (skel->links.exec_btf == nullptr) {
      int err = errno;
      if (permission_error(err)) return tl::unexpected(LoadError{err, privilege_message("attaching tp_btf/sched_process_exec", err)});
      return tl::unexpected(LoadError{err, "attaching tp_btf/sched_process_exec failed: " + errno_text(err)});
    }
  } else {
    skel->links.exec_tp = bpf_program__attach(skel->progs.exec_tp);
    if (skel->links.exec_tp == nullptr) {
      int err = errno;
      if (permission_error(err))
        return tl::unexpected(LoadError{err, privilege_message("attaching tracepoint sched/sched_process_exec", err)});
      return tl::unexpected(LoadError{
          err, "attaching tracepoint sched/sched_process_exec failed (" + errno_text(err) +
                   "): the classic tracepoint needs tracefs mounted (mount -t tracefs tracefs /sys/kernel/tracing)"});
    }
  }
  return skel;
}

}  // namespace

Result<std::unique_ptr<ExecSource>> ExecSource::open(const ExecSourceOptions& options,
                                                     std::shared_ptr<spdlog::logger> logger) {
  if (options.max_args_bytes < EXEC_ARGS_MIN || options.max_args_bytes > EXEC_ARGS_CAP)
    return fail("max_args_bytes out of range");
  if (options.ringbuf_bytes == 0 || (options.ringbuf_bytes & (options.ringbuf_bytes - 1)) != 0 ||
      options.ringbuf_bytes > (1ull << 31))
    return fail("ringbuf_bytes must be a power of two");
  const auto page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (options.kernel_ring_bytes != 0 &&
      (options.kernel_ring_bytes < page || (options.kernel_ring_bytes & (options.kernel_ring_bytes - 1)) != 0 ||
       options.kernel_ring_bytes > (1ull << 31)))
    return fail("kernel_ring_bytes must be 0 or a power of two of at least a page");

  std::unique_ptr<ExecSource> self(new ExecSource());
  self->logger_ = std::move(logger);

  SkelPtr skel;
  AttachMode mode = options.attach == AttachMode::kTracepoint ? AttachMode::kTracepoint : AttachMode::kBtf;
  auto loaded = load_and_attach(mode, options);
  if (!loaded && options.attach == AttachMode::kAuto && !permission_error(loaded.error().err)) {
    // Kernels without BTF for tracepoint arguments (or without tp_btf) still have the
    // classic tracepoint.
    self->logger_->warn("tp_btf exec probe unavailable ({}); falling back to the classic tracepoint",
                        loaded.error().message);
    mode = AttachMode::kTracepoint;
    loaded = load_and_attach(mode, options);
  }
  if (!loaded) return fail(loaded.error().message);
  skel = std::move(*loaded);
  self->mode_ = mode;
  self->kernel_ring_bytes_ = options.kernel_ring_bytes;

  // Counters, mapped read-only: readable after every capability is dropped.
  self->counter_slots_ = bpf_map__max_entries(skel->maps.counters);
  size_t bytes = self->counter_slots_ * sizeof(exec_counters);
  self->counters_map_bytes_ = (bytes + page - 1) / page * page;
  if (skel->bss == nullptr) return fail("the exec probe's .bss is not memory-mapped (libbpf too old?)");
  void* m = mmap(nullptr, self->counters_map_bytes_, PROT_READ, MAP_SHARED, bpf_map__fd(skel->maps.counters), 0);
  if (m == MAP_FAILED) return fail("mapping the exec probe counters failed: " + errno_text(errno));
  self->counters_map_ = m;

  // The wake filter (bpf/wake_filter.h), mapped read-write: the collector stamps it and
  // turns it off whenever the kernel ring's holder leaves, after every capability is gone.
  self->wake_filter_map_bytes_ = (sizeof(wake_filter) + page - 1) / page * page;
  m = mmap(nullptr, self->wake_filter_map_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(skel->maps.wake_filter),
           0);
  if (m == MAP_FAILED) return fail("mapping the exec probe's wake filter failed: " + errno_text(errno));
  self->wake_filter_ = static_cast<wake_filter*>(m);
  __atomic_store_n(&self->wake_filter_->magic, WAKE_FILTER_MAGIC, __ATOMIC_RELEASE);

  self->ring_ = ring_buffer__new(bpf_map__fd(skel->maps.events), &ExecSource::on_sample, self.get(), nullptr);
  if (self->ring_ == nullptr) return fail("opening the exec ring buffer failed: " + errno_text(errno));
  // While an enforcer holds the kernel ring, the probe writes each exec there alone: this
  // side follows that ring (read-only) for its own subscribers.
  if (options.kernel_ring_bytes != 0) {
    auto follower = KernelRingFollower::map(bpf_map__fd(skel->maps.kernel_ring), options.kernel_ring_bytes);
    if (!follower) return fail(follower.error().message);
    self->follower_ = std::move(*follower);
  }
  self->skel_ = skel.release();
  return self;
}

ExecSource::~ExecSource() {
  if (ring_ != nullptr) ring_buffer__free(ring_);
  if (counters_map_ != nullptr) munmap(const_cast<void*>(counters_map_), counters_map_bytes_);
  if (wake_filter_ != nullptr) munmap(wake_filter_, wake_filter_map_bytes_);
  if (skel_ != nullptr) exec_bpf__destroy(skel_);
}

int ExecSource::on_sample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<ExecSource*>(ctx);
  ++self->received_;
  auto rec = parse_exec_record(data, size);
  if (!rec) {
    // Only an ABI mismatch between the probe and this binary gets here.
    if (self->malformed_++ == 0) self->logger_->error("malformed exec record ({} bytes); ABI mismatch?", size);
    return 0;
  }
  if (!self->callback_) return 0;
  // Exceptions must not unwind through libbpf's C frames.
  try {
    self->callback_(*rec);
  } catch (const std::exception& e) {
    self->logger_->error("exec event handler failed: {}", e.what());
  } catch (...) {
    self->logger_->error("exec event handler failed");
  }
  return 0;
}

int ExecSource::epoll_fd() const { return ring_buffer__epoll_fd(ring_); }

int ExecSource::kernel_ring_fd() const { return kernel_ring_bytes_ != 0 ? bpf_map__fd(skel_->maps.kernel_ring) : -1; }

void ExecSource::set_kernel_ring_on(bool on) {
  if (kernel_ring_bytes_ == 0) return;
  __atomic_store_n(&skel_->bss->kernel_ring_on, on ? 1u : 0u, __ATOMIC_RELEASE);
}

int ExecSource::wake_filter_fd() const { return bpf_map__fd(skel_->maps.wake_filter); }

void ExecSource::turn_wake_filter_off() {
  const uint32_t seq = wake_filter_write_begin(wake_filter_);
  __atomic_store_n(&wake_filter_->on, 0u, __ATOMIC_RELAXED);
  wake_filter_write_end(wake_filter_, seq);
}

size_t ExecSource::follow_kernel_ring() {
  if (!follower_) return 0;
  return follower_->follow([this](const void* data, size_t size) { (void)on_sample(this, const_cast<void*>(data), size); });
}

Result<size_t> ExecSource::consume() {
  int n = ring_buffer__consume(ring_);
  if (n < 0) return fail("consuming the exec ring buffer failed: " + errno_text(-n));
  return static_cast<size_t>(n) + follow_kernel_ring();
}

Result<size_t> ExecSource::poll(int timeout_ms) {
  int n = ring_buffer__poll(ring_, timeout_ms);
  if (n < 0 && n != -EINTR) return fail("polling the exec ring buffer failed: " + errno_text(-n));
  return static_cast<size_t>(n < 0 ? 0 : n) + follow_kernel_ring();
}

KernelCounters ExecSource::counters() const {
  KernelCounters sum;
  const auto* slots = static_cast<const volatile exec_counters*>(counters_map_);
  for (size_t i = 0; i < counter_slots_; ++i) {
    sum.events += slots[i].events;
    sum.ringbuf_drops += slots[i].ringbuf_drops;
    sum.argv_read_errors += slots[i].argv_read_errors;
    sum.truncated += slots[i].truncated;
    sum.kernel_ring_drops += slots[i].kernel_ring_drops;
    sum.kernel_ring_woken += slots[i].kernel_ring_woken;
  }
  if (follower_) {
    sum.kernel_ring_follow_laps = follower_->laps();
    sum.kernel_ring_follow_skipped_bytes = follower_->skipped_bytes();
  }
  return sum;
}

namespace {

// libbpf's print hook has no context argument: the active LibbpfLog is found here.
const LibbpfLog* g_active_log = nullptr;
libbpf_print_fn_t g_previous_print = nullptr;
LibbpfQuiet* g_quiet = nullptr;

}  // namespace

struct LibbpfQuietAccess {
  static void note(std::string_view line) {
    if (g_quiet == nullptr || !g_quiet->first_warning_.empty()) return;
    if (line.substr(0, 8) == "libbpf: ") line.remove_prefix(8);
    g_quiet->first_warning_ = std::string(line);
  }
};

namespace {

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
  if (g_active_log == nullptr) return 0;
  spdlog::logger& logger = g_active_log->logger();
  const bool quiet_warning = level == LIBBPF_WARN && g_quiet != nullptr;
  spdlog::level::level_enum lvl = level == LIBBPF_WARN && !quiet_warning ? spdlog::level::warn
                                  : level == LIBBPF_INFO                 ? spdlog::level::info
                                                                         : spdlog::level::debug;
  if (!logger.should_log(lvl) && !quiet_warning) return 0;
  char buf[1024];
  int n = vsnprintf(buf, sizeof buf, format, args);
  if (n < 0) return 0;
  size_t len = std::min(static_cast<size_t>(n), sizeof buf - 1);
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) --len;
  if (quiet_warning) LibbpfQuietAccess::note(std::string_view(buf, len));
  if (!logger.should_log(lvl)) return n;
  // libbpf prefixes its own messages with "libbpf: ".
  logger.log(lvl, "{}", std::string_view(buf, len));
  return n;
}

}  // namespace

LibbpfLog::LibbpfLog(std::shared_ptr<spdlog::logger> logger) : logger_(std::move(logger)) {
  g_active_log = this;
  g_previous_print = libbpf_set_print(libbpf_print);
}

LibbpfLog::~LibbpfLog() {
  libbpf_set_print(g_previous_print);
  g_active_log = nullptr;
}

LibbpfQuiet::LibbpfQuiet() : outer_(g_quiet) { g_quiet = this; }
LibbpfQuiet::~LibbpfQuiet() { g_quiet = outer_; }

}  // namespace cryptnono::collector
