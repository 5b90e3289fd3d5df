// The cryptnono-enforcer binary's configuration and start-up steps, kept out of main.cpp
// so that tests can drive them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cryptnono/enforcer/address.h"
#include "cryptnono/enforcer/flowkiller.h"
#include "cryptnono/enforcer/matcher.h"
#include "cryptnono/enforcer/watcher.h"
#include "cryptnono/curve.h"
#include "cryptnono/result.h"

namespace cryptnono::enforcer {

inline constexpr const char* kEmbeddedConfigName = "<embedded default config>";

struct Config {
  std::string detector = "execwhacker";  // execwhacker, monero or flowkiller
  std::vector<std::string> configs;  // execwhacker; empty: the embedded default config
  std::vector<std::string> connect = {"ipc:///run/cryptnono/collector.sock"};
  // The collector's direct socket (cryptnono/direct.h): "auto" derives it from the first
  // ipc:// --connect endpoint (collector.sock -> collector.direct), "off" disables it.
  std::string direct = "auto";
  // Take the collector's kernel ring (direct.h) when offered: execs straight from the probe.
  bool kernel_ring = true;
  std::string bind;  // empty: ipc:///run/cryptnono/<detector>.sock
  // flowkiller
  std::vector<std::string> banned_ips;  // glob patterns of banned-destination files
  FlowkillerOptions flowkiller;
  bool dry_run = false;
  std::string node;  // empty: $NODE_NAME, else the hostname
  double stats_interval_seconds = 5;
  uint32_t no_match_batch_ms = 20;  // EnforcerOptions::no_match_batch_ms
  uint32_t kill_decision_delay_ms = 5;  // EnforcerOptions::kill_decision_delay_ms
  bool wake_filter = true;              // EnforcerOptions::wake_filter
  uint32_t ring_batch_ms = 20;          // EnforcerOptions::ring_batch_ms
  uint32_t exit_wait_us = 1000;         // PidfdKiller::wait_for_exit_us
  std::string log_level = "info";
  bool check = false;
  std::vector<std::string> also_bind;
  int send_hwm = 10'000;
  double wait_for_subscriber_seconds = 2;
  CurveOptions curve;
  // Opt-in scheduling of every thread (cryptnono/sched.h): SCHED_FIFO at this priority
  // (0: the default policy) and pinning to these CPUs ("": anywhere).
  int rt_priority = 0;
  std::string cpus;
};

struct LoadedRules {
  std::unique_ptr<Matcher> matcher;
  std::vector<std::string> contents;  // each file's bytes (empty for the embedded config)
  std::vector<std::string> warnings;  // unknown keys and the like
  std::string description;            // "a.json, b.json" or "the embedded default config"
};

// Reads, parses, merges and compiles `paths`, or the embedded default config when empty.
// Errors carry file, line and reason.
// `compile`: Matcher::Compile::kTwoHalves when a config watcher will rebuild the result
// whole (ConfigWatcher::start's serving_is_layered).
Result<LoadedRules> load_rules(const std::vector<std::string>& paths,
                               Matcher::Compile compile = Matcher::Compile::kOnce);

// "ok: 3 banned strings, 1 allowed patterns from a.json, b.json"
std::string check_line(const LoadedRules& rules);

// The default --bind of a detector.
std::string default_bind(const std::string& detector);

// The flowkiller's banned destinations, as read from the files the patterns match.
struct LoadedBanned {
  std::shared_ptr<const BannedSet> set;
  BannedList list;                    // entries, bad lines ("file:line: reason"), files
  std::vector<std::string> warnings;  // patterns that match nothing
  FileSnapshot snapshot;              // what was read, for the watcher
};

// Builds the banned set from a snapshot (bad lines are reported in list.errors, never
// fatal).
LoadedBanned build_banned(FileSnapshot snapshot);
// Expands the patterns, reads and parses the files. Only an unreadable file is an error.
Result<LoadedBanned> load_banned(const std::vector<std::string>& patterns);

// "ok: flowkiller: 12 banned destinations from 2 files (1 bad line); fan-out: more than
// 15 unique public destinations in 30 s"
std::string check_line(const LoadedBanned& banned, const FlowkillerOptions& options);

}  // namespace cryptnono::enforcer
