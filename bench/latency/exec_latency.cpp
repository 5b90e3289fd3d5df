// exec_latency: the victim side of the exec -> SIGKILL benchmark. Every --interval-ms it
// starts --victim with the banned --token in its argv (posix_spawn), then waits on a
// pidfd for it to die and notes CLOCK_BOOTTIME at that moment: the time a parent
// blocked on its child sees it dead. That is what "the kill was delivered" means to
// anyone outside the killer, and it is measured the same way whoever kills (the floor
// or the pipeline), so the two are comparable. The exec time comes from the killer's
// own record (the floor's output, or the enforcer's decision: event.execBootNs), joined
// afterwards by pid and time.
//
//   exec_latency --victim PATH --token-file FILE [--count N] [--interval-ms 20]
//                [--timeout-ms 3000] [--warmup-s 15]
//
// The token is read from a file so that this program's own argv does not carry it
// (the enforcer would rightly kill the driver too).
//
// --exit-probe (root) also notes when each victim began to die, as the kernel sees it: a
// tp_btf program on sched_process_exit (victim_exit.bpf.c) records the moment do_exit()
// starts, before the victim's memory is torn down and before this parent is woken. That
// is the kill taking effect, without the parent's own wake-up (which a busy killer on the
// same CPU delays) in it.
//
// Before counting, it starts victims until one dies of SIGKILL (the killer is ready),
// for at most --warmup-s seconds. Prints one JSON line per victim:
// {"pid", "spawn_boot_ns", "dead_boot_ns", "exit_boot_ns" (0 without --exit-probe),
// "sigkill"} and a summary line.
#include <poll.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <bpf/libbpf.h>

#include "cryptnono/clock.h"
#include "victim_exit.skel.h"

extern char** environ;

namespace {

struct Outcome {
  pid_t pid = 0;
  uint64_t spawn_boot_ns = 0;
  uint64_t dead_boot_ns = 0;
  uint64_t exit_boot_ns = 0;  // --exit-probe: do_exit() began (kernel)
  bool sigkill = false;
  bool timed_out = false;
  bool spawn_failed = false;
};

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// The exit probe's map (victim_exit.bpf.c), or null without --exit-probe.
victim_exit_bpf* g_exits = nullptr;

uint64_t take_exit_time(pid_t pid) {
  if (g_exits == nullptr) return 0;
  uint32_t key = static_cast<uint32_t>(pid);
  uint64_t ns = 0;
  if (bpf_map__lookup_and_delete_elem(g_exits->maps.victim_exits, &key, sizeof key, &ns, sizeof ns, 0) != 0) return 0;
  return ns;
}

Outcome run_one(const std::string& victim, const std::string& token, int timeout_ms) {
  Outcome o;
  std::string a0 = victim, a1 = "--token", a2 = token;
  char* args[] = {a0.data(), a1.data(), a2.data(), nullptr};
  o.spawn_boot_ns = cryptnono::boot_ns();
  pid_t pid = 0;
  if (posix_spawn(&pid, victim.c_str(), nullptr, nullptr, args, environ) != 0) {
    o.spawn_failed = true;
    return o;
  }
  o.pid = pid;
  int fd = pidfd_open(pid);
  if (fd < 0) {
    waitpid(pid, nullptr, 0);
    o.spawn_failed = true;
    return o;
  }
  pollfd p{fd, POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  o.dead_boot_ns = cryptnono::boot_ns();
  if (n == 0) {
    // Nobody killed it: count a miss and clean up.
    o.timed_out = true;
    ::kill(pid, SIGKILL);
  }
  siginfo_t info{};
  waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED);
  o.sigkill = !o.timed_out && info.si_code == CLD_KILLED && info.si_status == SIGKILL;
  o.exit_boot_ns = take_exit_time(pid);  // reaped: its exit tracepoint has fired
  ::close(fd);
  return o;
}

void sleep_until(timespec& next) {
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr) == EINTR) {
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string victim, token, token_file;
  int count = 500;
  int interval_ms = 20;
  int timeout_ms = 3000;
  double warmup_s = 15;
  CLI::App app{"Starts banned processes at a steady pace and times how long they live"};
  app.add_option("--victim", victim, "Program to start (it must wait to be killed)")->required();
  app.add_option("--token-file", token_file, "File holding the banned string to put in its argv")->required();
  app.add_option("--count", count, "Victims to time")->capture_default_str();
  app.add_option("--interval-ms", interval_ms, "Pause between victims")->capture_default_str();
  app.add_option("--timeout-ms", timeout_ms, "A victim alive this long counts as not killed")->capture_default_str();
  app.add_option("--warmup-s", warmup_s, "Longest wait for the killer to be ready")->capture_default_str();
  bool exit_probe = false;
  app.add_flag("--exit-probe", exit_probe, "Also note when each victim began to die (kernel; needs root)");
  CLI11_PARSE(app, argc, argv);
  if (exit_probe) {
    g_exits = victim_exit_bpf__open();
    if (g_exits != nullptr) g_exits->rodata->parent_tgid = static_cast<uint32_t>(getpid());
    if (g_exits == nullptr || victim_exit_bpf__load(g_exits) != 0 || victim_exit_bpf__attach(g_exits) != 0) {
      std::fprintf(stderr, "exec_latency: --exit-probe: cannot load or attach victim_exit.bpf.o: %s\n",
                   std::strerror(errno));
      return 1;
    }
  }
  {
    std::ifstream in(token_file);
    std::getline(in, token);
  }
  if (token.empty()) {
    std::fprintf(stderr, "exec_latency: no token in %s\n", token_file.c_str());
    return 1;
  }

  // Warm-up: until a victim dies of SIGKILL (the killer is attached and subscribed).
  uint64_t warm_deadline = cryptnono::boot_ns() + static_cast<uint64_t>(warmup_s * 1e9);
  int warm = 0;
  for (;;) {
    Outcome o = run_one(victim, token, 1000);
    ++warm;
    if (o.spawn_failed) {
      std::fprintf(stderr, "exec_latency: cannot start %s: %s\n", victim.c_str(), std::strerror(errno));
      return 1;
    }
    if (o.sigkill) break;
    if (cryptnono::boot_ns() > warm_deadline) {
      std::fprintf(stderr, "exec_latency: nothing killed the victim within %.0f s\n", warmup_s);
      return 1;
    }
  }

  std::vector<Outcome> outcomes;
  outcomes.reserve(static_cast<size_t>(count));
  timespec next{};
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (int i = 0; i < count; ++i) {
    next.tv_nsec += static_cast<long>(interval_ms) * 1'000'000;
    while (next.tv_nsec >= 1'000'000'000) {
      next.tv_nsec -= 1'000'000'000;
      ++next.tv_sec;
    }
    sleep_until(next);
    outcomes.push_back(run_one(victim, token, timeout_ms));
  }
  int killed = 0, survived = 0, failed = 0;
  for (const auto& o : outcomes) {
    if (o.spawn_failed) {
      ++failed;
      continue;
    }
    killed += o.sigkill;
    survived += o.timed_out;
    std::printf("{\"pid\": %d, \"spawn_boot_ns\": %llu, \"dead_boot_ns\": %llu, \"exit_boot_ns\": %llu, "
                "\"sigkill\": %s}\n",
                o.pid, static_cast<unsigned long long>(o.spawn_boot_ns), static_cast<unsigned long long>(o.dead_boot_ns),
                static_cast<unsigned long long>(o.exit_boot_ns), o.sigkill ? "true" : "false");
  }
  std::printf("{\"what\": \"latency-summary\", \"count\": %d, \"killed\": %d, \"survived\": %d, \"spawn_failed\": %d, "
              "\"warmup_victims\": %d}\n",
              count, killed, survived, failed, warm);
  if (g_exits != nullptr) victim_exit_bpf__destroy(g_exits);
  return 0;
}
