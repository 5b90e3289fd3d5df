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

  // Casefolds and de-duplicates the banned strings, compiles them into one database and
  // every allowed pattern with RE2 (case-insensitive, anchored at the start, as Python's
  // re.match). A pattern RE2 rejects is an error naming its file, line, key and index.
  static Result<std::unique_ptr<Matcher>> build(const ExecwhackerConfig& config);
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

  const std::string& banned(size_t i) const { return banned_[i]; }          // casefolded
  const std::string& allowed_pattern(size_t i) const { return allowed_source_[i]; }
  size_t banned_count() const { return banned_.size(); }
  size_t allowed_count() const { return allowed_.size(); }
  // Bytes of the compiled Vectorscan database (0 with no banned strings).
  size_t database_bytes() const;

 private:
  Matcher() = default;

  struct DatabaseDeleter {
    void operator()(hs_database* db) const;
  };
  struct ScratchDeleter {
    void operator()(hs_scratch* s) const;
  };
  // A banned string whose anchor is a given Vectorscan literal, and where in the string
  // that anchor starts.
  struct Candidate {
    uint32_t banned;
    uint32_t anchor_offset;
  };
  struct ScanState;
  static int on_anchor(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void* context);
  // Picks the anchors and fills candidates_ / group_begin_; returns the literal of each
  // group (a view into banned_).
  std::vector<std::string_view> choose_anchors();

  std::vector<std::string> banned_;
  // Candidates grouped by the Vectorscan literal (id) they are found by: those of literal
  // g are candidates_[group_begin_[g] .. group_begin_[g + 1]). Most groups hold one.
  std::vector<Candidate> candidates_;
  std::vector<uint32_t> group_begin_;
  std::vector<std::string> allowed_source_;
  std::vector<std::unique_ptr<RE2>> allowed_;
  std::unique_ptr<RE2::Set> allowed_set_;  // all patterns in one DFA: "does any match?"
  std::unique_ptr<hs_database, DatabaseDeleter> database_;
  std::unique_ptr<hs_scratch, ScratchDeleter> scratch_;
};

}  // namespace cryptnono::enforcer
