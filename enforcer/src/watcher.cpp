#include "cryptnono/enforcer/watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "cryptnono/enforcer/config.h"

namespace cryptnono::enforcer {

namespace {
constexpr uint32_t kWatchMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM;
}

Result<std::unique_ptr<ConfigWatcher>> ConfigWatcher::start(std::vector<std::string> paths,
                                                            std::vector<std::string> initial_contents,
                                                            Callbacks callbacks, std::shared_ptr<spdlog::logger> log,
                                                            int hup_fd, int settle_ms) {
  std::unique_ptr<ConfigWatcher> w(new ConfigWatcher());
  w->paths_ = std::move(paths);
  w->contents_ = std::move(initial_contents);
  w->callbacks_ = std::move(callbacks);
  w->log_ = std::move(log);
  w->hup_fd_ = hup_fd;
  w->settle_ms_ = settle_ms;
  w->inotify_ = UniqueFd(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!w->inotify_) return fail(std::string("inotify_init1: ") + std::strerror(errno));
  w->wake_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!w->wake_) return fail(std::string("eventfd: ") + std::strerror(errno));
  for (const auto& p : w->paths_) {
    std::filesystem::path path(p);
    std::string dir = path.has_parent_path() ? path.parent_path().string() : ".";
    int wd = inotify_add_watch(w->inotify_.get(), dir.c_str(), kWatchMask);
    if (wd < 0) return fail("cannot watch " + dir + ": " + std::strerror(errno));
    bool found = false;
    for (auto& [known, names] : w->watches_) {
      if (known == wd) {  // same directory, watched once
        names.push_back(path.filename().string());
        found = true;
      }
    }
    if (!found) w->watches_.push_back({wd, {path.filename().string()}});
  }
  // A change between the start-up load and the watches being in place would otherwise go
  // unnoticed: check once now (an unchanged config costs a read and a compare).
  w->request_reload();
  w->thread_ = std::thread([raw = w.get()] { raw->loop(); });
  return w;
}

ConfigWatcher::~ConfigWatcher() {
  stop_.store(true);
  uint64_t one = 1;
  if (wake_) (void)!::write(wake_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void ConfigWatcher::request_reload() {
  reload_requested_.store(true);
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

// Reads every queued inotify event; true when one concerns a config file: its own name,
// or a Kubernetes ConfigMap "..data"-style entry.
bool ConfigWatcher::drain_inotify() {
  bool relevant = false;
  alignas(inotify_event) char buf[16384];
  for (;;) {
    ssize_t n = ::read(inotify_.get(), buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      std::string_view name = ev->len > 0 ? std::string_view(ev->name) : std::string_view();
      if (ev->mask & IN_Q_OVERFLOW) relevant = true;
      if (name.rfind("..", 0) == 0) relevant = true;
      for (const auto& [wd, names] : watches_)
        if (wd == ev->wd)
          for (const auto& n2 : names)
            if (name == n2) relevant = true;
      p += sizeof(inotify_event) + ev->len;
    }
  }
  return relevant;
}

void ConfigWatcher::loop() {
  while (!stop_.load()) {
    pollfd fds[3] = {{inotify_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}, {hup_fd_, POLLIN, 0}};
    int n = ::poll(fds, hup_fd_ >= 0 ? 3 : 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      log_->error("config watcher: poll failed: {}", std::strerror(errno));
      return;
    }
    if (stop_.load()) return;
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
    if (reload_now) reload(why);
  }
}

void ConfigWatcher::reload(const char* why) {
  checks_.fetch_add(1);
  auto refuse = [&](const std::string& error) {
    log_->error("config reload refused ({}), keeping the current config: {}", why, error);
    if (callbacks_.failed) callbacks_.failed();
  };
  std::vector<std::string> contents;
  for (const auto& path : paths_) {
    auto text = read_text_file(path);
    if (!text) {
      // Same unreadable file as last time: already reported and counted.
      if (text.error().message == rejected_error_) return;
      rejected_error_ = text.error().message;
      rejected_.clear();
      refuse(text.error().message);
      return;
    }
    contents.push_back(std::move(*text));
  }
  rejected_error_.clear();
  if (contents == contents_) {
    log_->debug("config unchanged ({})", why);
    rejected_.clear();
    return;
  }
  if (contents == rejected_) return;  // the same bad config, already reported and counted

  ExecwhackerConfig merged;
  for (size_t i = 0; i < paths_.size(); ++i) {
    auto parsed = parse_config(contents[i], paths_[i]);
    if (!parsed) {
      rejected_ = std::move(contents);
      refuse(parsed.error().message);
      return;
    }
    merge_config(merged, std::move(*parsed));
  }
  auto build_start = std::chrono::steady_clock::now();
  auto matcher = Matcher::build(merged);
  auto build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - build_start).count();
  if (!matcher) {
    rejected_ = std::move(contents);
    refuse(matcher.error().message);
    return;
  }
  for (const auto& w : merged.warnings) log_->warn("{}", w);
  log_->info("config reloaded ({}): {} banned strings, {} allowed patterns (compiled in {:.0f} ms)", why,
             (*matcher)->banned_count(), (*matcher)->allowed_count(), build_ms);
  contents_ = std::move(contents);
  rejected_.clear();
  if (callbacks_.install) callbacks_.install(std::move(*matcher));
}

}  // namespace cryptnono::enforcer
