// The Vectorscan compile in a child process: the database that comes back matches exactly
// as one compiled in-process, a rejected literal comes back with its index and message, a
// compiler killed mid-compile is reported (and reaped), and the compiler dies with its
// parent. The child is found through /proc (its parent pid and its name), so these tests
// kill a real compiler, not a stand-in.
#include "cryptnono/enforcer/compile_worker.h"

#include <dirent.h>
#include <stdlib.h>
#include <hs/hs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>

#include "cryptnono/enforcer/config.h"
#include "cryptnono/enforcer/watcher.h"

namespace cryptnono::enforcer {
namespace {

struct Literals {
  std::vector<std::string> strings;
  std::vector<const char*> exprs;
  std::vector<unsigned> flags;
  std::vector<unsigned> ids;
  std::vector<size_t> lens;

  void add(std::string s, unsigned flag = HS_FLAG_CASELESS) {
    strings.push_back(std::move(s));
    flags.push_back(flag);
    ids.push_back(static_cast<unsigned>(ids.size()));
  }
  // After the last add(): the pointers into `strings` are stable from here on.
  void seal() {
    exprs.clear();
    lens.clear();
    for (const auto& s : strings) {
      exprs.push_back(s.data());
      lens.push_back(s.size());
    }
  }
};

Literals random_literals(size_t count, uint64_t seed) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:/";
  std::mt19937_64 rng(seed);
  Literals l;
  for (size_t i = 0; i < count; ++i) {
    std::string s;
    size_t len = 3 + rng() % 40;  // short ones too, so that they overlap in the texts
    for (size_t k = 0; k < len; ++k) s.push_back(kChars[rng() % (sizeof kChars - 1)]);
    l.add(std::move(s));
  }
  l.seal();
  return l;
}

using Hits = std::vector<std::tuple<size_t, unsigned, unsigned long long>>;  // text, id, end

Hits scan_all(hs_database_t* db, const std::vector<std::string>& texts) {
  hs_scratch_t* scratch = nullptr;
  EXPECT_EQ(hs_alloc_scratch(db, &scratch), HS_SUCCESS);
  struct Ctx {
    Hits* hits;
    size_t text;
  };
  Hits hits;
  for (size_t t = 0; t < texts.size(); ++t) {
    Ctx ctx{&hits, t};
    auto on_match = [](unsigned id, unsigned long long, unsigned long long to, unsigned, void* c) -> int {
      auto* ctx = static_cast<Ctx*>(c);
      ctx->hits->emplace_back(ctx->text, id, to);
      return 0;
    };
    EXPECT_EQ(hs_scan(db, texts[t].data(), static_cast<unsigned>(texts[t].size()), 0, scratch, on_match, &ctx),
              HS_SUCCESS);
  }
  hs_free_scratch(scratch);
  return hits;
}

// Reaped: no such process any more. A zombie still answers kill(pid, 0).
bool reaped(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

std::string read_first_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// The process state letter of /proc/PID/stat ('\0' when it is gone).
char state_of(pid_t pid) {
  std::string stat = read_first_line("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ? '\0' : stat[paren + 2];
}

// The children of `parent` named cnn-compile.
std::vector<pid_t> compilers_of(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::string stat = read_first_line("/proc/" + std::to_string(pid) + "/stat");
    size_t open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && stat.substr(open + 1, close - open - 1) == "cnn-compile") out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  return out;
}

// Waits (up to 60 s: the machine is shared) for a compiler child of `parent` that has
// finished setting itself up (its OOM score raised, the last step before compiling).
pid_t wait_for_compiler(pid_t parent) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    for (pid_t pid : compilers_of(parent))
      if (read_first_line("/proc/" + std::to_string(pid) + "/oom_score_adj") == "1000") return pid;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return -1;
}

TEST(CompileWorker, DatabaseMatchesExactlyLikeOneCompiledInProcess) {
  Literals l = random_literals(3000, 20240601);
  // Texts with literals in them (in other case, overlapping, glued) and noise around them.
  std::mt19937_64 rng(7);
  std::vector<std::string> texts;
  for (int t = 0; t < 300; ++t) {
    std::string text = "/usr/bin/python3 -c 'print(1)' ";
    for (int k = 0; k < 4; ++k) {
      std::string s = l.strings[rng() % l.strings.size()];
      if (rng() % 2 == 0)
        for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      text += s;
      text += (rng() % 3 == 0) ? "" : " --opt=";
    }
    texts.push_back(std::move(text));
  }

  hs_database_t* local = nullptr;
  hs_compile_error_t* err = nullptr;
  ASSERT_EQ(hs_compile_lit_multi(l.exprs.data(), l.flags.data(), l.ids.data(), l.lens.data(),
                                 static_cast<unsigned>(l.exprs.size()), HS_MODE_BLOCK, nullptr, &local, &err),
            HS_SUCCESS);
  CompileStats stats;
  auto isolated = compile_literals_isolated(l.exprs, l.flags, l.ids, l.lens, HS_MODE_BLOCK, &stats);
  ASSERT_TRUE(isolated) << isolated.error().message;

  Hits want = scan_all(local, texts);
  Hits got = scan_all(*isolated, texts);
  EXPECT_GT(want.size(), texts.size() * 4);  // every inserted literal, and more
  EXPECT_EQ(got, want);
  size_t local_size = 0, isolated_size = 0;
  ASSERT_EQ(hs_database_size(local, &local_size), HS_SUCCESS);
  ASSERT_EQ(hs_database_size(*isolated, &isolated_size), HS_SUCCESS);
  EXPECT_EQ(isolated_size, local_size);

  EXPECT_GT(stats.child, 0);
  EXPECT_TRUE(reaped(stats.child)) << "the compiler process was not waited for";
  EXPECT_GT(stats.child_max_rss_kib, 0);
  EXPECT_GT(stats.serialized_bytes, 0u);
  hs_free_database(local);
  hs_free_database(*isolated);
}

// Vectorscan's own verdict, index and message, as the in-process compile gives them (the
// matcher turns the index into the file:line of the banned string).
TEST(CompileWorker, RejectedLiteralComesBackWithItsIndexAndMessage) {
  struct Case {
    const char* name;
    size_t bad;
    std::string value;
    unsigned flag;
  };
  for (const Case& c : {Case{"empty literal", 3, "", HS_FLAG_CASELESS},
                        Case{"flag the literal API refuses", 5, "stratum", HS_FLAG_UTF8}}) {
    SCOPED_TRACE(c.name);
    Literals l;
    for (size_t i = 0; i < 8; ++i) {
      if (i == c.bad)
        l.add(c.value, c.flag);
      else
        l.add("literal" + std::to_string(i));
    }
    l.seal();
    hs_database_t* db = nullptr;
    hs_compile_error_t* err = nullptr;
    ASSERT_NE(hs_compile_lit_multi(l.exprs.data(), l.flags.data(), l.ids.data(), l.lens.data(),
                                   static_cast<unsigned>(l.exprs.size()), HS_MODE_BLOCK, nullptr, &db, &err),
              HS_SUCCESS);
    std::string want_message = err->message;
    int want_index = err->expression;
    hs_free_compile_error(err);
    ASSERT_EQ(want_index, static_cast<int>(c.bad));

    CompileStats stats;
    auto isolated = compile_literals_isolated(l.exprs, l.flags, l.ids, l.lens, HS_MODE_BLOCK, &stats);
    ASSERT_FALSE(isolated);
    EXPECT_EQ(isolated.error().expression, want_index);
    EXPECT_EQ(isolated.error().message, want_message);
    EXPECT_TRUE(reaped(stats.child));

    auto here = compile_literals_here(l.exprs, l.flags, l.ids, l.lens, HS_MODE_BLOCK);
    ASSERT_FALSE(here);
    EXPECT_EQ(here.error().expression, want_index);
    EXPECT_EQ(here.error().message, want_message);
  }
}

// The in-process compile (a reload's few new strings) gives the same database, and a
// compile child forked from another thread meanwhile still compiles: the fork waits for
// the in-process compile to finish, so the child never inherits one half-done.
TEST(CompileWorker, InProcessCompileMatchesAndForksFromOtherThreadsStillWork) {
  Literals small = random_literals(800, 99);
  Literals big = random_literals(3000, 100);
  std::atomic<bool> stop{false};
  std::atomic<int> here_ok{0}, here_failed{0};
  std::thread compiler([&] {
    while (!stop.load()) {
      auto db = compile_literals_here(small.exprs, small.flags, small.ids, small.lens, HS_MODE_BLOCK);
      if (db) {
        ++here_ok;
        hs_free_database(*db);
      } else {
        ++here_failed;
      }
      // std::mutex is not fair: without a pause this loop would starve the fork.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  for (int i = 0; i < 3; ++i) {
    CompileStats stats;
    auto isolated = compile_literals_isolated(big.exprs, big.flags, big.ids, big.lens, HS_MODE_BLOCK, &stats);
    ASSERT_TRUE(isolated) << isolated.error().message;
    EXPECT_TRUE(reaped(stats.child));
    hs_free_database(*isolated);
  }
  stop = true;
  compiler.join();
  EXPECT_GT(here_ok.load(), 0);
  EXPECT_EQ(here_failed.load(), 0);

  std::vector<std::string> texts;
  for (size_t i = 0; i < small.strings.size(); i += 7) texts.push_back("/bin/x --o " + small.strings[i] + " y");
  auto here = compile_literals_here(small.exprs, small.flags, small.ids, small.lens, HS_MODE_BLOCK);
  auto isolated = compile_literals_isolated(small.exprs, small.flags, small.ids, small.lens, HS_MODE_BLOCK);
  ASSERT_TRUE(here) << here.error().message;
  ASSERT_TRUE(isolated) << isolated.error().message;
  Hits got = scan_all(*here, texts);
  EXPECT_GE(got.size(), texts.size());
  EXPECT_EQ(got, scan_all(*isolated, texts));
  hs_free_database(*here);
  hs_free_database(*isolated);
}

TEST(CompileWorker, MismatchedArraysAreRefusedWithoutAChild) {
  Literals l = random_literals(4, 1);
  l.lens.pop_back();
  CompileStats stats;
  auto isolated = compile_literals_isolated(l.exprs, l.flags, l.ids, l.lens, HS_MODE_BLOCK, &stats);
  ASSERT_FALSE(isolated);
  EXPECT_EQ(stats.child, -1);
}

// The kernel's OOM killer (or an operator) killing the compiler: a clear error, no
// database, no zombie; the caller keeps its old config.
TEST(CompileWorker, KilledCompilerIsReportedAndReaped) {
  Literals l = random_literals(60'000, 99);  // seconds of compile: time to find and kill it
  tl::expected<hs_database*, CompileError> result = tl::unexpected(CompileError{"not run", -1});
  CompileStats stats;
  std::thread compiling(
      [&] { result = compile_literals_isolated(l.exprs, l.flags, l.ids, l.lens, HS_MODE_BLOCK, &stats); });
  pid_t pid = wait_for_compiler(::getpid());
  if (pid > 0) ::kill(pid, SIGKILL);
  compiling.join();
  ASSERT_GT(pid, 0) << "no cnn-compile child with oom_score_adj 1000 appeared";
  ASSERT_FALSE(result) << "the compile finished before it could be killed";
  EXPECT_EQ(result.error().message, "database compiler process killed by signal 9");
  EXPECT_EQ(result.error().expression, -1);
  EXPECT_EQ(stats.child, pid);
  EXPECT_TRUE(reaped(pid));
}

// PR_SET_PDEATHSIG: an enforcer that dies mid-compile leaves no compiler behind. The
// "enforcer" here is a forked process compiling on a second thread, that exits.
TEST(CompileWorker, CompilerDiesWithItsParent) {
  Literals l = random_literals(60'000, 123);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t middle = ::fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    ::close(fds[0]);
    std::thread([&] { (void)compile_literals_isolated(l.exprs, l.flags, l.ids, l.lens, HS_MODE_BLOCK); }).detach();
    pid_t pid = wait_for_compiler(::getpid());
    (void)!::write(fds[1], &pid, sizeof pid);
    ::_exit(0);  // mid-compile
  }
  ::close(fds[1]);
  pid_t compiler = -1;
  ASSERT_EQ(::read(fds[0], &compiler, sizeof compiler), static_cast<ssize_t>(sizeof compiler));
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(middle, &status, 0), middle);
  ASSERT_GT(compiler, 0) << "no cnn-compile child appeared";
  // Gone, or a zombie waiting for a PID 1 that does not reap (some containers): either
  // way no longer compiling.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);  // the compile takes seconds
  char state = state_of(compiler);
  while (state != '\0' && state != 'Z' && state != 'X' && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    state = state_of(compiler);
  }
  EXPECT_TRUE(state == '\0' || state == 'Z' || state == 'X') << "compiler " << compiler << " still in state " << state;
}

// The whole reload path: the config watcher's Matcher::build compiles in a child; when that
// child is killed the reload is refused (and reported) and nothing is installed, and the
// next edit installs normally.
TEST(CompileWorker, ReloadWhoseCompilerIsKilledIsRefusedAndTheNextOneInstalls) {
  char dir_template[] = "/tmp/cnn-compile-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string path = dir + "/banned.json";
  auto config_text = [](const std::vector<std::string>& banned) {
    std::string text = "{\"" + std::string(kBannedKey) + "\": [";
    for (size_t i = 0; i < banned.size(); ++i) text += (i ? ",\"" : "\"") + banned[i] + "\"";
    return text + "]}\n";
  };
  auto write_atomically = [&](const std::string& text) {
    std::ofstream(path + ".new") << text;
    std::filesystem::rename(path + ".new", path);
  };
  Literals big = random_literals(60'000, 4242);
  std::vector<std::string> banned;
  for (const auto& s : big.strings) banned.push_back("cnnt" + s.substr(0, s.find_first_of(".-:/")));
  const std::string initial = config_text({"cnnt-initial-only"});
  write_atomically(initial);

  std::ostringstream log_text;
  auto log = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text));
  std::atomic<int> installed{0}, failed{0};
  std::atomic<size_t> installed_count{0};
  ConfigWatcher::Callbacks callbacks{[&](std::unique_ptr<Matcher> m) {
                                       installed_count = m->banned_count();
                                       ++installed;
                                     },
                                     [&] { ++failed; }};
  // No serving database to build on: every reload here compiles the whole config.
  auto watcher = ConfigWatcher::start({path}, {initial}, nullptr, false, std::move(callbacks), log, -1, 20);
  ASSERT_TRUE(watcher) << watcher.error().message;

  write_atomically(config_text(banned));
  pid_t pid = wait_for_compiler(::getpid());
  if (pid > 0) ::kill(pid, SIGKILL);
  auto wait_until = [](auto done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!done() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return done();
  };
  ASSERT_GT(pid, 0) << "the reload did not start a cnn-compile child";
  EXPECT_TRUE(wait_until([&] { return failed.load() == 1; })) << "the reload was not refused";
  EXPECT_EQ(installed.load(), 0);
  EXPECT_TRUE(reaped(pid));

  write_atomically(config_text({"cnnt-after-the-kill", "cnnt-second"}));
  EXPECT_TRUE(wait_until([&] { return installed.load() == 1; })) << "the next edit was not installed";
  EXPECT_EQ(installed_count.load(), 2u);
  EXPECT_EQ(failed.load(), 1);
  watcher->reset();  // joins the watcher thread: the log is complete
  EXPECT_NE(log_text.str().find("config reload refused (config directory changed), keeping the current config: "
                                "cannot compile banned strings: database compiler process killed by signal 9"),
            std::string::npos)
      << log_text.str();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cryptnono::enforcer
