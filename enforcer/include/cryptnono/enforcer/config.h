// cryptnono-compatible execwhacker configuration:
//   {"bannedCommandStrings": ["...", ...], "allowedCommandPatterns": ["regex", ...]}
// Either key may be absent; unknown keys are warnings. Several files merge into one
// (the union of both lists). Every entry remembers its file, index and line so that
// later errors (a regex RE2 rejects) can point at it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cryptnono/result.h"

namespace cryptnono::enforcer {

inline constexpr std::string_view kBannedKey = "bannedCommandStrings";
inline constexpr std::string_view kAllowedKey = "allowedCommandPatterns";

struct ConfigEntry {
  std::string value;  // as written in the file (not casefolded)
  std::string file;
  size_t index = 0;  // position in its list in its file
  size_t line = 0;   // 1-based
};

struct ExecwhackerConfig {
  std::vector<ConfigEntry> banned;
  std::vector<ConfigEntry> allowed;
  std::vector<std::string> files;     // where it came from, in order
  std::vector<std::string> warnings;  // e.g. unknown keys: logged, not fatal
};

// Parses one file's text. `name` is used in messages. Errors read
// "<name>:<line>:<column>: <reason>" for JSON syntax and
// "<name>:<line>: bannedCommandStrings[<i>]: <reason>" for bad entries.
Result<ExecwhackerConfig> parse_config(std::string_view text, const std::string& name);

// Appends `from` to `into` (the union of the lists; duplicates are removed later, when
// the matcher is built, after casefolding).
void merge_config(ExecwhackerConfig& into, ExecwhackerConfig&& from);

// Reads a whole file (configs are small; 64 MiB is the refusal limit).
Result<std::string> read_text_file(const std::string& path);

// Reads and parses every file and merges them. `contents` (optional) receives each
// file's bytes, so a watcher can tell whether anything changed.
Result<ExecwhackerConfig> load_config_files(const std::vector<std::string>& paths,
                                            std::vector<std::string>* contents = nullptr);

// "<line>:<column>" (1-based) of a byte offset, as editors count (bytes, not characters).
std::pair<size_t, size_t> line_and_column(std::string_view text, size_t offset);

}  // namespace cryptnono::enforcer
