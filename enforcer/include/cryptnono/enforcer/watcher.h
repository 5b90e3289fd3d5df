// Reloads configuration files without a restart. A thread watches the DIRECTORY of each
// file with inotify (Kubernetes updates a ConfigMap volume by swapping a "..data"
// symlink, which a watch on the file itself would miss) and reloads on SIGHUP. On a
// change it reads everything again and hands the snapshot to the caller, who builds the
// new configuration off the event thread and installs it; a snapshot the caller refuses
// is logged, counted, and the old configuration keeps serving.
//
// FileWatcher is the general mechanism (plain files, or glob patterns whose set of files
// may change); ConfigWatcher is execwhacker's use of it (cryptnono JSON configs compiled
// into a Matcher).
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

// The files as read at one moment.
struct FileSnapshot {
  std::vector<std::string> paths;
  std::vector<std::string> contents;
  bool operator==(const FileSnapshot& o) const { return paths == o.paths && contents == o.contents; }
};

struct WatchSpec {
  // Plain paths (each must exist and be readable), or glob patterns when `globs`: then
  // the files are whatever the patterns match at each reload (none is not an error), and
  // a file that appears later is picked up. A directory part with wildcards is expanded
  // at each reload too (directories that appear later are watched from then on).
  std::vector<std::string> patterns;
  bool globs = false;
};

// Reads what `spec` names now.
Result<FileSnapshot> read_snapshot(const WatchSpec& spec);

class FileWatcher {
 public:
  // Builds and installs the configuration of a changed snapshot (on the watcher thread);
  // an error refuses it. `why` says what triggered the reload ("SIGHUP", ...).
  using Apply = std::function<Result<void>(const FileSnapshot& snapshot, const char* why)>;

  // `initial`: the snapshot loaded at start-up, so that only a real change rebuilds.
  // `failed`: called when a changed snapshot is refused (or cannot be read). `hup_fd`: a
  // signalfd for SIGHUP, or -1. `settle_ms`: after the last directory event, wait this
  // long before reading (writers often create, then write).
  // `first`: run on the watcher's thread before it looks at the files (work that must not
  // overlap with an apply, such as rebuilding the start-up config).
  static Result<std::unique_ptr<FileWatcher>> start(WatchSpec spec, FileSnapshot initial, Apply apply,
                                                    std::function<void()> failed,
                                                    std::shared_ptr<spdlog::logger> log, int hup_fd = -1,
                                                    int settle_ms = 100, std::function<void()> first = nullptr);
  // Stops and joins the thread.
  ~FileWatcher();

  // Thread-safe. Re-reads the files now, as SIGHUP does.
  void request_reload();
  // Number of times the files were read after start-up (changed or not), for tests.
  uint64_t checks() const { return checks_.load(); }

 private:
  FileWatcher() = default;
  Result<void> add_watches(bool strict);
  void loop();
  bool drain_inotify();
  void reload(const char* why);

  struct Watch {
    int wd = -1;
    std::vector<std::string> names;  // file names (or fnmatch patterns) in that directory
    bool patterns = false;
  };

  WatchSpec spec_;
  FileSnapshot current_;   // of the configuration that serves
  FileSnapshot rejected_;  // of the last refused snapshot (not re-reported)
  std::string rejected_error_;
  Apply apply_;
  std::function<void()> failed_;
  std::function<void()> first_;
  std::shared_ptr<spdlog::logger> log_;
  int hup_fd_ = -1;
  int settle_ms_ = 100;
  UniqueFd inotify_;
  UniqueFd wake_;
  std::vector<Watch> watches_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> reload_requested_{false};
  std::atomic<uint64_t> checks_{0};
  std::thread thread_;
};

// execwhacker's configs: on a change, parses and merges the JSON files and compiles a new
// Matcher, then hands it to `install`.
class ConfigWatcher {
 public:
  struct Callbacks {
    std::function<void(std::unique_ptr<Matcher>)> install;  // a new config compiled
    std::function<void()> failed;                           // a changed config was refused
    // The same rules as the matcher installed last, rebuilt whole after a layered build
    // (Matcher::build): not a new config. Unset: handed to `install`.
    std::function<void(std::unique_ptr<Matcher>)> compacted;
  };

  // `initial_contents`: the bytes of each file as loaded at start-up; `serving`: base() of
  // the matcher built from them (reused by reloads that change a few strings);
  // `serving_is_layered`: that matcher is layered (compiled in two halves), so the watcher
  // first rebuilds it whole and hands it to `compacted`.
  static Result<std::unique_ptr<ConfigWatcher>> start(std::vector<std::string> paths,
                                                      std::vector<std::string> initial_contents,
                                                      std::shared_ptr<const Matcher::Compiled> serving,
                                                      bool serving_is_layered, Callbacks callbacks,
                                                      std::shared_ptr<spdlog::logger> log, int hup_fd = -1,
                                                      int settle_ms = 100);

  void request_reload() { files_->request_reload(); }
  uint64_t checks() const { return files_->checks(); }

 private:
  ConfigWatcher() = default;
  std::unique_ptr<FileWatcher> files_;
};

}  // namespace cryptnono::enforcer
