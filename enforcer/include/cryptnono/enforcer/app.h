// The cryptnono-enforcer binary's configuration and start-up steps, kept out of main.cpp
// so that tests can drive them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cryptnono/enforcer/matcher.h"
#include "cryptnono/result.h"

namespace cryptnono::enforcer {

inline constexpr const char* kEmbeddedConfigName = "<embedded default config>";

struct Config {
  std::string detector = "execwhacker";
  std::vector<std::string> configs;  // empty: the embedded default config
  std::vector<std::string> connect = {"ipc:///run/cryptnono/collector.sock"};
  std::string bind = "ipc:///run/cryptnono/execwhacker.sock";
  bool dry_run = false;
  std::string node;  // empty: $NODE_NAME, else the hostname
  double stats_interval_seconds = 5;
  std::string log_level = "info";
  bool check = false;
};

struct LoadedRules {
  std::unique_ptr<Matcher> matcher;
  std::vector<std::string> contents;  // each file's bytes (empty for the embedded config)
  std::vector<std::string> warnings;  // unknown keys and the like
  std::string description;            // "a.json, b.json" or "the embedded default config"
};

// Reads, parses, merges and compiles `paths`, or the embedded default config when empty.
// Errors carry file, line and reason.
Result<LoadedRules> load_rules(const std::vector<std::string>& paths);

// "ok: 3 banned strings, 1 allowed patterns from a.json, b.json"
std::string check_line(const LoadedRules& rules);

}  // namespace cryptnono::enforcer
