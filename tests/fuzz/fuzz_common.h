// Shared by the libFuzzer targets: a fixed rule set, a Killer that never kills, and the
// invariant every rendered line must keep. Built only with -DCRYPTNONO_FUZZ=ON (clang).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cryptnono/enforcer/config.h"
#include "cryptnono/enforcer/killer.h"
#include "cryptnono/enforcer/matcher.h"

namespace cryptnono::fuzz {

// Stops the run with a message: libFuzzer saves the input that got here as a crash.
[[noreturn]] inline void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz invariant broken: %s: %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

// A banned list with ASCII, non-ASCII (casefolding expands ß to ss, K (Kelvin) to k),
// a string with a space and one with a quote, so the shlex join and casefold paths matter.
inline const char* kRules = R"({
  "bannedCommandStrings": ["xmrig", "minerd --url", "stratum+tcp", "Straße", "\u212Aryptonight", "it's", "pool.example"],
  "allowedCommandPatterns": ["^/usr/bin/grep ", "^(/usr/bin/)?cat .*xmrig\\.conf$"]
})";

inline std::unique_ptr<enforcer::Matcher> make_matcher() {
  auto config = enforcer::parse_config(kRules, "fuzz-rules.json");
  if (!config) fail("rules do not parse", config.error().message);
  auto matcher = enforcer::Matcher::build(*config);
  if (!matcher) fail("rules do not compile", matcher.error().message);
  return std::move(*matcher);
}

// The same rules as make_matcher(), built as a live reload leaves them until the
// background rebuild: on top of an older list's database (two of today's strings missing,
// one string since dropped), with the two missing ones compiled on their own.
inline std::unique_ptr<enforcer::Matcher> make_layered_matcher() {
  auto older = enforcer::parse_config(R"({"bannedCommandStrings": ["xmrig", "minerd --url", "stratum+tcp",
    "Straße", "\u212Aryptonight", "ethminer"]})", "fuzz-older.json");
  auto config = enforcer::parse_config(kRules, "fuzz-rules.json");
  if (!older || !config) fail("rules do not parse");
  auto base = enforcer::Matcher::build(*older);
  if (!base) fail("older rules do not compile", base.error().message);
  auto matcher = enforcer::Matcher::build(*config, (*base)->base());
  if (!matcher) fail("rules do not compile on the older database", matcher.error().message);
  if (!(*matcher)->layered()) fail("the reload was not layered");
  return std::move(*matcher);
}

// Verifies nothing and kills nothing: every open succeeds, the "full" cmdline of a
// truncated event is the given bytes, and kill() only counts. No process is touched.
class InertTarget final : public enforcer::Target {
 public:
  explicit InertTarget(std::string argv) : argv_(std::move(argv)) {}
  enforcer::KillOutcome read_cmdline(std::string& out) override {
    out = argv_;
    return {enforcer::KillStatus::kOk, {}};
  }
  enforcer::KillOutcome kill() override { return {enforcer::KillStatus::kOk, {}}; }

 private:
  std::string argv_;
};

class InertKiller final : public enforcer::Killer {
 public:
  std::string proc_argv;  // what read_cmdline answers
  enforcer::Opened open(pid_t, uint64_t, const enforcer::EventIdentity&) override {
    enforcer::Opened o;
    o.outcome.status = enforcer::KillStatus::kOk;
    o.target = std::make_unique<InertTarget>(proc_argv);
    return o;
  }
};

// The promise of json_view.h: one line, valid JSON, ends with '\n'.
inline void check_one_json_line(const std::string& line) {
  if (line.empty() || line.back() != '\n') fail("line does not end with a newline", line);
  if (line.find('\n') != line.size() - 1) fail("line holds a raw newline", line);
  auto parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) fail("line is not valid JSON", line);
}

}  // namespace cryptnono::fuzz
