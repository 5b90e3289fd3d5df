// Helpers shared by the enforcer tests: unique random strings, real child processes,
// temp directories, ExecEvent messages and a fake Killer.
#pragma once

#include <arpa/inet.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <capnp/message.h>

#include "cryptnono.capnp.h"
#include "cryptnono/enforcer/killer.h"
#include "cryptnono/proc.h"

extern char** environ;

namespace cryptnono::enforcer::testing {

// A string no real command line contains: every test that runs the enforcer bans its own.
inline std::string random_token(const char* prefix = "cnt") {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::string out = prefix;
  for (int i = 0; i < 24; ++i) out.push_back(kChars[rd() % 36]);
  return out;
}

inline std::string make_temp_dir() {
  char tmpl[] = "/tmp/cryptnono-enforcer-test-XXXXXX";
  char* d = mkdtemp(tmpl);
  return d != nullptr ? std::string(d) : std::string();
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Replaces `path` atomically (write elsewhere, rename), as editors and tools do.
inline void replace_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp-" + random_token("w");
  write_file(tmp, text);
  std::filesystem::rename(tmp, path);
}

inline std::string config_json(const std::vector<std::string>& banned, const std::vector<std::string>& allowed = {}) {
  auto list = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", \"" : "\"") + v[i] + "\"";
    return s + "]";
  };
  return "{\"bannedCommandStrings\": " + list(banned) + ",\n \"allowedCommandPatterns\": " + list(allowed) + "}\n";
}

// A real `sleep 60` whose argv[0] (and exec path) is a symlink to sleep named after
// `token`, so the token is in its exec filename and in /proc/<pid>/cmdline.
class Child {
 public:
  Child(const std::string& dir, const std::string& token) {
    path_ = dir + "/" + token;
    std::error_code ec;
    std::filesystem::create_symlink("/bin/sleep", path_, ec);
    std::vector<char*> argv = {path_.data(), const_cast<char*>("60"), nullptr};
    // posix_spawn returns once the child has exec'd (or failed to).
    if (posix_spawn(&pid_, path_.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
      return;
    }
    // posix_spawn returns when the new program's memory is in place, which is a moment
    // before the kernel records where its arguments are: until then /proc/<pid>/cmdline
    // reads empty. (The collector reads argv at sched_process_exec, after that point.)
    ProcReader proc;
    for (int i = 0; i < 2000; ++i) {
      auto text = proc.cmdline(pid_);
      if (text && !text->empty()) break;
      usleep(1000);
    }
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& path() const { return path_; }
  std::string argv_area() const { return path_ + std::string("\0", 1) + "60" + std::string("\0", 1); }

  // The start time as the kernel's task->start_boottime would give it: the tick from
  // /proc/<pid>/stat plus a part of a tick (the kernel floors when converting).
  uint64_t start_boot_ns() const {
    auto st = ProcReader().stat(pid_);
    uint64_t hz = clock_ticks_per_second();
    return st ? st->start_ticks * (1'000'000'000ull / hz) + 3'000'000ull % (1'000'000'000ull / hz) : 0;
  }

  // Waits for the child to end; returns the waitpid status.
  int wait_for_exit() {
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    return status;
  }
  // True while the child has not exited (does not reap).
  bool alive() {
    if (reaped_) return false;
    siginfo_t info{};
    info.si_pid = 0;
    if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
    return info.si_pid == 0;
  }

 private:
  std::string path_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

struct EventSpec {
  schema::Source source = schema::Source::BPF;
  pid_t pid = 0;
  uint64_t start_boot_ns = 0;
  std::string filename;
  std::string argv;
  bool truncated = false;
  uint32_t full_length = 0;
  uint64_t pidfs_ino = 0;
  uint64_t exe_ino = 0;
  uint32_t exe_dev = 0;
};

inline void fill_event(schema::ExecEvent::Builder ev, const EventSpec& spec) {
  ev.setSource(spec.source);
  ev.setPid(static_cast<uint32_t>(spec.pid));
  ev.setTgid(static_cast<uint32_t>(spec.pid));
  ev.setPpid(static_cast<uint32_t>(getpid()));
  ev.setUid(getuid());
  ev.setGid(getgid());
  ev.setStartBootNs(spec.start_boot_ns);
  ev.setExecBootNs(spec.source == schema::Source::BPF ? spec.start_boot_ns : 0);
  ev.setComm("sleep");
  ev.setFilename(kj::arrayPtr(reinterpret_cast<const kj::byte*>(spec.filename.data()), spec.filename.size()));
  ev.setArgv(kj::arrayPtr(reinterpret_cast<const kj::byte*>(spec.argv.data()), spec.argv.size()));
  ev.setArgvTruncated(spec.truncated);
  ev.setArgvFullLength(spec.full_length != 0 ? spec.full_length : static_cast<uint32_t>(spec.argv.size()));
  ev.setCgroupName("test/cgroup");
  ev.setPidfsIno(spec.pidfs_ino);
  ev.setExeIno(spec.exe_ino);
  ev.setExeDev(spec.exe_dev);
}

// An FpuEvent naming the process (pid, start time) as the collector's probe would.
inline void fill_fpu_event(schema::FpuEvent::Builder ev, pid_t pid, uint64_t start_boot_ns) {
  ev.setPid(static_cast<uint32_t>(pid));
  ev.setTgid(static_cast<uint32_t>(pid));
  ev.setPpid(static_cast<uint32_t>(getpid()));
  ev.setUid(getuid());
  ev.setStartBootNs(start_boot_ns);
  ev.setComm("sleep");
  ev.setCgroupName("test/cgroup");
  ev.setMxcsr(0x3f80);  // round down
  ev.setCount(64);
  ev.setThreshold(64);
  ev.setFirstBootNs(start_boot_ns + 1);
  ev.setEventBootNs(start_boot_ns + 2);
}

// A ConnectEvent of the process (pid, start time) to destination:port ("1.2.3.4" or "::1").
inline void fill_connect_event(schema::ConnectEvent::Builder ev, pid_t pid, uint64_t start_boot_ns,
                               const std::string& destination, uint16_t port) {
  ev.setPid(static_cast<uint32_t>(pid));
  ev.setTgid(static_cast<uint32_t>(pid));
  ev.setPpid(static_cast<uint32_t>(getpid()));
  ev.setUid(getuid());
  ev.setStartBootNs(start_boot_ns);
  ev.setComm("sleep");
  ev.setCgroupName("test/cgroup");
  uint8_t bytes[16] = {};
  bool v6 = destination.find(':') != std::string::npos;
  if (inet_pton(v6 ? AF_INET6 : AF_INET, destination.c_str(), bytes) != 1) return;
  ev.setFamily(v6 ? schema::AddressFamily::IPV6 : schema::AddressFamily::IPV4);
  ev.setDestination(kj::arrayPtr(bytes, v6 ? 16 : 4));
  ev.setDestinationPort(port);
}

// "127.<a>.<b>": a random loopback /24 prefix, so that every test bans its own addresses.
inline std::string random_loopback_prefix() {
  std::random_device rd;
  return "127." + std::to_string(100 + rd() % 150) + "." + std::to_string(rd() % 256);
}

// A Killer that touches no process: each call is counted and answers what the test set.
class FakeKiller : public Killer {
 public:
  struct Calls {
    int opens = 0;
    int reads = 0;
    int kills = 0;
    pid_t pid = 0;
    uint64_t start = 0;
    uint64_t pidfs_ino = 0;
    uint64_t exe_ino = 0;
    uint32_t exe_dev = 0;
  };
  KillOutcome open_outcome{KillStatus::kOk, {}};
  KillOutcome read_outcome{KillStatus::kOk, {}};
  KillOutcome kill_outcome{KillStatus::kOk, {}};
  std::string proc_argv;
  Calls calls;

  Opened open(pid_t pid, uint64_t start_boot_ns, const EventIdentity& id = {}) override {
    ++calls.opens;
    calls.pid = pid;
    calls.start = start_boot_ns;
    calls.pidfs_ino = id.pidfs_ino;
    calls.exe_ino = id.exe_ino;
    calls.exe_dev = id.exe_dev;
    Opened o;
    o.outcome = open_outcome;
    if (open_outcome.status == KillStatus::kOk) o.target = std::make_unique<FakeTarget>(*this);
    return o;
  }

 private:
  class FakeTarget : public Target {
   public:
    explicit FakeTarget(FakeKiller& k) : k_(k) {}
    KillOutcome read_cmdline(std::string& out) override {
      ++k_.calls.reads;
      if (k_.read_outcome.status == KillStatus::kOk) out = k_.proc_argv;
      return k_.read_outcome;
    }
    KillOutcome kill() override {
      ++k_.calls.kills;
      return k_.kill_outcome;
    }

   private:
    FakeKiller& k_;
  };
};

}  // namespace cryptnono::enforcer::testing
