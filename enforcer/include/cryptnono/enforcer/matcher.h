// The execwhacker matcher: Vectorscan finds an eight-byte "anchor" of every banned string
// (one literal database), the matcher checks the whole string and the word rule around
// it; every allowed pattern is an RE2 regex. Built off the event thread (compiling
// 100,000 strings takes a while) and handed to the event thread, which alone calls match().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <re2/re2.h>
#include <re2/set.h>

#include "cryptnono/enforcer/config.h"
#include "cryptnono/enforcer/wake_plan.h"
#include "cryptnono/result.h"

struct hs_database;
struct hs_scratch;

namespace cryptnono::enforcer {

class Matcher {
 public:
  struct Match {
    int banned = -1;     // index of the banned string found, -1 for none
    size_t offset = 0;   // where it starts in the casefolded command line
    int allowed = -1;    // index of the allowed pattern that spares it, -1 for none
    bool scan_failed = false;  // Vectorscan reported an error (never expected)
    bool found() const { return banned >= 0; }
  };

  // The compiled banned strings of one build (their Vectorscan database and the tables
  // around it). Immutable once built, so matchers on different threads share one.
  struct Compiled;

  // What build() did with the banned strings.
  struct BuildStats {
    size_t compiled = 0;  // strings compiled by this build
    size_t reused = 0;    // strings taken from `reuse`, compiled before
    size_t disabled = 0;  // strings of `reuse` that the config no longer has
    // Built on `reuse` (some strings not compiled again); Matcher::layered() says whether
    // the result still needs a whole rebuild.
    bool built_on_reuse() const { return reused > 0; }
  };

  // Casefolds and de-duplicates the banned strings, compiles them into one database and
  // every allowed pattern with RE2 (case-insensitive, anchored at the start, as Python's
  // re.match). A pattern RE2 rejects is an error naming its file, line, key and index.
  //
  // With `reuse` (base() of a matcher built before, normally the one serving), a config
  // that differs from it by a few strings is not compiled whole: the strings `reuse`
  // already has are matched through its database, the strings it has that the config
  // dropped are disabled, and only the new ones are compiled, into a second, small
  // database. Matching gives the same verdicts either way; a layered matcher scans twice
  // (the small database adds tens of ns) and keeps the disabled strings in memory, so
  // the caller rebuilds it whole in the background (build() without `reuse`) and swaps.
  // A larger difference (more new strings than a quarter of the config, or more than
  // half of `reuse` dropped) is compiled whole.
  //
  // Compile::kTwoHalves: a whole compile of 20,000 strings or more compiles two halves at
  // once, each in its own child process (half the wall time on two idle cores, the same
  // CPU), into a layered matcher (base: the first half) to rebuild whole afterwards.
  enum class Compile { kOnce, kTwoHalves };
  static Result<std::unique_ptr<Matcher>> build(const ExecwhackerConfig& config,
                                                std::shared_ptr<const Compiled> reuse = nullptr,
                                                BuildStats* stats = nullptr, Compile compile = Compile::kOnce);
  // The compiled strings a later build can reuse (the whole-built part: a layered
  // matcher's base), or null when there are no banned strings.
  std::shared_ptr<const Compiled> base() const { return base_; }
  // Built on top of another matcher's database (see build()).
  bool layered() const { return layer_ != nullptr || !live_.empty(); }
  // Bytes of a banned string that Vectorscan looks for (shorter strings: all of them).
  static constexpr size_t kAnchorLength = 8;
  ~Matcher();
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // `folded` must already be casefolded (casefold() in text.h): matching is exact, byte
  // for byte. Finds the banned string occurrence that ends first among those not glued to
  // a word character on either side (checked per occurrence; between occurrences that end
  // at the same byte, one of them) and, when there is one, the first allowed pattern
  // matching at the start.
  // Not thread-safe: uses this matcher's Vectorscan scratch space.
  Match match(std::string_view folded);

  // Only the banned-string half of match(). Not thread-safe (scratch).
  Match find_banned(std::string_view folded);
  // The first allowed pattern that matches at the start of `folded`, or -1. Thread-safe.
  int find_allowed(std::string_view folded) const;

  std::string_view banned(size_t i) const;  // casefolded; i as in Match::banned
  const std::string& allowed_pattern(size_t i) const { return allowed_source_[i]; }
  size_t banned_count() const { return banned_count_; }
  size_t allowed_count() const { return allowed_.size(); }
  // Bytes of the compiled Vectorscan database (0 with no banned strings).
  size_t database_bytes() const;
  // The probe's wake filter for this matcher's banned strings (wake_filter.h).
  const WakePlan& wake_plan() const;

 private:
  Matcher() = default;

  struct ScanState;
  static int on_anchor(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void* context);
  // Scans one compiled part; `live` (null: every string) masks disabled strings, `first`
  // is the index of the part's first string in Match::banned. False on a scan error.
  bool scan(const Compiled& part, const uint8_t* live, uint32_t first, ScanState& state);

  // The whole-built strings (shared with the matchers layered on it), the newer strings
  // compiled alone (null unless layered), and which of base_'s strings are still in the
  // config (empty: all of them). Match::banned counts base_'s strings first.
  std::shared_ptr<const Compiled> base_;
  std::shared_ptr<const Compiled> layer_;
  std::vector<uint8_t> live_;
  size_t base_live_ = 0;
  size_t banned_count_ = 0;
  struct ScratchDeleter {
    void operator()(hs_scratch* s) const;
  };
  std::vector<std::string> allowed_source_;
  std::vector<std::unique_ptr<RE2>> allowed_;
  std::unique_ptr<RE2::Set> allowed_set_;  // all patterns in one DFA: "does any match?"
  std::unique_ptr<hs_scratch, ScratchDeleter> scratch_;  // fits both databases
  // The text being scanned, followed by kScanPadding zero bytes (see find_banned).
  static constexpr size_t kScanPadding = 64;
  std::string padded_;
  std::shared_ptr<const WakePlan> wake_plan_;
};

}  // namespace cryptnono::enforcer
