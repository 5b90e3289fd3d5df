// kill_path: what the enforcer's kill costs, step by step, against a bare kill(2). For
// each of --count victims (cnb-victim, started and left to settle), times one of:
//   bare:   kill(pid, SIGKILL)                              (what the floor does)
//   pidfd:  PidfdKiller::open by start time (pidfd_open, /proc/<pid>/stat start-time
//           check, pidfd_send_signal(0)) then Target::kill (pidfd_send_signal(SIGKILL)),
//           what an event without a pidfs inode (a /proc scan's) gets
//   pidfs:  PidfdKiller::open by pidfs inode (pidfd_open, fstat of the pidfd, poll of the
//           pidfd) then Target::kill, what an exec event from the probe gets (Linux 6.9+;
//           the inode is read beforehand, as the probe records it)
// and, in pidfd mode, each part alone: pidfd_open, ProcReader::stat, the liveness check.
// Victims rotate between the modes. Prints one JSON line per mode with p50/p99 in ns.
//
// --settle-us: how long each victim runs before the kill (default 5,000 µs: asleep in
// pause()); the pipeline reaches a victim ~400 µs after its exec, while it may still be in
// the dynamic loader. --protect-own: the enforcer's protection of the agent's own
// programs (a stat of /proc/<pid>/exe per kill), as the real enforcer runs it.
//
//   kill_path --victim PATH [--count 400] [--settle-us 5000] [--protect-own]
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cryptnono/clock.h"
#include "cryptnono/enforcer/killer.h"
#include "cryptnono/fd.h"
#include "cryptnono/proc.h"

extern char** environ;

namespace {

uint64_t now() { return cryptnono::clock_ns(CLOCK_MONOTONIC); }

double pct(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5))];
}

pid_t spawn(const std::string& victim) {
  std::string a0 = victim;
  char* args[] = {a0.data(), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, victim.c_str(), nullptr, nullptr, args, environ) != 0) return -1;
  return pid;
}

}  // namespace

int main(int argc, char** argv) {
  std::string victim;
  int count = 400;
  CLI::App app{"Times the enforcer's kill path against a bare kill(2)"};
  app.add_option("--victim", victim, "Program to start and kill")->required();
  app.add_option("--count", count, "Victims")->capture_default_str();
  long settle_us = 5000;
  bool protect_own = false;
  app.add_option("--settle-us", settle_us, "Microseconds each victim runs before the kill")->capture_default_str();
  app.add_flag("--protect-own", protect_own, "Protect the agent's programs, as the enforcer does");
  CLI11_PARSE(app, argc, argv);

  cryptnono::ProcReader proc("/proc");
  const uint64_t hz = cryptnono::clock_ticks_per_second();
  cryptnono::enforcer::PidfdKiller killer(proc, getpid());
  if (protect_own) killer.protect_executables({"/proc/self/exe"});
  std::map<std::string, std::vector<double>> t;
  // The enforcer's sequence: PidfdKiller::open (by pidfs inode when `ino` is not 0, else
  // by start time), then Target::kill. Returns the ns of each.
  auto open_and_kill = [&](pid_t pid, uint64_t start_ns, uint64_t ino) {
    uint64_t e = now();
    auto opened = killer.open(pid, start_ns, {.pidfs_ino = ino});
    uint64_t f = now();
    if (opened.outcome.status != cryptnono::enforcer::KillStatus::kOk) {
      std::fprintf(stderr, "kill_path: open: %s\n", opened.outcome.reason.c_str());
      ::kill(pid, SIGKILL);
    } else {
      opened.target->kill();
    }
    uint64_t g = now();
    return std::pair<double, double>{static_cast<double>(f - e), static_cast<double>(g - f)};
  };
  for (int i = 0; i < count; ++i) {
    pid_t pid = spawn(victim);
    if (pid < 0) return 1;
    // By default it reaches pause(): the kill then lands on a sleeping process.
    timespec ts{settle_us / 1'000'000, (settle_us % 1'000'000) * 1000};
    nanosleep(&ts, nullptr);
    auto st = proc.stat(pid);
    if (!st) return 1;
    uint64_t start_ns = st->start_ticks * (1'000'000'000ull / hz);
    const int mode = killer.pidfs() ? i % 3 : i % 2;
    if (mode == 0) {
      uint64_t a = now();
      ::kill(pid, SIGKILL);
      t["bare_kill"].push_back(static_cast<double>(now() - a));
    } else if (mode == 2) {
      uint64_t ino = 0;
      {
        cryptnono::UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
        struct stat fst {};
        if (fd && ::fstat(fd.get(), &fst) == 0) ino = fst.st_ino;
      }
      auto [open_ns, kill_ns] = open_and_kill(pid, start_ns, ino);
      t["pidfs_open"].push_back(open_ns);
      t["pidfs_total"].push_back(open_ns + kill_ns);
    } else {
      // The parts alone, on this same victim, before the real sequence.
      uint64_t a = now();
      int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
      uint64_t b = now();
      auto st2 = proc.stat(pid);
      uint64_t c = now();
      ::syscall(SYS_pidfd_send_signal, fd, 0, nullptr, 0);
      uint64_t d = now();
      ::close(fd);
      t["part_pidfd_open"].push_back(static_cast<double>(b - a));
      t["part_proc_stat"].push_back(static_cast<double>(c - b));
      t["part_alive_check"].push_back(static_cast<double>(d - c));
      (void)st2;
      auto [open_ns, kill_ns] = open_and_kill(pid, start_ns, 0);
      t["enforcer_open"].push_back(open_ns);
      t["enforcer_kill"].push_back(kill_ns);
      t["enforcer_total"].push_back(open_ns + kill_ns);
    }
    waitpid(pid, nullptr, 0);
  }
  for (const auto& [k, v] : t)
    std::printf("{\"what\": \"kill-path\", \"step\": \"%s\", \"n\": %zu, \"p50_ns\": %.0f, \"p99_ns\": %.0f}\n",
                k.c_str(), v.size(), pct(v, 0.5), pct(v, 0.99));
  return 0;
}
