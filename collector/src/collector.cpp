#include "cryptnono/collector/collector.h"

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>

#include "cryptnono/clock.h"
#include "cryptnono/collector/fd.h"

namespace cryptnono::collector {

namespace {

// A maximum-size record plus room for the envelope's text fields (node, publisher id).
constexpr size_t kFirstSegmentWords = (sizeof(exec_scratch) + 16 * 1024) / sizeof(capnp::word);

enum Source : uint32_t { kRing, kFpuRing, kConnectRing, kSignal, kStatsTimer, kSweepTimer, kSubscriptions, kRingPoll };

// Fires every `seconds`, the first time `seconds` from now.
itimerspec every(double seconds) {
  auto ns = static_cast<long long>(std::llround(seconds * 1e9));
  itimerspec spec{};
  spec.it_interval.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  spec.it_interval.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  spec.it_value = spec.it_interval;
  return spec;
}

Result<UniqueFd> periodic_timer(double seconds) {
  UniqueFd fd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!fd.valid()) return fail(std::string("timerfd_create: ") + std::strerror(errno));
  const itimerspec spec = every(seconds);
  if (timerfd_settime(fd.get(), 0, &spec, nullptr) != 0) return fail(std::string("timerfd_settime: ") + std::strerror(errno));
  return fd;
}

Result<void> watch(int epfd, int fd, Source source) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = source;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) return fail(std::string("epoll_ctl: ") + std::strerror(errno));
  return {};
}

// Reads a timerfd's expiration count so it stops being readable.
void drain_timer(int fd) {
  uint64_t expirations = 0;
  [[maybe_unused]] ssize_t n = ::read(fd, &expirations, sizeof expirations);
}

}  // namespace

Collector::Collector(Publisher& publisher, const Sweeper& sweeper, std::shared_ptr<spdlog::logger> logger)
    : publisher_(publisher),
      sweeper_(sweeper),
      logger_(std::move(logger)),
      started_boot_ns_(boot_ns()),
      first_segment_(kj::heapArray<capnp::word>(kFirstSegmentWords)) {
  std::memset(first_segment_.begin(), 0, first_segment_.size() * sizeof(capnp::word));
}

void Collector::publish(const ExecRecord& record) {
  capnp::MallocMessageBuilder message(first_segment_.asPtr());
  auto envelope = publisher_.begin(message, topic::kExec);
  fill_exec_event(envelope.getBody().initExec(), record);
  // The kernel ring's holder already has it: no direct copy for that one.
  publisher_.send(topic::kExec, message, record.in_kernel_ring());  // a full queue is counted as a send drop
  ++counters_.events_bpf;
  if (record.truncated()) ++counters_.truncated;
}

void Collector::publish(const FpuRecord& record) {
  capnp::MallocMessageBuilder message(first_segment_.asPtr());
  auto envelope = publisher_.begin(message, topic::kFpu);
  fill_fpu_event(envelope.getBody().initFpu(), record);
  publisher_.send(topic::kFpu, message);
  ++counters_.events_fpu;
}

void Collector::publish(const ConnectRecord& record) {
  capnp::MallocMessageBuilder message(first_segment_.asPtr());
  auto envelope = publisher_.begin(message, topic::kConnect);
  fill_connect_event(envelope.getBody().initConnect(), record);
  publisher_.send(topic::kConnect, message);
  ++counters_.events_connect;
}

SweepResult Collector::sweep() {
  auto result = sweeper_.sweep([this](const ScannedProcess& p) {
    capnp::MallocMessageBuilder message(first_segment_.asPtr());
    auto envelope = publisher_.begin(message, topic::kExec);
    fill_exec_event(envelope.getBody().initExec(), p);
    publisher_.send(topic::kExec, message);
    ++counters_.events_scan;
    if (p.argv_truncated) ++counters_.truncated;
  });
  ++counters_.scans;
  logger_->debug("sweep: {} processes, {} kernel threads skipped, {} vanished", result.reported,
                 result.kernel_threads, result.vanished);
  return result;
}

ProbeCounters Collector::read_counters(const Probes& probes) {
  ProbeCounters k;
  k.exec = probes.exec.counters();
  if (probes.fpu != nullptr) k.fpu = probes.fpu->counters();
  if (probes.connect != nullptr) k.connect = probes.connect->counters();
  return k;
}

void Collector::publish_stats(const ProbeCounters& kernel, uint32_t interval_ms) {
  // Names are part of the contract (the exporter turns each into
  // cryptnono_collector_<name>_total). The exec probe's keep their original names.
  const DirectServer* direct = publisher_.direct();
  const std::array<std::pair<const char*, uint64_t>, 19> values = {{
      {"events_bpf", counters_.events_bpf},
      {"events_scan", counters_.events_scan},
      {"scans", counters_.scans},
      {"kernel_ringbuf_drops", kernel.exec.ringbuf_drops},
      {"kernel_argv_read_errors", kernel.exec.argv_read_errors},
      {"truncated", counters_.truncated},
      {"events_fpu", counters_.events_fpu},
      {"kernel_fpu_nondefault_switches", kernel.fpu.nondefault},
      {"kernel_fpu_ringbuf_drops", kernel.fpu.ringbuf_drops},
      {"kernel_fpu_map_errors", kernel.fpu.map_errors},
      {"events_connect", counters_.events_connect},
      {"kernel_connect_ringbuf_drops", kernel.connect.ringbuf_drops},
      // This message's own drop (if any) shows in the next one.
      {"send_drops", publisher_.dropped()},
      // The direct path's datagrams (to the enforcers), and those a full socket buffer
      // refused: those still reached the enforcer over ZeroMQ, only later.
      {"direct_sent", direct != nullptr ? direct->sent() : 0},
      {"direct_drops", direct != nullptr ? direct->dropped() : 0},
      // Execs the kernel ring (an enforcer's) had no room for: they went the usual way.
      {"kernel_ring_drops", kernel.exec.kernel_ring_drops},
      {"kernel_ring_grants", direct != nullptr ? direct->kernel_ring_grants() : 0},
      // Times this side fell a whole kernel ring behind while following it (the execs it
      // skipped reached the ring's holder, not this stream's other subscribers).
      {"kernel_ring_follow_laps", kernel.exec.kernel_ring_follow_laps},
      // Execs the probe woke the kernel ring's holder for at once (its wake filter did not
      // rule them out, or it had none); the others waited for the holder's batch timer.
      {"kernel_ring_woken", kernel.exec.kernel_ring_woken},
  }};
  capnp::MallocMessageBuilder message(first_segment_.asPtr());
  auto stats = publisher_.begin(message, topic::kStats).getBody().initStats();
  stats.setUptimeNs(boot_ns() - started_boot_ns_);
  stats.setIntervalMs(interval_ms);
  auto list = stats.initCounters(static_cast<unsigned int>(values.size()));
  for (size_t i = 0; i < values.size(); ++i) {
    list[static_cast<unsigned int>(i)].setName(values[i].first);
    list[static_cast<unsigned int>(i)].setValue(values[i].second);
  }
  publisher_.send(topic::kStats, message);
}

Result<void> Collector::run(const Probes& probes, int signal_fd, const LoopOptions& options) {
  ExecSource& source = probes.exec;
  UniqueFd epfd(epoll_create1(EPOLL_CLOEXEC));
  if (!epfd.valid()) return fail(std::string("epoll_create1: ") + std::strerror(errno));
  auto stats_timer = periodic_timer(options.stats_interval);
  if (!stats_timer) return tl::unexpected(stats_timer.error());
  UniqueFd sweep_timer;
  if (options.scan_interval > 0) {
    auto t = periodic_timer(options.scan_interval);
    if (!t) return tl::unexpected(t.error());
    sweep_timer = std::move(*t);
  }
  // Each probe has its own ring buffer (and epoll fd): a burst of connects cannot crowd
  // exec records out of their ring.
  const int fpu_fd = probes.fpu != nullptr ? probes.fpu->epoll_fd() : -1;
  const int connect_fd = probes.connect != nullptr ? probes.connect->epoll_fd() : -1;
  for (auto [fd, source_id] : {std::pair{source.epoll_fd(), kRing}, std::pair{fpu_fd, kFpuRing},
                               std::pair{connect_fd, kConnectRing}, std::pair{signal_fd, kSignal},
                               std::pair{stats_timer->get(), kStatsTimer}, std::pair{sweep_timer.get(), kSweepTimer},
                               std::pair{publisher_.fd(), kSubscriptions},
                               std::pair{publisher_.direct_fd(), kSubscriptions}}) {
    if (fd < 0) continue;
    if (auto ok = watch(epfd.get(), fd, source_id); !ok) return ok;
  }
  // While an enforcer holds the kernel ring, the probe writes the execs that ring took
  // there alone and wakes nothing here (bpf/exec.bpf.c): this loop follows that ring on
  // this timer instead.
  UniqueFd ring_poll(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!ring_poll.valid()) return fail(std::string("timerfd_create: ") + std::strerror(errno));
  if (auto ok = watch(epfd.get(), ring_poll.get(), kRingPoll); !ok) return ok;
  bool ring_poll_armed = false;
  const auto set_ring_poll = [&](bool on) {
    const itimerspec spec = on ? every(options.held_ring_poll) : itimerspec{};  // all zero: disarmed
    if (timerfd_settime(ring_poll.get(), 0, &spec, nullptr) == 0) ring_poll_armed = on;
  };
  const auto interval_ms = static_cast<uint32_t>(std::llround(options.stats_interval * 1000));
  publish_stats(read_counters(probes), interval_ms);

  std::array<epoll_event, 8> ready{};
  for (;;) {
    int n = epoll_wait(epfd.get(), ready.data(), static_cast<int>(ready.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(std::string("epoll_wait: ") + std::strerror(errno));
    }
    for (int i = 0; i < n; ++i) {
      switch (ready[static_cast<size_t>(i)].data.u32) {
        case kRingPoll:
          drain_timer(ring_poll.get());
          [[fallthrough]];
        case kRing:
          if (auto got = source.consume(); !got) logger_->error("{}", got.error().message);
          break;
        case kFpuRing:
          if (auto got = probes.fpu->consume(); !got) logger_->error("{}", got.error().message);
          break;
        case kConnectRing:
          if (auto got = probes.connect->consume(); !got) logger_->error("{}", got.error().message);
          break;
        case kSignal: {
          signalfd_siginfo info{};
          if (::read(signal_fd, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) break;
          logger_->info("received {}, stopping", strsignal(static_cast<int>(info.ssi_signo)));
          // What the probe already recorded is still worth sending.
          (void)source.consume();
          if (probes.fpu != nullptr) (void)probes.fpu->consume();
          if (probes.connect != nullptr) (void)probes.connect->consume();
          publish_stats(read_counters(probes), interval_ms);
          return {};
        }
        case kStatsTimer:
          drain_timer(stats_timer->get());
          publish_stats(read_counters(probes), interval_ms);
          break;
        case kSweepTimer:
          drain_timer(sweep_timer.get());
          sweep();
          break;
        default:
          break;
      }
    }
    // ZeroMQ's fd only signals edges and sends can swallow them, so subscriptions are
    // checked after every wake-up (a non-blocking receive), not only when it fires.
    sweep_for_new_subscribers();
    const bool held = publisher_.direct() != nullptr && publisher_.direct()->kernel_ring_held();
    if (held != ring_poll_armed) {
      set_ring_poll(held);
      // Records the probe wrote without a wake-up just before the holder left.
      if (!held) (void)source.consume();
    }
  }
}

void Collector::sweep_for_new_subscribers() {
  // A subscriber that just asked for exec events has missed every process that started
  // before it (a start-up, or an enforcer restart): a sweep gives it all of them. One
  // sweep serves every subscription that arrived together.
  // Direct-path clients (connections, subscriptions, departures) are served here too. They
  // ask for no sweep: each also subscribes over ZeroMQ, which triggers it.
  publisher_.service_direct();
  bool wants_sweep = false;
  for (const auto& t : publisher_.take_subscriptions()) wants_sweep |= t == topic::kExec;
  if (!wants_sweep) return;
  auto result = sweep();
  logger_->info("new exec subscriber: swept {} processes", result.reported);
}

}  // namespace cryptnono::collector
