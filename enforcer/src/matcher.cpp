#include "cryptnono/enforcer/matcher.h"

#include <hs/hs.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "cryptnono/enforcer/compile_worker.h"
#include "cryptnono/enforcer/text.h"

namespace cryptnono::enforcer {

namespace {

std::string where(const ConfigEntry& e, std::string_view key) {
  return e.file + ":" + std::to_string(e.line) + ": " + std::string(key) + "[" + std::to_string(e.index) + "]";
}

// 64-bit multiplicative hashing of an eight-byte window; the top bits are the index.
uint64_t mix(uint64_t w) { return w * 0x9E3779B97F4A7C15ull; }

uint64_t load8(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

// Window -> the group (Vectorscan literal) it anchors, open addressing. Only the anchors
// chosen so far are in it: at most one per banned string.
class AnchorTable {
 public:
  explicit AnchorTable(size_t max_entries) {
    size_t capacity = 16;
    while (capacity < max_entries * 2) capacity *= 2;
    bits_ = static_cast<unsigned>(__builtin_ctzll(capacity));
    slots_.assign(capacity, Slot{0, kEmpty});
  }
  // The group of `window`, or kEmpty.
  uint32_t find(uint64_t window) const {
    for (size_t i = index(window);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i].group == kEmpty) return kEmpty;
      if (slots_[i].window == window) return slots_[i].group;
    }
  }
  void insert(uint64_t window, uint32_t group) {
    size_t i = index(window);
    while (slots_[i].group != kEmpty) i = (i + 1) & (slots_.size() - 1);
    slots_[i] = Slot{window, group};
  }
  static constexpr uint32_t kEmpty = ~0u;

 private:
  struct Slot {
    uint64_t window;
    uint32_t group;
  };
  size_t index(uint64_t window) const { return static_cast<size_t>(mix(window) >> (64 - bits_)); }
  std::vector<Slot> slots_;
  unsigned bits_ = 4;
};

// Zeroed counters in an anonymous mapping of their own (see choose_anchors).
class Counters {
 public:
  explicit Counters(size_t size) : size_(size) {
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      fallback_.assign(size_, 0);  // no mapping: the heap will do
      data_ = fallback_.data();
    } else {
      data_ = static_cast<uint8_t*>(p);
      mapped_ = true;
    }
  }
  Counters(const Counters&) = delete;
  Counters& operator=(const Counters&) = delete;
  ~Counters() {
    if (mapped_) ::munmap(data_, size_);
  }
  uint8_t& operator[](size_t i) { return data_[i]; }

 private:
  size_t size_;
  uint8_t* data_ = nullptr;
  bool mapped_ = false;
  std::vector<uint8_t> fallback_;
};

}  // namespace

// The state of one scan: the best (earliest-ending) unglued occurrence so far.
struct Matcher::ScanState {
  const Matcher* matcher;
  std::string_view text;
  int best = -1;
  size_t best_start = 0;
  size_t best_end = 0;
};

// Called by Vectorscan for every occurrence of an anchor, in order of its end. Each
// banned string with that anchor is checked in full at the one place it would have to
// start, then the word rule, per occurrence: a copy glued to a word elsewhere must not
// spare a standalone one. Returns 1 (stop) once no later occurrence can end earlier than
// the best one: every banned string ends at or after the end of its anchor.
int Matcher::on_anchor(unsigned id, unsigned long long /*from*/, unsigned long long to, unsigned /*flags*/,
                       void* context) {
  auto* st = static_cast<ScanState*>(context);
  const Matcher& m = *st->matcher;
  const size_t anchor_end = static_cast<size_t>(to);
  if (st->best >= 0 && anchor_end >= st->best_end) return 1;
  const std::string_view text = st->text;
  for (uint32_t c = m.group_begin_[id]; c < m.group_begin_[id + 1]; ++c) {
    const Candidate cand = m.candidates_[c];
    const std::string& s = m.banned_[cand.banned];
    size_t before = cand.anchor_offset + std::min(kAnchorLength, s.size());  // bytes up to the anchor's end
    if (anchor_end < before) continue;
    size_t start = anchor_end - before;
    size_t end = start + s.size();
    if (end > text.size()) continue;
    if (st->best >= 0 && end >= st->best_end) continue;  // not earlier: the one found first stays
    if (std::memcmp(text.data() + start, s.data(), s.size()) != 0) continue;
    if (word_char_before(text, start) || word_char_at(text, end)) continue;  // glued: keep looking
    st->best = static_cast<int>(cand.banned);
    st->best_start = start;
    st->best_end = end;
  }
  return st->best >= 0 && st->best_end <= anchor_end ? 1 : 0;
}

// Each banned string is found through one eight-byte window of it (its anchor), chosen so
// that as few strings as possible share one: Vectorscan's cost of a match grows with the
// number of literals sharing its last eight bytes (it confirms each of them: 100,000 pool
// host names share "pool.com"-like endings by the thousand, ~3 ns each, on every glued or
// standalone hit), while a unique anchor costs one comparison here. Among windows not yet
// taken, the one occurring in the fewest banned strings overall is preferred: a window
// common to many (a shared host-name part, "stratum+") is also the one most likely to
// turn up in command lines near a banned one. Short literals also compile faster (about
// 4 s of CPU against 6 s for the full strings at 100,000).
std::vector<std::string_view> Matcher::choose_anchors() {
  constexpr size_t kLen = kAnchorLength;
  const size_t n = banned_.size();
  // How many banned strings hold each window, approximately: a count-min sketch (two
  // hashed counters per window, the smaller one counts; a collision only over-counts,
  // making a window look commoner than it is). Sized at 8 counters per window: with fewer,
  // over-counting picks measurably worse anchors (100,000 strings, one row of 2 counters
  // per window: 64 KiB lines scan 6% slower, 29.3 against 27.7 us). Mapped outside malloc
  // (32 MiB at 100,000 strings): freeing a chunk that large would raise glibc's mmap
  // threshold, and the database deserialized next would land in the heap.
  size_t windows = 0;
  for (const auto& s : banned_) windows += s.size() >= kLen ? s.size() - kLen + 1 : 0;
  unsigned bits = 12;
  while (bits < 25 && (size_t{1} << bits) < windows * 8) ++bits;
  Counters seen(size_t{1} << bits);
  auto slot1 = [&](uint64_t w) { return static_cast<size_t>(mix(w) >> (64 - bits)); };
  auto slot2 = [&](uint64_t w) { return static_cast<size_t>((w * 0xC2B2AE3D27D4EB4Full) >> (64 - bits)); };
  auto estimate = [&](uint64_t w) { return std::min(seen[slot1(w)], seen[slot2(w)]); };
  for (const auto& s : banned_) {
    for (size_t k = 0; k + kLen <= s.size(); ++k) {
      uint64_t w = load8(s.data() + k);
      for (size_t i : {slot1(w), slot2(w)})
        if (seen[i] != UINT8_MAX) ++seen[i];
    }
  }

  // Shortest strings first: they have the fewest windows to choose from.
  std::vector<uint32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return banned_[a].size() < banned_[b].size(); });

  AnchorTable table(n);
  std::vector<uint32_t> group_of(n);
  std::vector<uint32_t> group_size;
  std::vector<std::string_view> literals;
  for (uint32_t i : order) {
    const std::string& s = banned_[i];
    Candidate cand{i, 0};
    if (s.size() < kLen) {
      // Its own literal; never shared (the strings are distinct).
      group_of[i] = static_cast<uint32_t>(literals.size());
      literals.push_back(s);
      group_size.push_back(1);
      candidates_.push_back(cand);
      continue;
    }
    // From the end: ties go to the window nearest the end of the string, so the scan can
    // stop soonest after a hit.
    uint64_t best_score = UINT64_MAX;
    size_t best_k = 0;
    for (size_t k = s.size() - kLen + 1; k-- > 0;) {
      uint64_t w = load8(s.data() + k);
      uint32_t g = table.find(w);
      uint64_t score = (uint64_t{g == AnchorTable::kEmpty ? 0 : group_size[g]} << 16) | estimate(w);
      if (score < best_score) {
        best_score = score;
        best_k = k;
        if (score <= 1) break;  // untaken and in no other banned string: cannot do better
      }
    }
    cand.anchor_offset = static_cast<uint32_t>(best_k);
    uint64_t w = load8(s.data() + best_k);
    uint32_t g = table.find(w);
    if (g == AnchorTable::kEmpty) {
      g = static_cast<uint32_t>(literals.size());
      table.insert(w, g);
      literals.push_back(std::string_view(s).substr(best_k, kLen));
      group_size.push_back(0);
    }
    ++group_size[g];
    group_of[i] = g;
    candidates_.push_back(cand);
  }

  // Group the candidates by literal (a counting sort), keeping the banned strings' order
  // within a group.
  group_begin_.assign(literals.size() + 1, 0);
  for (size_t g = 0; g < literals.size(); ++g) group_begin_[g + 1] = group_begin_[g] + group_size[g];
  std::vector<Candidate> grouped(candidates_.size());
  std::vector<uint32_t> next(group_begin_.begin(), group_begin_.end() - 1);
  std::vector<Candidate> by_banned(n);
  for (const auto& c : candidates_) by_banned[c.banned] = c;
  for (uint32_t i = 0; i < n; ++i) grouped[next[group_of[i]]++] = by_banned[i];
  candidates_ = std::move(grouped);
  return literals;
}

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

  const std::vector<std::string_view> literals = m->choose_anchors();
  std::vector<const char*> exprs;
  // Exact: the text is casefolded and so are the literals (caseless matching would only
  // add ASCII case variants that casefolded text never holds).
  std::vector<unsigned> flags(literals.size(), 0);
  std::vector<unsigned> ids;
  std::vector<size_t> lens;
  exprs.reserve(literals.size());
  ids.reserve(literals.size());
  lens.reserve(literals.size());
  for (size_t i = 0; i < literals.size(); ++i) {
    exprs.push_back(literals[i].data());
    ids.push_back(static_cast<unsigned>(i));
    lens.push_back(literals[i].size());
  }
  hs_database_t* db = nullptr;
  // Compiled in a short-lived child process: the compiler's working memory (~20 times the
  // database, about 300 MiB for 100,000 strings) never enters this process, which only
  // receives the database (compile_worker.h).
  auto compiled = compile_literals_isolated(exprs, flags, ids, lens, HS_MODE_BLOCK);
  if (!compiled) {
    std::string message = compiled.error().message;
    int bad = compiled.error().expression;
    if (bad >= 0 && static_cast<size_t>(bad) < literals.size()) {
      // Find the first entry whose string has this anchor, to point at its line.
      const std::string& folded = m->banned_[m->candidates_[m->group_begin_[static_cast<size_t>(bad)]].banned];
      for (const auto& e : config.banned)
        if (casefold(e.value) == folded) return fail(where(e, kBannedKey) + ": cannot compile: " + message);
    }
    return fail("cannot compile banned strings: " + message);
  }
  db = *compiled;
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
  ScanState state{this, folded};
  hs_error_t rc = hs_scan(database_.get(), folded.data(), static_cast<unsigned>(folded.size()), 0, scratch_.get(),
                          on_anchor, &state);
  if (rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED) result.scan_failed = true;
  if (state.best >= 0) {
    result.banned = state.best;
    result.offset = state.best_start;
  }
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
