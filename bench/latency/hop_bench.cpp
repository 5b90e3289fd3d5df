// hop_bench: the latency of one collector -> enforcer hop, alone. A sender process sends
// a small message every --interval-ms (stamped with CLOCK_BOOTTIME just before sending);
// a receiver process, blocked until the message arrives, notes the time it has it. Modes:
//   zmq        cryptnono's own transport (Publisher -> Subscriber over ipc://, each side
//              with its ZeroMQ I/O thread), a 200-byte Cap'n Proto envelope, as the
//              collector and the enforcer use it
//   direct     cryptnono's transport with its direct path (cryptnono/direct.h): the same
//              envelope also goes over a SOCK_SEQPACKET socket, and the receiver keeps the
//              first copy of each message (DuplicateFilter), as the enforcer does
//   seqpacket  a bare AF_UNIX SOCK_SEQPACKET socket: send() in the sender's thread,
//              epoll_wait + recv() in the receiver's: the fewest wake-ups a process hop
//              can have (one: the receiver's)
// Prints one JSON line per mode: {"what": "hop", "mode", "n", "p50_ns", "p99_ns", "max_ns"}.
//
//   hop_bench [--mode zmq|direct|seqpacket|both|all] [--count 500] [--interval-ms 20] [--dir DIR]
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <capnp/message.h>

#include "cryptnono/clock.h"
#include "cryptnono/transport.h"

namespace {

double pct(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5))];
}

void sleep_ms(int ms) {
  timespec ts{ms / 1000, static_cast<long>(ms % 1000) * 1'000'000};
  nanosleep(&ts, nullptr);
}

// Receiver side prints its samples on stdout of the child; the parent is the sender.
void report(const char* mode, const std::vector<double>& d) {
  std::printf("{\"what\": \"hop\", \"mode\": \"%s\", \"n\": %zu, \"p50_ns\": %.0f, \"p99_ns\": %.0f, \"max_ns\": %.0f}\n",
              mode, d.size(), pct(d, 0.5), pct(d, 0.99), d.empty() ? 0.0 : *std::max_element(d.begin(), d.end()));
  std::fflush(stdout);
}

int run_zmq(const std::string& dir, int count, int interval_ms, bool direct) {
  std::string ep = "ipc://" + dir + "/hop.sock";
  std::string direct_path = dir + "/hop.direct";
  int ready[2];
  if (pipe(ready) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    zmq::context_t ctx(1);
    auto sub = cryptnono::Subscriber::connect(ctx, {ep}, {"exec"});
    if (!sub) _exit(2);
    cryptnono::Received r;
    cryptnono::DuplicateFilter first;
    std::vector<double> d;
    sleep_ms(300);  // let the subscription reach the publisher (and the direct socket exist)
    if (direct) {
      (*sub)->use_direct(direct_path, {"exec"});
      if (!(*sub)->direct_connected()) _exit(3);
    }
    (void)!write(ready[1], "x", 1);
    while (static_cast<int>(d.size()) < count) {
      (*sub)->wait(-1, -1);
      while ((*sub)->try_receive(r)) {
        uint64_t now = cryptnono::boot_ns();
        auto env = r.envelope();
        if (env && first.first_copy(env->getPublisherId().cStr(), r.topic(), env->getSequence()))
          d.push_back(static_cast<double>(now - env->getSentBootNs()));
      }
    }
    report(direct ? "direct" : "zmq", d);
    _exit(0);
  }
  zmq::context_t ctx(1);
  auto pub = cryptnono::Publisher::bind(ctx, ep, "bench", "collector", "hop");
  if (!pub) return 1;
  if (direct && !(*pub)->add_direct(direct_path)) return 1;
  char c;
  (void)!read(ready[0], &c, 1);
  kj::Array<capnp::word> seg = kj::heapArray<capnp::word>(1024);
  for (int i = 0; i < count; ++i) {
    sleep_ms(interval_ms);
    (*pub)->service_direct();  // accepts the receiver's direct connection
    std::memset(seg.begin(), 0, seg.size() * sizeof(capnp::word));
    capnp::MallocMessageBuilder m(seg.asPtr());
    auto env = (*pub)->begin(m, cryptnono::topic::kExec);  // stamps sentBootNs
    auto ev = env.getBody().initExec();
    ev.setPid(static_cast<uint32_t>(i));
    ev.setComm("cnb-victim");
    (*pub)->send(cryptnono::topic::kExec, m);
  }
  int st = 0;
  waitpid(child, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

int run_seqpacket(const std::string& dir, int count, int interval_ms) {
  std::string path = dir + "/hop.seq";
  unlink(path.c_str());
  int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(lfd, 4) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) _exit(2);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    std::vector<double> d;
    char buf[256];
    while (static_cast<int>(d.size()) < count) {
      epoll_event out{};
      if (epoll_wait(ep, &out, 1, -1) != 1) continue;
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      uint64_t now = cryptnono::boot_ns();
      if (n >= static_cast<ssize_t>(sizeof(uint64_t))) {
        uint64_t sent;
        std::memcpy(&sent, buf, sizeof sent);
        d.push_back(static_cast<double>(now - sent));
      }
    }
    report("seqpacket", d);
    _exit(0);
  }
  int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  char msg[200] = {};
  for (int i = 0; i < count; ++i) {
    sleep_ms(interval_ms);
    uint64_t now = cryptnono::boot_ns();
    std::memcpy(msg, &now, sizeof now);
    send(fd, msg, sizeof msg, MSG_DONTWAIT);
  }
  int st = 0;
  waitpid(child, &st, 0);
  close(fd);
  close(lfd);
  unlink(path.c_str());
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "both";
  std::string dir = "/tmp";
  int count = 500;
  int interval_ms = 20;
  CLI::App app{"One-way latency of a process hop: cryptnono's ZeroMQ transport vs a bare unix socket"};
  app.add_option("--mode", mode, "zmq, direct, seqpacket, both (zmq and seqpacket) or all")->check(CLI::IsMember({"zmq", "direct", "seqpacket", "both", "all"}));
  app.add_option("--count", count, "Messages")->capture_default_str();
  app.add_option("--interval-ms", interval_ms, "Pause between messages")->capture_default_str();
  app.add_option("--dir", dir, "Where the sockets go")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  int rc = 0;
  // "both" (zmq and seqpacket) is kept for the earlier runs' commands; "all" adds direct.
  if (mode == "zmq" || mode == "both" || mode == "all") rc |= run_zmq(dir, count, interval_ms, false);
  if (mode == "direct" || mode == "all") rc |= run_zmq(dir, count, interval_ms, true);
  if (mode == "seqpacket" || mode == "both" || mode == "all") rc |= run_seqpacket(dir, count, interval_ms);
  return rc;
}
