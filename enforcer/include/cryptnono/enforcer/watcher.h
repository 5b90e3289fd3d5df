// Reloads the configuration without a restart. A thread watches the DIRECTORY of each
// config file with inotify (Kubernetes updates a ConfigMap volume by swapping a "..data"
// symlink, which a watch on the file itself would miss) and reloads on SIGHUP. It
// rebuilds the whole matcher off the event thread and hands it over; a bad new config is
// logged with file, line and reason, counted, and the old matcher keeps serving.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/logger.h>

#include "cryptnono/enforcer/killer.h"
#include "cryptnono/enforcer/matcher.h"

namespace cryptnono::enforcer {

class ConfigWatcher {
 public:
  struct Callbacks {
    std::function<void(std::unique_ptr<Matcher>)> install;  // a new config compiled
    std::function<void()> failed;                           // a changed config was refused
  };

  // `initial_contents`: the bytes of each file as loaded at start-up, so that only a real
  // change rebuilds. `hup_fd`: a signalfd for SIGHUP, or -1. `settle_ms`: after the last
  // directory event, wait this long before reading (writers often create, then write).
  static Result<std::unique_ptr<ConfigWatcher>> start(std::vector<std::string> paths,
                                                      std::vector<std::string> initial_contents, Callbacks callbacks,
                                                      std::shared_ptr<spdlog::logger> log, int hup_fd = -1,
                                                      int settle_ms = 100);
  // Stops and joins the thread.
  ~ConfigWatcher();

  // Thread-safe. Re-reads the files now, as SIGHUP does.
  void request_reload();
  // Number of times the files were read after start-up (changed or not), for tests.
  uint64_t checks() const { return checks_.load(); }

 private:
  ConfigWatcher() = default;
  void loop();
  bool drain_inotify();
  void reload(const char* why);

  std::vector<std::string> paths_;
  std::vector<std::string> contents_;     // of the config that serves
  std::vector<std::string> rejected_;     // of the last refused config (not re-reported)
  std::string rejected_error_;
  Callbacks callbacks_;
  std::shared_ptr<spdlog::logger> log_;
  int hup_fd_ = -1;
  int settle_ms_ = 100;
  UniqueFd inotify_;
  UniqueFd wake_;
  std::vector<std::pair<int, std::vector<std::string>>> watches_;  // wd -> file names in that dir
  std::atomic<bool> stop_{false};
  std::atomic<bool> reload_requested_{false};
  std::atomic<uint64_t> checks_{0};
  std::thread thread_;
};

}  // namespace cryptnono::enforcer
