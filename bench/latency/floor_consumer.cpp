// floor_consumer: the latency floor. Loads floor.bpf.c (one small record per exec), then
// blocks in ring_buffer__poll; for each record it notes when it read it and, when the
// exec'd file name holds --marker, sends SIGKILL with kill(2) (no matching, no identity
// check, no messages) and notes when kill() returned. This is the fastest a user-space
// killer fed by a BPF ring buffer can be on this machine: one ring-buffer wake-up of one
// thread, then one syscall.
//
//   floor_consumer --marker cnb-victim [--spin] [--rt-priority N]
//
// Prints "ready" on stderr once attached; on SIGTERM/SIGINT prints one JSON line per
// killed process ({"pid", "exec_boot_ns", "read_boot_ns", "sent_boot_ns"}) and a summary
// line ({"what": "floor-summary", "events", "drops"}) on stdout, and exits 0.
// --spin consumes without ever sleeping (burns a core): what the floor is without the
// wake-up. --rt-priority runs the loop as SCHED_FIFO. --delay-us N spins N µs between
// reading a marked exec and killing it: how long a victim takes to die depends on how far
// it got, and this shows it without any other difference from the floor.
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <bpf/libbpf.h>

#include "cryptnono/clock.h"
#include "floor.skel.h"
#include "floor_event.h"

namespace {

volatile sig_atomic_t g_stop = 0;  // set by the signal handler only
void on_signal(int) { g_stop = 1; }

struct Killed {
  uint32_t pid;
  uint64_t exec_boot_ns, read_boot_ns, sent_boot_ns;
};

struct State {
  std::string marker;
  uint64_t delay_ns = 0;
  uint64_t events = 0;
  std::vector<Killed> killed;
};

int on_event(void* ctx, void* data, size_t size) {
  uint64_t read_ns = cryptnono::boot_ns();
  auto* st = static_cast<State*>(ctx);
  if (size < sizeof(floor_event)) return 0;
  const auto* e = static_cast<const floor_event*>(data);
  ++st->events;
  if (std::strstr(e->filename, st->marker.c_str()) == nullptr) return 0;
  while (st->delay_ns != 0 && cryptnono::boot_ns() - read_ns < st->delay_ns) {
  }
  ::kill(static_cast<pid_t>(e->pid), SIGKILL);
  uint64_t sent_ns = cryptnono::boot_ns();
  if (st->killed.size() < st->killed.capacity()) st->killed.push_back({e->pid, e->exec_boot_ns, read_ns, sent_ns});
  return 0;
}

int libbpf_quiet(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_WARN) return std::vfprintf(stderr, fmt, args);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  State st;
  st.marker = "cnb-victim";
  bool spin = false;
  int rt = 0;
  CLI::App app{"Latency floor: minimal BPF ring-buffer consumer that kills marked execs"};
  app.add_option("--marker", st.marker, "Kill execs whose file name contains this")->capture_default_str();
  app.add_flag("--spin", spin, "Busy-poll the ring buffer instead of sleeping");
  app.add_option("--rt-priority", rt, "SCHED_FIFO priority (0: normal scheduling)");
  unsigned delay_us = 0;
  app.add_option("--delay-us", delay_us, "Spin this long between reading a marked exec and killing it")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  st.delay_ns = uint64_t{delay_us} * 1000;
  st.killed.reserve(1 << 20);

  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  libbpf_set_print(libbpf_quiet);
  struct sigaction sa {};
  sa.sa_handler = on_signal;  // no SA_RESTART: epoll_wait returns EINTR
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  if (rt > 0) {
    sched_param sp{};
    sp.sched_priority = rt;
    if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) {
      std::fprintf(stderr, "floor_consumer: SCHED_FIFO %d: %s\n", rt, std::strerror(errno));
      return 1;
    }
  }
  floor_bpf* skel = floor_bpf__open_and_load();
  if (skel == nullptr) {
    std::fprintf(stderr, "floor_consumer: cannot load floor.bpf.o: %s\n", std::strerror(errno));
    return 1;
  }
  if (floor_bpf__attach(skel) != 0) {
    std::fprintf(stderr, "floor_consumer: cannot attach: %s\n", std::strerror(errno));
    floor_bpf__destroy(skel);
    return 1;
  }
  ring_buffer* rb = ring_buffer__new(bpf_map__fd(skel->maps.floor_events), on_event, &st, nullptr);
  if (rb == nullptr) {
    std::fprintf(stderr, "floor_consumer: ring_buffer__new: %s\n", std::strerror(errno));
    floor_bpf__destroy(skel);
    return 1;
  }
  std::fprintf(stderr, "ready\n");
  while (!g_stop) {
    int n = spin ? ring_buffer__consume(rb) : ring_buffer__poll(rb, -1);
    if (n < 0 && n != -EINTR) {
      std::fprintf(stderr, "floor_consumer: ring buffer: %s\n", std::strerror(-n));
      break;
    }
  }
  ring_buffer__consume(rb);
  uint64_t drops = 0;
  {
    int ncpu = libbpf_num_possible_cpus();
    std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu > 0 ? ncpu : 1));
    uint32_t zero = 0;
    if (bpf_map__lookup_elem(skel->maps.floor_drops, &zero, sizeof zero, per_cpu.data(),
                             per_cpu.size() * sizeof(uint64_t), 0) == 0)
      for (auto d : per_cpu) drops += d;
  }
  for (const auto& k : st.killed)
    std::printf("{\"pid\": %u, \"exec_boot_ns\": %llu, \"read_boot_ns\": %llu, \"sent_boot_ns\": %llu}\n", k.pid,
                static_cast<unsigned long long>(k.exec_boot_ns), static_cast<unsigned long long>(k.read_boot_ns),
                static_cast<unsigned long long>(k.sent_boot_ns));
  std::printf("{\"what\": \"floor-summary\", \"events\": %llu, \"drops\": %llu}\n",
              static_cast<unsigned long long>(st.events), static_cast<unsigned long long>(drops));
  ring_buffer__free(rb);
  floor_bpf__destroy(skel);
  return 0;
}
