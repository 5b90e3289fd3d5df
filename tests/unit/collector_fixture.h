// A fixture /proc tree for the collector's unit tests: each process is a directory with
// the files ProcReader reads (stat, cmdline, status, cgroup, exe symlink).
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace cryptnono::collector::testing {

class FakeProc {
 public:
  FakeProc() {
    char tmpl[] = "/tmp/cryptnono-collector-proc-XXXXXX";
    root_ = mkdtemp(tmpl);
  }
  ~FakeProc() { std::filesystem::remove_all(root_); }
  FakeProc(const FakeProc&) = delete;
  FakeProc& operator=(const FakeProc&) = delete;

  const std::string& root() const { return root_; }

  struct Process {
    int pid = 0;
    std::string comm = "proc";
    int ppid = 1;
    unsigned long long flags = 0x400100;  // PF_EXITING-free user task flags
    unsigned long long start_ticks = 12345;
    std::string cmdline;                   // raw bytes, NUL-separated
    unsigned uid = 1000, gid = 1000;
    std::string cgroup = "0::/user.slice\n";
    std::string exe;                       // symlink target; empty: no exe link
  };

  void add(const Process& p) {
    auto dir = root_ + "/" + std::to_string(p.pid);
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/stat") << p.pid << " (" << p.comm << ") S " << p.ppid << " " << p.pid << " " << p.pid
                                 << " 0 -1 " << p.flags << " 0 0 0 0 0 0 0 0 20 0 1 0 " << p.start_ticks
                                 << " 1000 100 18446744073709551615\n";
    std::ofstream(dir + "/cmdline", std::ios::binary) << p.cmdline;
    std::ofstream(dir + "/status") << "Name:\t" << p.comm << "\nUid:\t" << p.uid << "\t" << p.uid << "\t" << p.uid
                                   << "\t" << p.uid << "\nGid:\t" << p.gid << "\t" << p.gid << "\t" << p.gid << "\t"
                                   << p.gid << "\n";
    std::ofstream(dir + "/cgroup") << p.cgroup;
    if (!p.exe.empty()) std::filesystem::create_symlink(p.exe, dir + "/exe");
  }

 private:
  std::string root_;
};

}  // namespace cryptnono::collector::testing
