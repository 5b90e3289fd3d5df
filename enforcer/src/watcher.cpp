#include "cryptnono/enforcer/watcher.h"

#include <fnmatch.h>
#include <glob.h>
#include <malloc.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>

#include "cryptnono/enforcer/address.h"
#include "cryptnono/enforcer/config.h"
#include "cryptnono/sched.h"

namespace cryptnono::enforcer {

namespace {

constexpr uint32_t kWatchMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM;

bool has_wildcard(std::string_view s) { return s.find_first_of("*?[") != std::string_view::npos; }

// The directories a pattern's files live in: its directory part, expanded when it has
// wildcards itself.
std::vector<std::string> directories_of(const std::string& pattern, bool globs) {
  std::filesystem::path path(pattern);
  std::string dir = path.has_parent_path() ? path.parent_path().string() : ".";
  if (!globs || !has_wildcard(dir)) return {dir};
  std::vector<std::string> out;
  glob_t g{};
  if (::glob(dir.c_str(), GLOB_ONLYDIR, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  return out;
}

}  // namespace

Result<FileSnapshot> read_snapshot(const WatchSpec& spec) {
  FileSnapshot snap;
  snap.paths = spec.globs ? expand_globs(spec.patterns).files : spec.patterns;
  for (const auto& path : snap.paths) {
    auto text = read_text_file(path);
    if (!text) return tl::unexpected(text.error());
    snap.contents.push_back(std::move(*text));
  }
  return snap;
}

Result<std::unique_ptr<FileWatcher>> FileWatcher::start(WatchSpec spec, FileSnapshot initial, Apply apply,
                                                        std::function<void()> failed,
                                                        std::shared_ptr<spdlog::logger> log, int hup_fd,
                                                        int settle_ms, std::function<void()> first) {
  std::unique_ptr<FileWatcher> w(new FileWatcher());
  w->first_ = std::move(first);
  w->spec_ = std::move(spec);
  w->current_ = std::move(initial);
  w->apply_ = std::move(apply);
  w->failed_ = std::move(failed);
  w->log_ = std::move(log);
  w->hup_fd_ = hup_fd;
  w->settle_ms_ = settle_ms;
  w->inotify_ = UniqueFd(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!w->inotify_) return fail(std::string("inotify_init1: ") + std::strerror(errno));
  w->wake_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!w->wake_) return fail(std::string("eventfd: ") + std::strerror(errno));
  if (auto ok = w->add_watches(true); !ok) return tl::unexpected(ok.error());
  // A change between the start-up load and the watches being in place would otherwise go
  // unnoticed: check once now (an unchanged config costs a read and a compare).
  w->request_reload();
  w->thread_ = std::thread([raw = w.get()] { raw->loop(); });
  return w;
}

// Watches every directory the patterns name (inotify_add_watch on a directory already
// watched returns the same descriptor). `strict`: a directory of a plain path or of a
// wildcard-free pattern that cannot be watched is an error (at start-up).
Result<void> FileWatcher::add_watches(bool strict) {
  for (const auto& pattern : spec_.patterns) {
    std::string name = std::filesystem::path(pattern).filename().string();
    for (const auto& dir : directories_of(pattern, spec_.globs)) {
      int wd = inotify_add_watch(inotify_.get(), dir.c_str(), kWatchMask);
      if (wd < 0) {
        // A glob's directory may not exist yet: its files then simply match nothing.
        if (strict && !spec_.globs) return fail("cannot watch " + dir + ": " + std::strerror(errno));
        log_->debug("cannot watch {}: {}", dir, std::strerror(errno));
        continue;
      }
      Watch* watch = nullptr;
      for (auto& known : watches_)
        if (known.wd == wd) watch = &known;
      if (watch == nullptr) {
        watches_.push_back(Watch{wd, {}, spec_.globs});
        watch = &watches_.back();
      }
      bool listed = false;
      for (const auto& n : watch->names) listed = listed || n == name;
      if (!listed) watch->names.push_back(name);
    }
  }
  return {};
}

FileWatcher::~FileWatcher() {
  stop_.store(true);
  uint64_t one = 1;
  if (wake_) (void)!::write(wake_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void FileWatcher::request_reload() {
  reload_requested_.store(true);
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

// Reads every queued inotify event; true when one concerns a watched file: its own name
// (or a name its pattern matches), or a Kubernetes ConfigMap "..data"-style entry.
bool FileWatcher::drain_inotify() {
  bool relevant = false;
  alignas(inotify_event) char buf[16384];
  for (;;) {
    ssize_t n = ::read(inotify_.get(), buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      std::string name = ev->len > 0 ? std::string(ev->name) : std::string();
      if (ev->mask & IN_Q_OVERFLOW) relevant = true;
      if (name.rfind("..", 0) == 0) relevant = true;
      for (const auto& watch : watches_) {
        if (watch.wd != ev->wd) continue;
        for (const auto& pattern : watch.names) {
          bool hit = watch.patterns ? fnmatch(pattern.c_str(), name.c_str(), FNM_PERIOD) == 0 : name == pattern;
          relevant = relevant || hit;
        }
      }
      p += sizeof(inotify_event) + ev->len;
    }
  }
  return relevant;
}

void FileWatcher::loop() {
  // With --rt-priority this thread inherits SCHED_FIFO from the thread that started it.
  // A reload compiles for seconds (100,000 strings: ~6 s): real-time, it would hold its
  // CPU against the event loop at the same priority and against the node. Reloads run
  // in the normal policy instead; the event loop preempts them.
  if (auto left = leave_realtime_scheduling(); !left) log_->warn("config watcher: {}", left.error().message);
  // A reload leaves tens of MiB of freed heap (the parsed files, the build's temporaries,
  // then the configuration it replaced, which the event thread frees between events once
  // woken), and glibc keeps freed heap mapped. So shortly after a reload, once the old
  // configuration is gone too, the heap is handed back, here, off the event thread.
  std::optional<std::chrono::steady_clock::time_point> trim_at;
  if (first_) {
    first_();
    first_ = nullptr;
    trim_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
  }
  while (!stop_.load()) {
    pollfd fds[3] = {{inotify_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}, {hup_fd_, POLLIN, 0}};
    int timeout = -1;
    if (trim_at) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*trim_at - std::chrono::steady_clock::now());
      timeout = left.count() > 0 ? static_cast<int>(left.count()) : 0;
    }
    int n = ::poll(fds, hup_fd_ >= 0 ? 3 : 2, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      log_->error("config watcher: poll failed: {}", std::strerror(errno));
      return;
    }
    if (stop_.load()) return;
    if (trim_at && std::chrono::steady_clock::now() >= *trim_at) {
      malloc_trim(0);
      trim_at.reset();
    }
    bool reload_now = false;
    const char* why = "";
    if (fds[1].revents & POLLIN) {
      uint64_t v = 0;
      (void)!::read(wake_.get(), &v, sizeof v);
      if (reload_requested_.exchange(false)) {
        reload_now = true;
        why = "reload requested";
      }
    }
    if (hup_fd_ >= 0 && (fds[2].revents & POLLIN)) {
      signalfd_siginfo info{};
      (void)!::read(hup_fd_, &info, sizeof info);
      reload_now = true;
      why = "SIGHUP";
    }
    if (fds[0].revents & POLLIN) {
      if (drain_inotify()) {
        // Let the writer finish (create, then write; or a burst of renames): wait until the
        // directory has been quiet for settle_ms. This thread is not on the event path.
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        for (;;) {
          pollfd quiet[2] = {{inotify_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
          int m = ::poll(quiet, 2, settle_ms_);
          if (stop_.load()) return;
          if (m <= 0 || std::chrono::steady_clock::now() > deadline) break;
          if (quiet[0].revents & POLLIN) drain_inotify();
          if (quiet[1].revents & POLLIN) break;  // stop or explicit reload: handled next turn
        }
        reload_now = true;
        why = "config directory changed";
      }
    }
    if (reload_now) {
      reload(why);
      trim_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
    }
  }
}

void FileWatcher::reload(const char* why) {
  checks_.fetch_add(1);
  if (spec_.globs) (void)add_watches(false);  // directories that appeared since
  auto refuse = [&](const std::string& error) {
    log_->error("config reload refused ({}), keeping the current config: {}", why, error);
    if (failed_) failed_();
  };
  auto snapshot = read_snapshot(spec_);
  if (!snapshot) {
    // Same unreadable file as last time: already reported and counted.
    if (snapshot.error().message == rejected_error_) return;
    rejected_error_ = snapshot.error().message;
    rejected_ = {};
    refuse(snapshot.error().message);
    return;
  }
  rejected_error_.clear();
  if (*snapshot == current_) {
    log_->debug("config unchanged ({})", why);
    rejected_ = {};
    return;
  }
  if (*snapshot == rejected_) return;  // the same bad config, already reported and counted
  if (auto applied = apply_(*snapshot, why); !applied) {
    rejected_ = std::move(*snapshot);
    refuse(applied.error().message);
    return;
  }
  current_ = std::move(*snapshot);
  rejected_ = {};
}

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

Result<ExecwhackerConfig> parse_snapshot(const FileSnapshot& snap) {
  ExecwhackerConfig merged;
  for (size_t i = 0; i < snap.paths.size(); ++i) {
    auto parsed = parse_config(snap.contents[i], snap.paths[i]);
    if (!parsed) return tl::unexpected(parsed.error());
    merge_config(merged, std::move(*parsed));
  }
  return merged;
}

// Rebuilds the config of a layered matcher (Matcher::build) as one database and hands it
// over as the same rules; `base` then names it.
void rebuild_whole(ExecwhackerConfig merged, std::shared_ptr<const Matcher::Compiled>& base,
                   const ConfigWatcher::Callbacks& callbacks, spdlog::logger& log) {
  // The parsed config's file names and warnings go first (a string each per entry:
  // megabytes at 100,000), so the build's allocations reuse their memory instead of
  // landing above it.
  ExecwhackerConfig slim;
  slim.allowed = std::move(merged.allowed);
  slim.banned.reserve(merged.banned.size());
  for (auto& e : merged.banned) slim.banned.push_back(ConfigEntry{std::move(e.value), {}, e.index, e.line});
  merged = ExecwhackerConfig{};
  const auto start = Clock::now();
  auto whole = Matcher::build(slim);
  if (!whole) {
    log.warn("rebuilding the config database whole failed (the layered one keeps serving): {}",
             whole.error().message);
    return;
  }
  log.info("config database rebuilt whole in the background: {} banned strings in one database (compiled in "
           "{:.0f} ms); it replaces the layered one",
           (*whole)->banned_count(), ms_since(start));
  base = (*whole)->base();
  if (callbacks.compacted) {
    callbacks.compacted(std::move(*whole));
  } else if (callbacks.install) {
    callbacks.install(std::move(*whole));
  }
}

}  // namespace

Result<std::unique_ptr<ConfigWatcher>> ConfigWatcher::start(std::vector<std::string> paths,
                                                            std::vector<std::string> initial_contents,
                                                            std::shared_ptr<const Matcher::Compiled> serving,
                                                            bool serving_is_layered, Callbacks callbacks,
                                                            std::shared_ptr<spdlog::logger> log, int hup_fd,
                                                            int settle_ms) {
  std::unique_ptr<ConfigWatcher> w(new ConfigWatcher());
  FileSnapshot initial{paths, std::move(initial_contents)};
  // The whole-built database of the matcher serving now: a reload that changes a few
  // strings compiles only those and reuses it (Matcher::build). Only the watcher's thread
  // uses it.
  auto base = std::make_shared<std::shared_ptr<const Matcher::Compiled>>(std::move(serving));
  auto apply = [callbacks, log, base](const FileSnapshot& snap, const char* why) -> Result<void> {
    const auto start = Clock::now();
    auto merged = parse_snapshot(snap);
    if (!merged) return tl::unexpected(merged.error());
    const auto build_start = Clock::now();
    Matcher::BuildStats stats;
    // Whatever cannot be layered on the serving database compiles in two halves at once:
    // the rules are in force sooner, and rebuild_whole makes it one database again.
    auto matcher = Matcher::build(*merged, *base, &stats, Matcher::Compile::kTwoHalves);
    const double build_ms = ms_since(build_start);
    if (!matcher) return tl::unexpected(matcher.error());
    for (const auto& warning : merged->warnings) log->warn("{}", warning);
    const bool layered = (*matcher)->layered();
    if (stats.built_on_reuse()) {
      log->info(
          "config reloaded ({}): {} banned strings, {} allowed patterns (in force {:.0f} ms after the change was "
          "read; strings compiled: {}, reused from the serving database: {}, disabled: {}{})",
          why, (*matcher)->banned_count(), (*matcher)->allowed_count(), ms_since(start), stats.compiled, stats.reused,
          stats.disabled, layered ? "; the whole database is rebuilt in the background" : "");
    } else if (layered) {
      log->info(
          "config reloaded ({}): {} banned strings, {} allowed patterns (in force {:.0f} ms after the change was "
          "read; compiled in two halves at once in {:.0f} ms; the whole database is rebuilt in the background)",
          why, (*matcher)->banned_count(), (*matcher)->allowed_count(), ms_since(start), build_ms);
    } else {
      log->info("config reloaded ({}): {} banned strings, {} allowed patterns (compiled in {:.0f} ms)", why,
                (*matcher)->banned_count(), (*matcher)->allowed_count(), build_ms);
    }
    *base = (*matcher)->base();
    if (callbacks.install) callbacks.install(std::move(*matcher));
    // The layered matcher scans two databases (and may keep disabled strings): rebuild
    // the config whole while it serves, and swap. The rules are the same.
    if (layered) rebuild_whole(std::move(*merged), *base, callbacks, *log);
    return {};
  };
  // A start-up matcher compiled in two halves is rebuilt whole first thing.
  std::function<void()> first;
  if (serving_is_layered) {
    first = [snap = initial, callbacks, log, base]() {
      auto merged = parse_snapshot(snap);
      if (!merged) {
        log->warn("rebuilding the start-up config whole failed (the layered one keeps serving): {}",
                  merged.error().message);
        return;
      }
      rebuild_whole(std::move(*merged), *base, callbacks, *log);
    };
  }
  auto files = FileWatcher::start(WatchSpec{std::move(paths), false}, std::move(initial), std::move(apply),
                                  callbacks.failed, std::move(log), hup_fd, settle_ms, std::move(first));
  if (!files) return tl::unexpected(files.error());
  w->files_ = std::move(*files);
  return w;
}

}  // namespace cryptnono::enforcer
