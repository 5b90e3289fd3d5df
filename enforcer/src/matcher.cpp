#include "cryptnono/enforcer/matcher.h"

#include <hs/hs.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <limits>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>

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

struct Matcher::Compiled {
  // A banned string whose anchor is a given Vectorscan literal, and where in the string
  // that anchor starts.
  struct Candidate {
    uint32_t banned;
    uint32_t anchor_offset;
  };
  struct DatabaseDeleter {
    void operator()(hs_database* db) const { hs_free_database(db); }
  };
  // Many strings in one buffer: 100,000 strings as 100,000 allocations would cost twice
  // the memory, and a reload would scatter them among its temporaries, pinning pages of
  // the heap that could otherwise go back to the system.
  class Strings {
   public:
    explicit Strings(const std::vector<std::string>& strings) {
      size_t total = 0;
      for (const auto& s : strings) total += s.size();
      bytes_.reserve(total);
      ends_.reserve(strings.size());
      for (const auto& s : strings) {
        bytes_ += s;
        ends_.push_back(bytes_.size());
      }
    }
    Strings() = default;
    size_t size() const { return ends_.size(); }
    bool empty() const { return ends_.empty(); }
    std::string_view operator[](size_t i) const {
      const size_t begin = i == 0 ? 0 : ends_[i - 1];
      return std::string_view(bytes_.data() + begin, ends_[i] - begin);
    }

   private:
    std::string bytes_;
    std::vector<size_t> ends_;
  };
  // Casefolded, distinct.
  Strings banned;
  // Candidates grouped by the Vectorscan literal (id) they are found by: those of literal
  // g are candidates[group_begin[g] .. group_begin[g + 1]). Most groups hold one.
  std::vector<Candidate> candidates;
  std::vector<uint32_t> group_begin;
  std::unique_ptr<hs_database, DatabaseDeleter> database;

  // Picks the anchors and fills candidates / group_begin; returns the literal of each
  // group (a view into banned).
  std::vector<std::string_view> choose_anchors();
  // String i's anchor and the other strings in its group, for an error message.
  std::string describe(size_t i) const {
    for (size_t g = 0; g + 1 < group_begin.size(); ++g)
      for (uint32_t c = group_begin[g]; c < group_begin[g + 1]; ++c)
        if (candidates[c].banned == i)
          return "anchor " + std::to_string(g) + " at offset " + std::to_string(candidates[c].anchor_offset) + ", " +
                 std::to_string(group_begin[g + 1] - group_begin[g]) + " strings share it, " +
                 std::to_string(banned.size()) + " strings in this part";
    return "no anchor";
  }
  size_t database_bytes() const {
    size_t size = 0;
    if (database && hs_database_size(database.get(), &size) == HS_SUCCESS) return size;
    return 0;
  }
};

// The state of one scan: the best (earliest-ending) unglued occurrence so far, over every
// part scanned.
struct Matcher::ScanState {
  std::string_view text;
  const Compiled* part = nullptr;
  const uint8_t* live = nullptr;
  uint32_t first = 0;
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
  const Compiled& part = *st->part;
  const size_t anchor_end = static_cast<size_t>(to);
  if (st->best >= 0 && anchor_end >= st->best_end) return 1;
  const std::string_view text = st->text;
  for (uint32_t c = part.group_begin[id]; c < part.group_begin[id + 1]; ++c) {
    const Compiled::Candidate cand = part.candidates[c];
    if (st->live != nullptr && st->live[cand.banned] == 0) continue;  // no longer in the config
    const std::string_view s = part.banned[cand.banned];
    size_t before = cand.anchor_offset + std::min(kAnchorLength, s.size());  // bytes up to the anchor's end
    if (anchor_end < before) continue;
    size_t start = anchor_end - before;
    size_t end = start + s.size();
    if (end > text.size()) continue;
    if (st->best >= 0 && end >= st->best_end) continue;  // not earlier: the one found first stays
    if (std::memcmp(text.data() + start, s.data(), s.size()) != 0) continue;
    if (word_char_before(text, start) || word_char_at(text, end)) continue;  // glued: keep looking
    st->best = static_cast<int>(st->first + cand.banned);
    st->best_start = start;
    st->best_end = end;
  }
  return st->best >= 0 && st->best_end <= anchor_end ? 1 : 0;
}

std::vector<std::string_view> Matcher::Compiled::choose_anchors() {
  constexpr size_t kLen = kAnchorLength;
  const size_t n = banned.size();
  // How many banned strings hold each window, approximately: a count-min sketch (two
  // hashed counters per window, the smaller one counts; a collision only over-counts,
  // making a window look commoner than it is). Sized at 8 counters per window: with fewer,
  // over-counting picks measurably worse anchors (100,000 strings, one row of 2 counters
  // per window: 64 KiB lines scan 6% slower, 29.3 against 27.7 us). Mapped outside malloc
  // (32 MiB at 100,000 strings): freeing a chunk that large would raise glibc's mmap
  // threshold, and the database deserialized next would land in the heap.
  size_t windows = 0;
  for (size_t i = 0; i < n; ++i) windows += banned[i].size() >= kLen ? banned[i].size() - kLen + 1 : 0;
  unsigned bits = 12;
  while (bits < 25 && (size_t{1} << bits) < windows * 8) ++bits;
  Counters seen(size_t{1} << bits);
  auto slot1 = [&](uint64_t w) { return static_cast<size_t>(mix(w) >> (64 - bits)); };
  auto slot2 = [&](uint64_t w) { return static_cast<size_t>((w * 0xC2B2AE3D27D4EB4Full) >> (64 - bits)); };
  auto estimate = [&](uint64_t w) { return std::min(seen[slot1(w)], seen[slot2(w)]); };
  for (size_t i = 0; i < n; ++i) {
    const std::string_view s = banned[i];
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
                   [&](uint32_t a, uint32_t b) { return banned[a].size() < banned[b].size(); });

  AnchorTable table(n);
  std::vector<uint32_t> group_of(n);
  std::vector<uint32_t> group_size;
  std::vector<std::string_view> literals;
  for (uint32_t i : order) {
    const std::string_view s = banned[i];
    Candidate cand{i, 0};
    if (s.size() < kLen) {
      // Its own literal; never shared (the strings are distinct).
      group_of[i] = static_cast<uint32_t>(literals.size());
      literals.push_back(s);
      group_size.push_back(1);
      candidates.push_back(cand);
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
    candidates.push_back(cand);
  }

  // Group the candidates by literal (a counting sort), keeping the banned strings' order
  // within a group.
  group_begin.assign(literals.size() + 1, 0);
  for (size_t g = 0; g < literals.size(); ++g) group_begin[g + 1] = group_begin[g] + group_size[g];
  std::vector<Candidate> grouped(candidates.size());
  std::vector<uint32_t> next(group_begin.begin(), group_begin.end() - 1);
  std::vector<Candidate> by_banned(n);
  for (const auto& c : candidates) by_banned[c.banned] = c;
  for (uint32_t i = 0; i < n; ++i) grouped[next[group_of[i]]++] = by_banned[i];
  candidates = std::move(grouped);
  return literals;
}

void Matcher::ScratchDeleter::operator()(hs_scratch* s) const { hs_free_scratch(s); }

Matcher::~Matcher() = default;

namespace {

// Up to this many strings compile in-process (see compile_literals_here).
constexpr size_t kCompileHereMax = 1000;
// Compile::kTwoHalves splits a whole compile from this many strings (below, the two
// children and the second scan are not worth it: 20,000 strings compile in about 1 s).
constexpr size_t kSplitMin = 20'000;

// Compiles `strings` (casefolded, distinct, not empty) into a part of their own. A string
// Vectorscan rejects is reported at the first config entry that holds it.
Result<std::shared_ptr<Matcher::Compiled>> compile_part(std::vector<std::string> strings,
                                                        const ExecwhackerConfig& config) {
  auto part = std::make_shared<Matcher::Compiled>();
  part->banned = Matcher::Compiled::Strings(strings);
  strings = {};
  if (part->banned.size() > std::numeric_limits<unsigned>::max()) return fail("too many banned strings");
  const std::vector<std::string_view> literals = part->choose_anchors();
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
  // Compiled in a short-lived child process: the compiler's working memory (~20 times the
  // database, about 300 MiB for 100,000 strings) never enters this process, which only
  // receives the database (compile_worker.h). A few strings (a reload's layer) compile
  // here: the child would cost more than their compile.
  auto compiled = part->banned.size() <= kCompileHereMax
                      ? compile_literals_here(exprs, flags, ids, lens, HS_MODE_BLOCK)
                      : compile_literals_isolated(exprs, flags, ids, lens, HS_MODE_BLOCK);
  if (!compiled) {
    std::string message = compiled.error().message;
    int bad = compiled.error().expression;
    if (bad >= 0 && static_cast<size_t>(bad) < literals.size()) {
      // Find the first entry whose string has this anchor, to point at its line.
      const std::string_view folded = part->banned[part->candidates[part->group_begin[static_cast<size_t>(bad)]].banned];
      for (const auto& e : config.banned)
        if (casefold(e.value) == folded) return fail(where(e, kBannedKey) + ": cannot compile: " + message);
    }
    return fail("cannot compile banned strings: " + message);
  }
  part->database.reset(*compiled);
  return part;
}

// A layer is compiled alone when it is at most this many strings, or a quarter of the
// config if that is more: 25,000 of 100,000 compile in about a second.
constexpr size_t kMinLayer = 1000;

}  // namespace

Result<std::unique_ptr<Matcher>> Matcher::build(const ExecwhackerConfig& config, std::shared_ptr<const Compiled> reuse,
                                                BuildStats* stats, Compile compile) {
  std::unique_ptr<Matcher> m(new Matcher());
  BuildStats local;
  BuildStats& st = stats != nullptr ? *stats : local;
  st = {};

  // Banned strings are casefolded as the command lines are, then de-duplicated (the
  // same string in two merged files is one literal).
  std::vector<std::string> wanted;
  {
    std::unordered_set<std::string> seen;
    seen.reserve(config.banned.size());
    for (const auto& e : config.banned) {
      std::string folded = casefold(e.value);
      if (folded.empty()) return fail(where(e, kBannedKey) + ": empty string");
      if (seen.insert(folded).second) wanted.push_back(std::move(folded));
    }
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
  if (wanted.empty()) {
    m->wake_plan_ = std::make_shared<const WakePlan>(WakePlanner().finish());
    return m;
  }
  m->banned_count_ = wanted.size();

  // Layered on `reuse` when the difference is small (see the header).
  std::vector<std::string> added;
  if (reuse && reuse->database) {
    const Compiled::Strings& old = reuse->banned;
    std::unordered_map<std::string_view, uint32_t> index;
    index.reserve(old.size());
    for (size_t i = 0; i < old.size(); ++i) index.emplace(old[i], static_cast<uint32_t>(i));
    std::vector<uint8_t> live(old.size(), 0);
    size_t kept = 0;
    for (const auto& w : wanted) {
      auto it = index.find(w);
      if (it == index.end()) {
        added.push_back(w);
      } else {
        live[it->second] = 1;
        ++kept;
      }
    }
    const size_t disabled = old.size() - kept;
    if (kept > 0 && added.size() <= std::max(kMinLayer, wanted.size() / 4) && disabled <= old.size() / 2) {
      m->base_ = std::move(reuse);
      m->base_live_ = kept;
      if (disabled > 0) m->live_ = std::move(live);
      st.reused = kept;
      st.disabled = disabled;
    } else {
      added.clear();  // too different: the whole config is compiled
    }
  }

  hs_scratch_t* scratch = nullptr;
  if (m->base_) {
    if (!added.empty()) {
      st.compiled = added.size();
      auto layer = compile_part(std::move(added), config);
      if (!layer) return tl::unexpected(layer.error());
      m->layer_ = std::move(*layer);
    }
  } else if (compile == Compile::kTwoHalves && wanted.size() >= kSplitMin) {
    // Each half in its own compile child, at once: on two idle cores the config is in
    // force in about half the time, as a layered matcher (base: the first half, layer:
    // the second), which the caller rebuilds whole in the background.
    st.compiled = wanted.size();
    const size_t half = wanted.size() / 2;
    std::vector<std::string> second(std::make_move_iterator(wanted.begin() + static_cast<std::ptrdiff_t>(half)),
                                    std::make_move_iterator(wanted.end()));
    wanted.resize(half);
    Result<std::shared_ptr<Compiled>> other;
    std::thread helper;
    try {
      helper = std::thread([&] { other = compile_part(std::move(second), config); });
    } catch (const std::system_error&) {
      other = compile_part(std::move(second), config);  // no thread to be had: one after the other
    }
    auto first = compile_part(std::move(wanted), config);
    if (helper.joinable()) helper.join();
    if (!first) return tl::unexpected(first.error());
    if (!other) return tl::unexpected(other.error());
    m->base_ = std::move(*first);
    m->base_live_ = m->base_->banned.size();
    m->layer_ = std::move(*other);
  } else {
    st.compiled = wanted.size();
    auto whole = compile_part(std::move(wanted), config);
    if (!whole) return tl::unexpected(whole.error());
    m->base_ = std::move(*whole);
    m->base_live_ = m->base_->banned.size();
  }
  // Scratch space is per matcher (the event thread's), sized for both databases.
  for (const Compiled* part : {m->base_.get(), m->layer_.get()}) {
    if (part != nullptr && hs_alloc_scratch(part->database.get(), &scratch) != HS_SUCCESS) {
      if (scratch != nullptr) hs_free_scratch(scratch);
      return fail("cannot allocate Vectorscan scratch space");
    }
  }
  m->scratch_.reset(scratch);
  // One scan here, on the building thread, so the event thread's first real scan does not
  // pay for cold scratch and database pages.
  (void)m->find_banned("/usr/bin/sh -c warm-up");
  // Every banned string must be found in a command line that is that string alone: a
  // database that misses one of its own strings never serves (the old one keeps serving).
  // About 0.3 us per string: 30 ms at 100,000. A base reused from an earlier build was
  // checked by that build: only what this build compiled is checked here.
  const Compiled* reused_base = st.reused > 0 ? m->base_.get() : nullptr;
  for (const Compiled* part : {m->base_.get(), m->layer_.get()}) {
    if (part == nullptr || part == reused_base) continue;
    for (size_t i = 0; i < part->banned.size(); ++i) {
      const std::string_view s = part->banned[i];
      if (!m->find_banned(s).found())
        return fail("the compiled banned strings do not find \"" + std::string(s) + "\" in itself (" +
                    part->describe(i) + "): not installed");
    }
  }
  // The probe's wake filter for these strings (wake_filter.h), disabled ones included: it
  // may wake the enforcer for more than the matcher kills, never for less.
  WakePlanner planner;
  for (const Compiled* part : {m->base_.get(), m->layer_.get()}) {
    if (part == nullptr) continue;
    for (size_t i = 0; i < part->banned.size(); ++i) planner.add(part->banned[i]);
  }
  m->wake_plan_ = std::make_shared<const WakePlan>(planner.finish());
  return m;
}

bool Matcher::scan(const Compiled& part, const uint8_t* live, uint32_t first, ScanState& state) {
  state.part = &part;
  state.live = live;
  state.first = first;
  hs_error_t rc = hs_scan(part.database.get(), state.text.data(), static_cast<unsigned>(state.text.size() + kScanPadding),
                          0, scratch_.get(), on_anchor, &state);
  return rc == HS_SUCCESS || rc == HS_SCAN_TERMINATED;
}

Matcher::Match Matcher::find_banned(std::string_view folded) {
  Match result;
  if (!base_) return result;
  // A command line is at most a few MiB (the collector and /proc reads bound it); hs_scan
  // takes an unsigned length.
  if (folded.size() > std::numeric_limits<unsigned>::max() - kScanPadding)
    folded = folded.substr(0, std::numeric_limits<unsigned>::max() - kScanPadding);
  // Scanned with zero bytes after it: Vectorscan 5.4.9 (Debian 12) misses some literals
  // that end in the last bytes of the buffer it scans, depending on the buffer's address
  // (bench/matcher/vectorscan_check: 51 misses in 800,000 scans; none with 24 bytes of
  // padding or more).
  // No occurrence may end in the padding (on_anchor checks against the text's size).
  padded_.assign(folded);
  padded_.append(kScanPadding, '\0');
  ScanState state;
  state.text = std::string_view(padded_.data(), folded.size());
  bool ok = true;
  if (base_live_ > 0) ok = scan(*base_, live_.empty() ? nullptr : live_.data(), 0, state);
  // The layer's occurrences count only if they end earlier than the base's best (its scan
  // stops at the first anchor ending at or after it).
  if (ok && layer_) ok = scan(*layer_, nullptr, static_cast<uint32_t>(base_->banned.size()), state);
  if (!ok) result.scan_failed = true;
  if (state.best >= 0) {
    result.banned = state.best;
    result.offset = state.best_start;
  }
  return result;
}

const WakePlan& Matcher::wake_plan() const {
  static const WakePlan kNone = [] {
    WakePlan p;
    p.why_off = "no plan";
    return p;
  }();
  return wake_plan_ ? *wake_plan_ : kNone;
}

std::string_view Matcher::banned(size_t i) const {
  const size_t in_base = base_->banned.size();
  return i < in_base ? base_->banned[i] : layer_->banned[i - in_base];
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
  return (base_ ? base_->database_bytes() : 0) + (layer_ ? layer_->database_bytes() : 0);
}

}  // namespace cryptnono::enforcer
