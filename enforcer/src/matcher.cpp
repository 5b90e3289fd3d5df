#include "cryptnono/enforcer/matcher.h"

#include <hs/hs.h>
#include <malloc.h>

#include <limits>
#include <unordered_map>

#include "cryptnono/enforcer/text.h"

namespace cryptnono::enforcer {

namespace {

std::string where(const ConfigEntry& e, std::string_view key) {
  return e.file + ":" + std::to_string(e.line) + ": " + std::string(key) + "[" + std::to_string(e.index) + "]";
}

struct ScanState {
  std::string_view text;
  const std::vector<std::string>* banned;
  Matcher::Match* result;
};

// Called by Vectorscan for every occurrence (in order of its end) of every literal. The
// word-boundary rule is checked here, per occurrence: a copy glued to a word elsewhere
// must not spare a standalone one.
int on_match(unsigned int id, unsigned long long /*from*/, unsigned long long to, unsigned int /*flags*/,
             void* context) {
  auto* state = static_cast<ScanState*>(context);
  size_t length = (*state->banned)[id].size();
  size_t end = static_cast<size_t>(to);
  size_t start = end - length;
  if (word_char_before(state->text, start) || word_char_at(state->text, end)) return 0;  // glued: keep looking
  state->result->banned = static_cast<int>(id);
  state->result->offset = start;
  return 1;  // stop the scan
}

}  // namespace

void Matcher::DatabaseDeleter::operator()(hs_database* db) const { hs_free_database(db); }
void Matcher::ScratchDeleter::operator()(hs_scratch* s) const { hs_free_scratch(s); }

Matcher::~Matcher() = default;

Result<std::unique_ptr<Matcher>> Matcher::build(const ExecwhackerConfig& config) {
  std::unique_ptr<Matcher> m(new Matcher());

  // Banned strings are casefolded as the command lines are, then de-duplicated (the
  // same string in two merged files is one literal).
  std::unordered_map<std::string, size_t> seen;
  seen.reserve(config.banned.size());
  for (const auto& e : config.banned) {
    std::string folded = casefold(e.value);
    if (folded.empty()) return fail(where(e, kBannedKey) + ": empty string");
    if (seen.emplace(folded, m->banned_.size()).second) m->banned_.push_back(std::move(folded));
  }

  for (const auto& e : config.allowed) {
    RE2::Options options;
    options.set_case_sensitive(false);
    options.set_log_errors(false);  // errors are reported as values, not on stderr
    auto re = std::make_unique<RE2>(e.value, options);
    if (!re->ok()) return fail(where(e, kAllowedKey) + ": invalid regular expression (RE2): " + re->error());
    m->allowed_source_.push_back(e.value);
    m->allowed_.push_back(std::move(re));
  }

  if (!m->allowed_.empty()) {
    RE2::Options options;
    options.set_case_sensitive(false);
    options.set_log_errors(false);
    auto set = std::make_unique<RE2::Set>(options, RE2::ANCHOR_START);
    bool ok = true;
    for (const auto& src : m->allowed_source_) ok = ok && set->Add(src, nullptr) >= 0;
    if (ok && set->Compile()) m->allowed_set_ = std::move(set);
  }

  // Vectorscan refuses an empty database: with no banned strings nothing ever matches.
  if (m->banned_.empty()) return m;
  if (m->banned_.size() > std::numeric_limits<unsigned>::max()) return fail("too many banned strings");

  std::vector<const char*> exprs;
  std::vector<unsigned> flags(m->banned_.size(), HS_FLAG_CASELESS);
  std::vector<unsigned> ids;
  std::vector<size_t> lens;
  exprs.reserve(m->banned_.size());
  ids.reserve(m->banned_.size());
  lens.reserve(m->banned_.size());
  for (size_t i = 0; i < m->banned_.size(); ++i) {
    exprs.push_back(m->banned_[i].data());
    ids.push_back(static_cast<unsigned>(i));
    lens.push_back(m->banned_[i].size());
  }
  hs_database_t* db = nullptr;
  hs_compile_error_t* err = nullptr;
  // Caseless is a no-op on casefolded text; it stays as a guard should anything reach
  // the matcher unfolded.
  hs_error_t rc = hs_compile_lit_multi(exprs.data(), flags.data(), ids.data(), lens.data(),
                                       static_cast<unsigned>(exprs.size()), HS_MODE_BLOCK, nullptr, &db, &err);
  // The compiler's working memory is ~20 times the database (about 300 MiB for 100,000
  // strings, for a 15 MiB database). glibc keeps freed heap mapped; hand it back so the
  // enforcer's steady-state RSS reflects the database, not the last compile.
  malloc_trim(0);
  if (rc != HS_SUCCESS) {
    std::string message = err != nullptr && err->message != nullptr ? err->message : "unknown error";
    int bad = err != nullptr ? err->expression : -1;
    hs_free_compile_error(err);
    if (bad >= 0 && static_cast<size_t>(bad) < m->banned_.size()) {
      // Find the first entry that folded to this string, to point at its line.
      for (const auto& e : config.banned)
        if (casefold(e.value) == m->banned_[static_cast<size_t>(bad)])
          return fail(where(e, kBannedKey) + ": cannot compile: " + message);
    }
    return fail("cannot compile banned strings: " + message);
  }
  m->database_.reset(db);
  hs_scratch_t* scratch = nullptr;
  if (hs_alloc_scratch(db, &scratch) != HS_SUCCESS) return fail("cannot allocate Vectorscan scratch space");
  m->scratch_.reset(scratch);
  // One scan here, on the building thread, so the event thread's first real scan does not
  // pay for cold scratch and database pages.
  (void)m->find_banned("/usr/bin/sh -c warm-up");
  return m;
}

Matcher::Match Matcher::find_banned(std::string_view folded) {
  Match result;
  if (!database_) return result;
  // A command line is at most a few MiB (the collector and /proc reads bound it); hs_scan
  // takes an unsigned length.
  if (folded.size() > std::numeric_limits<unsigned>::max()) folded = folded.substr(0, std::numeric_limits<unsigned>::max());
  ScanState state{folded, &banned_, &result};
  hs_error_t rc =
      hs_scan(database_.get(), folded.data(), static_cast<unsigned>(folded.size()), 0, scratch_.get(), on_match, &state);
  if (rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED) result.scan_failed = true;
  return result;
}

int Matcher::find_allowed(std::string_view folded) const {
  // One pass over the text for every pattern; only when one matches (or the set's DFA
  // gave up, out of memory) are they tried one by one, to name the first (the order
  // cryptnono tries them in).
  if (allowed_set_) {
    RE2::Set::ErrorInfo info{RE2::Set::kNoError};
    if (!allowed_set_->Match(re2::StringPiece(folded.data(), folded.size()), nullptr, &info) &&
        info.kind == RE2::Set::kNoError)
      return -1;
  }
  for (size_t i = 0; i < allowed_.size(); ++i) {
    if (allowed_[i]->Match(re2::StringPiece(folded.data(), folded.size()), 0, folded.size(), RE2::ANCHOR_START,
                           nullptr, 0))
      return static_cast<int>(i);
  }
  return -1;
}

Matcher::Match Matcher::match(std::string_view folded) {
  Match result = find_banned(folded);
  if (result.found()) result.allowed = find_allowed(folded);
  return result;
}

size_t Matcher::database_bytes() const {
  size_t size = 0;
  if (database_ && hs_database_size(database_.get(), &size) == HS_SUCCESS) return size;
  return 0;
}

}  // namespace cryptnono::enforcer
