#include "cryptnono/enforcer/compile_worker.h"

#include <fcntl.h>
#include <hs/hs.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "cryptnono/fd.h"

// Why fork() without exec() is safe here although the enforcer is multi-threaded (ZeroMQ's
// I/O threads, the config watcher, the event thread): after fork only the calling thread
// exists in the child, and any lock another thread held at that instant stays locked
// forever. The child therefore touches only
//   - glibc's malloc, which fork() makes safe: glibc takes every arena lock before forking
//     and re-initialises them in the child (the libstdc++ operator new is malloc);
//   - Vectorscan's compiler and hs_serialize_database, which allocate through that malloc
//     and take no lock another thread of ours could hold: the small compiles that run
//     in-process (compile_literals_here) hold kCompileMutex, which fork() below waits for,
//     so no compile is ever in flight in another thread at the fork; the other threads
//     only scan, and hs_scan takes no lock;
//   - raw system calls (prctl, write, close_range, _exit).
// It never logs (spdlog has a mutex), never returns into the caller's code and leaves with
// _exit, so no atexit handler or static destructor (ZeroMQ contexts, loggers) runs twice.
// Exec'ing a helper binary would avoid the question altogether, but needs the binary's path
// and a second entry point, and would copy 100,000 strings through a pipe the other way.

namespace cryptnono::enforcer {

namespace {

// Held by an in-process compile for its whole length, and around fork() (see above).
std::mutex kCompileMutex;

constexpr uint32_t kMagic = 0x636e6e63;  // "cnnc"
// The payload of a reply: the serialized database, or an error message.
enum ReplyStatus : uint32_t { kCompiled = 0, kRejected = 1, kFailed = 2 };

struct ReplyHeader {
  uint32_t magic;
  uint32_t status;
  int32_t expression;
  uint32_t reserved;
  uint64_t length;
};
static_assert(sizeof(ReplyHeader) == 24);

// An error message is a line; a database is at most a few hundred MiB (100,000 strings:
// 12 MiB). The bound only guards the parent against a corrupt header.
constexpr uint64_t kMaxMessage = 64 * 1024;
constexpr uint64_t kMaxDatabase = uint64_t{4} << 30;

bool write_full(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Reads until `size` bytes or end of file; returns how many were read (-1 on error).
ssize_t read_full(int fd, void* data, size_t size) {
  char* p = static_cast<char*>(data);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::read(fd, p + done, size - done);
    if (n < 0 && errno == EINTR) continue;  // the compile takes seconds: signals may arrive
    if (n < 0) return -1;
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

void reply(int fd, ReplyStatus status, int expression, const void* payload, size_t length) {
  ReplyHeader h{kMagic, status, expression, 0, length};
  if (write_full(fd, &h, sizeof h) && length > 0) write_full(fd, payload, length);
}

bool same_lengths(const std::vector<const char*>& exprs, const std::vector<unsigned>& flags,
                  const std::vector<unsigned>& ids, const std::vector<size_t>& lens) {
  return flags.size() == exprs.size() && ids.size() == exprs.size() && lens.size() == exprs.size();
}

// hs_compile_lit_multi, a rejected literal coming back as its index and Vectorscan's message.
tl::expected<hs_database*, CompileError> compile_lit(const std::vector<const char*>& exprs,
                                                      const std::vector<unsigned>& flags,
                                                      const std::vector<unsigned>& ids,
                                                      const std::vector<size_t>& lens, unsigned mode) {
  hs_database_t* db = nullptr;
  hs_compile_error_t* err = nullptr;
  // This machine's platform without AVX512VBMI: Debian 12's Vectorscan (5.4.9) cannot
  // allocate scratch space for a database built for it (HS_DB_PLATFORM_ERROR), on a CPU
  // that has it (bench/matcher/vectorscan_check.c).
  hs_platform_info_t platform{};
  const hs_platform_info_t* target = nullptr;
  if (hs_populate_platform(&platform) == HS_SUCCESS) {
    platform.cpu_features &= ~static_cast<unsigned long long>(HS_CPU_FEATURES_AVX512VBMI);
    target = &platform;
  }
  hs_error_t rc = hs_compile_lit_multi(exprs.data(), flags.data(), ids.data(), lens.data(),
                                       static_cast<unsigned>(exprs.size()), mode, target, &db, &err);
  if (rc == HS_SUCCESS) return db;
  CompileError error{err != nullptr && err->message != nullptr ? err->message : "unknown error",
                     err != nullptr ? err->expression : -1};
  if (err != nullptr) hs_free_compile_error(err);
  return tl::unexpected<CompileError>(std::move(error));
}

[[noreturn]] void run_child(int fd, pid_t parent, const std::vector<const char*>& exprs,
                            const std::vector<unsigned>& flags, const std::vector<unsigned>& ids,
                            const std::vector<size_t>& lens, unsigned mode) {
  // Never outlive the enforcer: SIGKILL when the thread that forked us goes (a whole-process
  // exit included). Set after fork, so the parent may already be gone: then getppid()
  // is no longer it.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(127);
  ::prctl(PR_SET_NAME, "cnn-compile");
  // The enforcer's sockets, pidfds and inotify descriptors are not ours to keep open.
  if (fd > 3) ::close_range(3, static_cast<unsigned>(fd) - 1, 0);
  ::close_range(static_cast<unsigned>(fd) + 1, ~0U, 0);
  // If the node runs out of memory mid-compile, we are the process to kill: the enforcer
  // then reports a failed reload and keeps serving. Raising one's own score needs no
  // privilege; failing to is harmless.
  int oom = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (oom >= 0) {
    (void)write_full(oom, "1000", 4);
    ::close(oom);
  }

  // The enforcer keeps large blocks in mappings of their own (its main()); the compiler
  // allocates and frees hundreds of MiB in blocks of every size and is gone in seconds:
  // heap allocations, never trimmed, are faster for it (100,000 strings: ~15%).
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);

  auto db = compile_lit(exprs, flags, ids, lens, mode);
  if (!db) {
    const std::string& message = db.error().message;
    reply(fd, kRejected, db.error().expression, message.data(), message.size());
    ::_exit(0);
  }
  char* bytes = nullptr;
  size_t length = 0;
  if (hs_serialize_database(*db, &bytes, &length) != HS_SUCCESS) {
    const char* message = "cannot serialize the compiled database";
    reply(fd, kFailed, -1, message, std::strlen(message));
    ::_exit(0);
  }
  reply(fd, kCompiled, -1, bytes, length);
  ::_exit(0);  // the kernel frees the compiler's memory at once, faster than free() would
}

// Kills (if still running) and reaps the child on every way out of the parent's side.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  ~ChildGuard() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    (void)wait();
  }
  // Waits for the child to end; its wait status, or -1.
  int wait(rusage* usage = nullptr) {
    int status = 0;
    rusage ignored{};
    pid_t r;
    do r = ::wait4(pid_, &status, 0, usage != nullptr ? usage : &ignored);
    while (r < 0 && errno == EINTR);
    pid_ = -1;
    return r < 0 ? -1 : status;
  }

 private:
  pid_t pid_;
};

std::string describe_exit(int status) {
  if (status < 0) return "database compiler process: cannot wait for it: " + std::string(std::strerror(errno));
  if (WIFSIGNALED(status)) return "database compiler process killed by signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
    return "database compiler process exited with status " + std::to_string(WEXITSTATUS(status));
  return "";
}

// An anonymous mapping, unmapped when it goes: the serialized database is received outside
// malloc so that its 12 MiB neither stay in the heap nor raise glibc's mmap threshold
// (which would put the next deserialized database into the heap, where it is never given
// back).
class Mapping {
 public:
  explicit Mapping(size_t size) : size_(size) {
    void* p = ::mmap(nullptr, size_ == 0 ? 1 : size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<char*>(p);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (data_ != nullptr) ::munmap(data_, size_ == 0 ? 1 : size_);
  }
  char* data() const { return data_; }

 private:
  size_t size_;
  char* data_ = nullptr;
};

}  // namespace

tl::expected<hs_database*, CompileError> compile_literals_isolated(const std::vector<const char*>& exprs,
                                                                    const std::vector<unsigned>& flags,
                                                                    const std::vector<unsigned>& ids,
                                                                    const std::vector<size_t>& lens, unsigned mode,
                                                                    CompileStats* stats) {
  auto failure = [](std::string message, int expression = -1) {
    return tl::unexpected<CompileError>(CompileError{std::move(message), expression});
  };
  if (!same_lengths(exprs, flags, ids, lens)) return failure("compile_literals_isolated: arrays of different lengths");
  if (stats != nullptr) *stats = CompileStats{};

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return failure(std::string("pipe2: ") + std::strerror(errno));
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  const pid_t parent = ::getpid();
  pid_t pid;
  {
    std::lock_guard<std::mutex> no_compile_in_flight(kCompileMutex);
    pid = ::fork();
  }
  if (pid < 0) return failure(std::string("cannot start the database compiler process: fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::close(fds[0]);
    run_child(fds[1], parent, exprs, flags, ids, lens, mode);
  }
  ChildGuard child(pid);
  if (stats != nullptr) stats->child = pid;
  write_end.reset();  // so that the child's death is end of file here

  // The reply, then end of file; only then the exit status, which decides: a child killed
  // after a whole reply still counts as killed (its reply may be one it did not finish).
  ReplyHeader h{};
  ssize_t got = read_full(read_end.get(), &h, sizeof h);
  bool header_ok = got == static_cast<ssize_t>(sizeof h) && h.magic == kMagic &&
                   h.length <= (h.status == kCompiled ? kMaxDatabase : kMaxMessage);
  std::unique_ptr<Mapping> payload;
  ssize_t payload_got = -1;
  if (header_ok) {
    payload = std::make_unique<Mapping>(static_cast<size_t>(h.length));
    if (payload->data() == nullptr) return failure("cannot map " + std::to_string(h.length) + " bytes for the database");
    payload_got = read_full(read_end.get(), payload->data(), static_cast<size_t>(h.length));
  }
  read_end.reset();
  rusage usage{};
  int status = child.wait(&usage);
  if (stats != nullptr) stats->child_max_rss_kib = usage.ru_maxrss;
  if (std::string died = describe_exit(status); !died.empty()) return failure(died);
  if (got == static_cast<ssize_t>(sizeof h) && !header_ok)
    return failure("database compiler process sent a malformed reply (status " + std::to_string(h.status) +
                   ", " + std::to_string(h.length) + " bytes)");
  if (!header_ok || payload_got != static_cast<ssize_t>(h.length)) {
    return failure("database compiler process sent a short reply (" +
                   std::to_string(got < 0 ? 0 : got) + " of " + std::to_string(sizeof h) + " header bytes, " +
                   std::to_string(payload_got < 0 ? 0 : payload_got) + " of " +
                   std::to_string(header_ok ? h.length : 0) + " payload bytes)");
  }
  if (h.status != kCompiled) return failure(std::string(payload->data(), static_cast<size_t>(h.length)), h.expression);

  if (stats != nullptr) stats->serialized_bytes = static_cast<size_t>(h.length);
  hs_database_t* db = nullptr;
  if (hs_error_t rc = hs_deserialize_database(payload->data(), static_cast<size_t>(h.length), &db); rc != HS_SUCCESS)
    return failure("cannot deserialize the compiled database (Vectorscan error " + std::to_string(rc) + ")");
  return db;
}

tl::expected<hs_database*, CompileError> compile_literals_here(const std::vector<const char*>& exprs,
                                                                const std::vector<unsigned>& flags,
                                                                const std::vector<unsigned>& ids,
                                                                const std::vector<size_t>& lens, unsigned mode) {
  if (!same_lengths(exprs, flags, ids, lens))
    return tl::unexpected<CompileError>(CompileError{"compile_literals_here: arrays of different lengths", -1});
  std::lock_guard<std::mutex> lock(kCompileMutex);
  return compile_lit(exprs, flags, ids, lens, mode);
}

}  // namespace cryptnono::enforcer
