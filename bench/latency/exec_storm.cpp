// exec_storm: as many execs as this machine can do. --workers processes each start
// --exe (default /bin/true) with vfork + execve and wait for it, in a loop, for --seconds
// (or until SIGTERM). Prints one JSON line: {"execs", "seconds", "rate"}.
//
//   exec_storm [--workers 2] [--seconds 10] [--exe /bin/true] [--rate R]
//
// --rate caps the total rate (execs/s, spread over the workers); 0 = flat out.
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cryptnono/clock.h"

namespace {
volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

// vfork + execve with an empty environment, then wait: the cheapest start there is.
// glibc's posix_spawn blocks and restores every signal around its clone (system calls
// that are dear on a virtualised node). Its own function: nothing of the caller's frame
// is live across vfork.
__attribute__((noinline)) bool spawn_and_wait(const char* path, char* const* args) {
  static char* const empty_env[] = {nullptr};
  pid_t c = vfork();
  if (c == 0) {
    execve(path, args, empty_env);
    _exit(127);
  }
  if (c < 0) return false;
  while (waitpid(c, nullptr, 0) < 0 && errno == EINTR) {
  }
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  int workers = 2;
  double seconds = 10;
  double rate = 0;
  std::string exe = "/bin/true";
  CLI::App app{"Spawns benign processes flat out"};
  app.add_option("--workers", workers, "Spawning processes")->capture_default_str();
  app.add_option("--seconds", seconds, "How long (0: until SIGTERM)")->capture_default_str();
  app.add_option("--exe", exe, "Program to start")->capture_default_str();
  app.add_option("--rate", rate, "Total execs per second (0: as fast as possible)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  // One counter per worker, shared with the parent.
  auto* counts = static_cast<std::atomic<uint64_t>*>(
      mmap(nullptr, sizeof(std::atomic<uint64_t>) * static_cast<size_t>(workers), PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  if (counts == MAP_FAILED) return 1;
  for (int w = 0; w < workers; ++w) new (&counts[w]) std::atomic<uint64_t>(0);

  uint64_t start = cryptnono::boot_ns();
  uint64_t end = seconds > 0 ? start + static_cast<uint64_t>(seconds * 1e9) : UINT64_MAX;
  std::vector<pid_t> kids;
  for (int w = 0; w < workers; ++w) {
    pid_t pid = fork();
    if (pid == 0) {
      std::string a0 = exe;
      char* args[] = {a0.data(), nullptr};
      const char* path = exe.c_str();
      uint64_t period = rate > 0 ? static_cast<uint64_t>(1e9 * workers / rate) : 0;
      uint64_t next = cryptnono::boot_ns();
      while (!g_stop && cryptnono::boot_ns() < end) {
        if (period) {
          next += period;
          uint64_t now = cryptnono::boot_ns();
          if (next > now) {
            timespec ts{static_cast<time_t>((next - now) / 1'000'000'000), static_cast<long>((next - now) % 1'000'000'000)};
            nanosleep(&ts, nullptr);
          }
        }
        if (!spawn_and_wait(path, args)) _exit(2);
        counts[w].fetch_add(1, std::memory_order_relaxed);
      }
      _exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    while (waitpid(k, nullptr, 0) < 0 && errno == EINTR) {
      if (g_stop)
        for (pid_t x : kids) ::kill(x, SIGTERM);
    }
  }
  double elapsed = static_cast<double>(cryptnono::boot_ns() - start) / 1e9;
  uint64_t total = 0;
  for (int w = 0; w < workers; ++w) total += counts[w].load();
  std::printf("{\"what\": \"storm\", \"workers\": %d, \"execs\": %llu, \"seconds\": %.3f, \"rate\": %.1f}\n", workers,
              static_cast<unsigned long long>(total), elapsed, static_cast<double>(total) / elapsed);
  return 0;
}
