// Helpers for the root-only BPF tests: a child process the test controls (it blocks on
// a pipe until released, so its /proc entry can be compared with the event while it is
// alive), a cgroup v2 subtree shaped like a Kubernetes container's, and random names.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <random>
#include <string>
#include <vector>

#include <linux/magic.h>

namespace cryptnono::testing {

inline std::string random_hex(size_t bytes) {
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    unsigned b = rd() & 0xffu;
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

// The bytes of the argument area the kernel builds from `args`: each one NUL-terminated.
inline std::string argv_bytes(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) {
    out += a;
    out.push_back('\0');
  }
  return out;
}

// A cgroup v2 directory chain "<mount>/cryptnono-test-<hex>/<names...>", removed on
// destruction. Works on hybrid hosts (v2 at /sys/fs/cgroup/unified) and pure v2 ones.
class TestCgroup {
 public:
  explicit TestCgroup(const std::vector<std::string>& names) {
    for (const char* m : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
      struct statfs s {};
      if (statfs(m, &s) == 0 && s.f_type == CGROUP2_SUPER_MAGIC) {
        mount_ = m;
        break;
      }
    }
    if (mount_.empty()) return;
    std::string path = mount_ + "/cryptnono-test-" + random_hex(6);
    if (mkdir(path.c_str(), 0755) != 0) return;
    dirs_.push_back(path);
    for (const auto& n : names) {
      path += "/" + n;
      if (mkdir(path.c_str(), 0755) != 0) return;
      dirs_.push_back(path);
    }
    procs_fd_ = open((path + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    struct stat st {};
    if (stat(path.c_str(), &st) == 0) id_ = st.st_ino;  // kernfs node id == cgroup id
  }
  ~TestCgroup() {
    if (procs_fd_ >= 0) close(procs_fd_);
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) rmdir(it->c_str());
  }
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;

  bool ok() const { return procs_fd_ >= 0; }
  int procs_fd() const { return procs_fd_; }
  uint64_t id() const { return id_; }
  const std::string& leaf() const { return dirs_.back(); }

 private:
  std::string mount_;
  std::vector<std::string> dirs_;
  int procs_fd_ = -1;
  uint64_t id_ = 0;
};

// Runs `path` with `args` (args[0] included) and a fixed small environment. Its stdin
// is a pipe the test holds: a child like `sh -c 'read _'` blocks until release().
// With cgroup_procs_fd >= 0 the child moves itself into that cgroup before exec.
class BlockedChild {
 public:
  BlockedChild(const std::string& path, const std::vector<std::string>& args, int cgroup_procs_fd = -1) {
    // Everything the child needs is built before fork: after it, only async-signal-safe calls.
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    static char env0[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    char* envp[] = {env0, nullptr};
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[0], 0);
      if (cgroup_procs_fd >= 0 && write(cgroup_procs_fd, "0", 1) != 1) _exit(126);
      execve(path.c_str(), argv.data(), envp);
      _exit(127);
    }
    close(fds[0]);
    release_fd_ = fds[1];
  }
  ~BlockedChild() {
    release();
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  BlockedChild(const BlockedChild&) = delete;
  BlockedChild& operator=(const BlockedChild&) = delete;

  pid_t pid() const { return pid_; }
  void release() {
    if (release_fd_ >= 0) close(release_fd_);
    release_fd_ = -1;
  }
  // Releases the child and returns its wait status.
  int wait() {
    release();
    int status = -1;
    if (pid_ > 0 && !reaped_ && waitpid(pid_, &status, 0) == pid_) reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int release_fd_ = -1;
  bool reaped_ = false;
};

// A loopback TCP port nothing listens on (bound to find it, then closed): connects to it
// are refused, after going through SYN_SENT. 0 if none could be found.
inline uint16_t unused_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

// Runs `path` with `args` (args[0] included) with its stdout on a pipe the test reads
// line by line (the test programs print "ready <pid> ..." first). Killed and reaped on
// destruction if still running. With cgroup_procs_fd >= 0 the child moves itself into
// that cgroup before exec.
class RunningProgram {
 public:
  RunningProgram(const std::string& path, const std::vector<std::string>& args, int cgroup_procs_fd = -1) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    static char env0[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    char* envp[] = {env0, nullptr};
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      if (cgroup_procs_fd >= 0 && write(cgroup_procs_fd, "0", 1) != 1) _exit(126);
      execve(path.c_str(), argv.data(), envp);
      _exit(127);
    }
    close(fds[1]);
    out_fd_ = fds[0];
  }
  ~RunningProgram() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) close(out_fd_);
  }
  RunningProgram(const RunningProgram&) = delete;
  RunningProgram& operator=(const RunningProgram&) = delete;

  pid_t pid() const { return pid_; }
  // The next line of its stdout (without the newline); "" on EOF or after timeout_ms.
  std::string read_line(int timeout_ms = 10000) {
    for (;;) {
      auto nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      pollfd p{out_fd_, POLLIN, 0};
      if (poll(&p, 1, timeout_ms) <= 0) return "";
      char chunk[512];
      ssize_t n = read(out_fd_, chunk, sizeof chunk);
      if (n <= 0) return "";
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }
  // Waits for it to exit; returns the wait status.
  int wait() {
    int status = -1;
    if (pid_ > 0 && !reaped_ && waitpid(pid_, &status, 0) == pid_) reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  bool reaped_ = false;
  std::string buffer_;
};

}  // namespace cryptnono::testing
