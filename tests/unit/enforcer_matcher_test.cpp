// The execwhacker matching rules, table-driven, with cryptnono's own cases.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "cryptnono/enforcer/matcher.h"
#include "cryptnono/enforcer/text.h"

namespace cryptnono::enforcer {
namespace {

using namespace std::string_literals;

ExecwhackerConfig make_config(const std::vector<std::string>& banned, const std::vector<std::string>& allowed = {}) {
  ExecwhackerConfig c;
  for (size_t i = 0; i < banned.size(); ++i) c.banned.push_back({banned[i], "t.json", i, 1});
  for (size_t i = 0; i < allowed.size(); ++i) c.allowed.push_back({allowed[i], "t.json", i, 2});
  return c;
}

std::unique_ptr<Matcher> build(const std::vector<std::string>& banned, const std::vector<std::string>& allowed = {}) {
  auto m = Matcher::build(make_config(banned, allowed));
  EXPECT_TRUE(m) << m.error().message;
  return m ? std::move(*m) : nullptr;
}

// Matches a raw command line the way the enforcer does: casefold, then match.
Matcher::Match match(Matcher& m, std::string_view cmdline) { return m.match(casefold(cmdline)); }

struct BoundaryCase {
  const char* name;
  std::string cmdline;
  bool killed;
};

class BannedStringBoundaries : public ::testing::TestWithParam<BoundaryCase> {};

TEST_P(BannedStringBoundaries, KillOnlyWhenNotGluedToAWordCharacter) {
  auto m = build({"string"});
  ASSERT_TRUE(m);
  EXPECT_EQ(match(*m, GetParam().cmdline).found(), GetParam().killed) << testing::PrintToString(GetParam().cmdline);
}

INSTANTIATE_TEST_SUITE_P(
    Table, BannedStringBoundaries,
    ::testing::Values(
        // cryptnono's own table for banned "string".
        BoundaryCase{"GluedBeforeIsSpared", "Xstring", false},
        BoundaryCase{"GluedAfterIsSpared", "stringX", false},
        BoundaryCase{"AloneIsKilled", "string", true},
        BoundaryCase{"DotBeforeIsKilled", ".string", true},
        BoundaryCase{"DashAfterIsKilled", "string-", true},
        // Per occurrence: a glued decoy must not spare a standalone copy.
        BoundaryCase{"DecoyThenStandaloneIsKilled", "xstringx string", true},
        BoundaryCase{"OverlappingCopiesAllGluedAreSpared", "stringstringstring", false},
        BoundaryCase{"GluedCopyThenCopyAtEndIsKilled", "stringstring string", true},
        BoundaryCase{"UnderscoreIsAWordCharacter", "_string", false},
        BoundaryCase{"DigitIsAWordCharacter", "string2", false},
        BoundaryCase{"QuotedIsKilled", "/usr/bin/sh -c 'echo string'", true},
        BoundaryCase{"PathComponentIsKilled", "/tmp/string/run", true},
        BoundaryCase{"UpperCaseIsKilled", "STRING", true},
        // Non-ASCII neighbours: letters and digits are word characters as in Python's \w.
        BoundaryCase{"AccentedLetterBeforeIsSpared", "\xc3\xa9string", false},
        BoundaryCase{"AccentedLetterAfterIsSpared", "string\xc3\xa9", false},
        BoundaryCase{"UpperAccentedLetterBeforeIsSpared", "\xc3\x89string", false},
        BoundaryCase{"CjkLetterBeforeIsSpared", "\xe4\xb8\xadstring", false},
        BoundaryCase{"EmDashBeforeIsKilled", "\xe2\x80\x94string", true},
        BoundaryCase{"NoBreakSpaceAfterIsKilled", "string\xc2\xa0", true},
        // Bytes that are not valid UTF-8 are not word characters.
        BoundaryCase{"InvalidByteBeforeIsKilled", "\xffstring", true},
        BoundaryCase{"TruncatedLeadByteBeforeIsKilled", "\xc3string", true},
        BoundaryCase{"StrayContinuationAfterIsKilled", "string\xa9", true},
        BoundaryCase{"NulBytesAroundAreKilled", "\0string\0"s, true},
        BoundaryCase{"NulInsideIsNotAMatch", "str\0ing"s, false},
        BoundaryCase{"AbsentIsNotAMatch", "/usr/bin/python3 -m http.server", false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Matcher, ReportsTheCasefoldedStringAndWhereItStarts) {
  auto m = build({"StRiNg"});
  ASSERT_TRUE(m);
  auto r = match(*m, "xstringx STRING");
  ASSERT_TRUE(r.found());
  EXPECT_EQ(m->banned(static_cast<size_t>(r.banned)), "string");
  EXPECT_EQ(r.offset, 9u);
}

TEST(Matcher, NonAsciiBannedStringsMatchAnyCase) {
  auto m = build({"\xc3\x89" "COLE-miner", "stra\xc3\x9f" "e"});  // ÉCOLE-miner, straße
  ASSERT_TRUE(m);
  EXPECT_TRUE(match(*m, "run \xc3\xa9" "cole-MINER now").found());   // école-MINER
  EXPECT_TRUE(match(*m, "run \xc3\x89" "COLE-miner now").found());   // ÉCOLE-miner
  EXPECT_TRUE(match(*m, "--pool STRASSE").found());                  // full folding: ß == ss
  EXPECT_TRUE(match(*m, "--pool Stra\xc3\x9f" "e").found());
  EXPECT_FALSE(match(*m, "run x\xc3\xa9" "cole-miner").found());     // glued to x
  EXPECT_EQ(m->banned(0), "\xc3\xa9" "cole-miner");
}

TEST(Matcher, FirstStandaloneOccurrenceWinsAmongManyStrings) {
  auto m = build({"abc", "bcd", "zzz"});
  ASSERT_TRUE(m);
  EXPECT_FALSE(match(*m, "xabcd").found());  // abc glued to d, bcd glued to a
  auto r = match(*m, "xabcd zzz abc");
  ASSERT_TRUE(r.found());
  EXPECT_EQ(m->banned(static_cast<size_t>(r.banned)), "zzz");
}

// Vectorscan looks for one eight-byte anchor per banned string and the matcher checks
// the whole string around it; these exercise strings that share windows, are shorter
// than or exactly one anchor long, and overlap.
TEST(Matcher, StringsSharingWindowsAreEachFoundWhole) {
  // All word characters: inside one another each is glued, so only itself stands alone.
  std::vector<std::string> banned = {"poolexamplecom", "eupoolexamplecom", "poolexamplecom3333",
                                     "xpoolexamplecom", "poolexam", "oolexampleco", "pool"};
  auto m = build(banned);
  ASSERT_TRUE(m);
  for (const auto& s : banned) {
    auto r = match(*m, "miner --url " + s + " -t 2");
    ASSERT_TRUE(r.found()) << s;
    EXPECT_EQ(m->banned(static_cast<size_t>(r.banned)), s);
    EXPECT_EQ(r.offset, 12u) << s;
    EXPECT_FALSE(match(*m, "miner --url z" + s + "z -t 2").found()) << s;
  }
  EXPECT_FALSE(match(*m, "miner --url poolexamplecomz").found());
}

TEST(Matcher, StringsAsLongAsOneAnchorOrShorter) {
  auto m = build({"12345678", "abcdefghij", "xy"});
  ASSERT_TRUE(m);
  EXPECT_TRUE(match(*m, "12345678").found());
  EXPECT_TRUE(match(*m, "abcdefghij").found());
  EXPECT_TRUE(match(*m, "xy").found());
  EXPECT_FALSE(match(*m, "bcdefghij").found());  // part of the string: not a match
  EXPECT_FALSE(match(*m, "abcdefghi").found());
  EXPECT_FALSE(match(*m, "1234567").found());
  EXPECT_FALSE(match(*m, "abcdefghijk").found());  // glued
}

// A random string of min..max characters from "ab-": banned strings and texts made of it
// share windows and overlap each other.
std::string random_ab(std::mt19937& rng, size_t min, size_t max) {
  static constexpr char kChars[] = "ab-";
  std::string s(min + rng() % (max - min + 1), 'a');
  for (auto& c : s) c = kChars[rng() % 3];
  return s;
}

// Against a naive scan: random strings over a tiny alphabet, so that banned strings share
// windows and overlap each other in the text. The matcher must find an unglued
// occurrence exactly when there is one, report one that is really there, and report one
// that ends first.
TEST(Matcher, AgreesWithANaiveScanOnOverlappingStrings) {
  std::mt19937 rng(7);
  auto random_string = [&](size_t min, size_t max) { return random_ab(rng, min, max); };
  for (int round = 0; round < 20; ++round) {
    std::vector<std::string> banned;
    for (int i = 0; i < 40; ++i) banned.push_back(random_string(1, 14));
    auto m = build(banned);
    ASSERT_TRUE(m);
    for (int t = 0; t < 200; ++t) {
      std::string text = random_string(0, 60);
      size_t naive_end = std::string::npos;
      for (size_t b = 0; b < m->banned_count(); ++b) {
        const std::string_view needle = m->banned(b);
        for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1))
          if (!word_char_before(text, pos) && !word_char_at(text, pos + needle.size()))
            naive_end = std::min(naive_end, pos + needle.size());
      }
      auto r = m->match(text);
      ASSERT_EQ(r.found(), naive_end != std::string::npos) << text;
      if (!r.found()) continue;
      const std::string_view got = m->banned(static_cast<size_t>(r.banned));
      ASSERT_EQ(text.compare(r.offset, got.size(), got), 0) << text;
      EXPECT_EQ(r.offset + got.size(), naive_end) << text;
    }
  }
}

// Found in the integration tier (a config reload that never killed its new string, about
// one run in 60): with these two strings, Vectorscan 5.4.9 (Debian 12) does not report the
// second one's anchor when it ends in the last bytes of the scanned buffer, at most buffer
// addresses. The matcher scans with padding after the text; every buffer address is tried
// here (the text starts at each of 64 offsets of a larger string).
TEST(Matcher, FindsAStringThatEndsInTheLastBytesOfTheText) {
  const std::string first = "itest2948fcfd0adbbbb857415c0f8f0e63e2", second = "itest869e2d81c7c8bb48c3b24843af5a02be";
  auto m = build({first, second});
  ASSERT_TRUE(m);
  const std::string cmdline = "/usr/bin/sh -c 'sleep 0.5 && echo " + second + "'";
  std::string buffer(64 + cmdline.size(), ' ');
  for (size_t offset = 0; offset < 64; ++offset) {
    buffer.replace(offset, cmdline.size(), cmdline);
    auto r = m->match(std::string_view(buffer).substr(offset, cmdline.size()));
    ASSERT_TRUE(r.found()) << "offset " << offset;
    EXPECT_EQ(m->banned(static_cast<size_t>(r.banned)), second);
    EXPECT_EQ(r.offset, cmdline.size() - 1 - second.size());
  }
  EXPECT_TRUE(m->match(second).found());
  EXPECT_TRUE(m->match(first + " " + second).found());
}

// A reload that changes a few strings builds on the serving matcher's database: only the
// new strings are compiled, the dropped ones are disabled. Against a whole build of the
// same config and a naive scan, on strings that overlap and share windows: the same
// verdicts, a reported string that is in the new config and really there, ending first.
TEST(Matcher, LayeredBuildAgreesWithAWholeBuildAndANaiveScan) {
  std::mt19937 rng(11);
  auto random_string = [&](size_t min, size_t max) { return random_ab(rng, min, max); };
  int layered_rounds = 0;
  for (int round = 0; round < 20; ++round) {
    std::vector<std::string> old_banned, new_banned;
    for (int i = 0; i < 40; ++i) old_banned.push_back(random_string(1, 14));
    auto old_m = build(old_banned);
    ASSERT_TRUE(old_m);
    // Keep about four in five of the old strings, add ten new ones.
    for (const auto& s : old_banned)
      if (rng() % 5 != 0) new_banned.push_back(s);
    for (int i = 0; i < 10; ++i) new_banned.push_back(random_string(1, 14));
    Matcher::BuildStats stats;
    auto layered = Matcher::build(make_config(new_banned), old_m->base(), &stats);
    ASSERT_TRUE(layered) << layered.error().message;
    auto whole = build(new_banned);
    ASSERT_TRUE(whole);
    Matcher& l = **layered;
    ASSERT_EQ(l.banned_count(), whole->banned_count());
    ASSERT_TRUE(stats.built_on_reuse());
    EXPECT_EQ(stats.reused + stats.compiled, l.banned_count());
    EXPECT_EQ(stats.reused + stats.disabled, old_m->banned_count());
    if (l.layered()) ++layered_rounds;
    std::set<std::string> wanted;
    for (const auto& s : new_banned) wanted.insert(s);
    for (int t = 0; t < 300; ++t) {
      std::string text = random_string(0, 60);
      size_t naive_end = std::string::npos;
      for (const auto& needle : wanted)
        for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1))
          if (!word_char_before(text, pos) && !word_char_at(text, pos + needle.size()))
            naive_end = std::min(naive_end, pos + needle.size());
      auto r = l.match(text);
      ASSERT_EQ(r.found(), naive_end != std::string::npos) << text;
      ASSERT_EQ(whole->match(text).found(), r.found()) << text;
      if (!r.found()) continue;
      const std::string got(l.banned(static_cast<size_t>(r.banned)));
      ASSERT_EQ(wanted.count(got), 1u) << got << " is not in the new config";
      ASSERT_EQ(text.compare(r.offset, got.size(), got), 0) << text;
      EXPECT_EQ(r.offset + got.size(), naive_end) << text;
    }
  }
  EXPECT_GT(layered_rounds, 15);
}

TEST(Matcher, LayeredBuildCompilesOnlyTheNewStringsAndDisablesTheDroppedOnes) {
  auto old_m = build({"Alpha-Miner", "beta-pool.example", "delta"});
  ASSERT_TRUE(old_m);
  Matcher::BuildStats stats;
  auto built = Matcher::build(make_config({"beta-pool.example", "delta", "GAMMA-coin"}), old_m->base(), &stats);
  ASSERT_TRUE(built) << built.error().message;
  Matcher& m = **built;
  EXPECT_EQ(stats.compiled, 1u);
  EXPECT_EQ(stats.reused, 2u);
  EXPECT_EQ(stats.disabled, 1u);
  EXPECT_TRUE(m.layered());
  EXPECT_EQ(m.base(), old_m->base());  // shared, not copied
  EXPECT_EQ(m.banned_count(), 3u);
  EXPECT_FALSE(match(m, "/opt/alpha-miner --threads 4").found());  // dropped
  auto r = match(m, "/opt/x -o gamma-coin");                         // new, from the layer
  ASSERT_TRUE(r.found());
  EXPECT_EQ(m.banned(static_cast<size_t>(r.banned)), "gamma-coin");
  r = match(m, "curl beta-pool.example/x");  // kept, from the base
  ASSERT_TRUE(r.found());
  EXPECT_EQ(m.banned(static_cast<size_t>(r.banned)), "beta-pool.example");
  EXPECT_FALSE(match(m, "/opt/gamma-coins").found());  // the word rule holds in the layer too
  // Both databases are scanned and the earlier-ending occurrence is reported, whichever
  // database holds it.
  r = match(m, "gamma-coin beta-pool.example");
  ASSERT_TRUE(r.found());
  EXPECT_EQ(m.banned(static_cast<size_t>(r.banned)), "gamma-coin");
  r = match(m, "beta-pool.example gamma-coin");
  ASSERT_TRUE(r.found());
  EXPECT_EQ(m.banned(static_cast<size_t>(r.banned)), "beta-pool.example");
  EXPECT_GT(m.database_bytes(), old_m->database_bytes());  // base + layer
}

TEST(Matcher, UnchangedBannedStringsAreNotCompiledAgain) {
  auto old_m = build({"alpha-miner", "beta-pool"});
  ASSERT_TRUE(old_m);
  Matcher::BuildStats stats;
  auto built = Matcher::build(make_config({"beta-pool", "ALPHA-miner", "beta-pool"}, {"^/usr/bin/safe"}),
                              old_m->base(), &stats);
  ASSERT_TRUE(built) << built.error().message;
  EXPECT_EQ(stats.compiled, 0u);
  EXPECT_EQ(stats.reused, 2u);
  EXPECT_EQ(stats.disabled, 0u);
  EXPECT_FALSE((*built)->layered());  // nothing to rebuild: it is the whole database
  EXPECT_EQ((*built)->base(), old_m->base());
  EXPECT_TRUE(match(**built, "/opt/alpha-miner").found());
  EXPECT_EQ(match(**built, "/usr/bin/safe alpha-miner").allowed, 0);
}

TEST(Matcher, DroppingStringsOnlyCompilesNothing) {
  auto old_m = build({"alpha-miner", "beta-pool", "gamma-coin"});
  ASSERT_TRUE(old_m);
  Matcher::BuildStats stats;
  auto built = Matcher::build(make_config({"gamma-coin", "beta-pool"}), old_m->base(), &stats);
  ASSERT_TRUE(built) << built.error().message;
  EXPECT_EQ(stats.compiled, 0u);
  EXPECT_EQ(stats.disabled, 1u);
  EXPECT_TRUE((*built)->layered());  // holds a disabled string: rebuilt whole later
  EXPECT_EQ((*built)->banned_count(), 2u);
  EXPECT_FALSE(match(**built, "/opt/alpha-miner").found());
  EXPECT_TRUE(match(**built, "/opt/gamma-coin").found());
  // The old matcher is untouched: it serves until the swap.
  EXPECT_TRUE(match(*old_m, "/opt/alpha-miner").found());
}

// A whole compile of many strings in two halves at once (what a reload does when it cannot
// build on the serving database): a layered matcher that finds every string of both
// halves, and a later reload builds on its first half.
TEST(Matcher, TwoHalvesCompiledAtOnceFindEveryString) {
  std::vector<std::string> banned;
  for (int i = 0; i < 24'000; ++i) banned.push_back("cnnt-half-" + std::to_string(i * 7919 % 1'000'003));
  Matcher::BuildStats stats;
  auto built = Matcher::build(make_config(banned), nullptr, &stats, Matcher::Compile::kTwoHalves);
  ASSERT_TRUE(built) << built.error().message;
  Matcher& m = **built;
  EXPECT_TRUE(m.layered());
  EXPECT_EQ(stats.compiled, banned.size());
  EXPECT_EQ(m.banned_count(), banned.size());
  for (size_t i = 0; i < banned.size(); i += 97) {
    auto r = match(m, "/usr/bin/x -o " + banned[i] + " -t 2");
    ASSERT_TRUE(r.found()) << banned[i];
    EXPECT_EQ(m.banned(static_cast<size_t>(r.banned)), banned[i]);
    EXPECT_FALSE(match(m, "/usr/bin/x -o " + banned[i] + "x").found()) << banned[i];  // glued
  }
  // Fewer strings than the split needs: one database.
  std::vector<std::string> few(banned.begin(), banned.begin() + 5000);
  auto one = Matcher::build(make_config(few), nullptr, nullptr, Matcher::Compile::kTwoHalves);
  ASSERT_TRUE(one);
  EXPECT_FALSE((*one)->layered());
}

TEST(Matcher, AConfigFarFromTheServingOneIsCompiledWhole) {
  std::vector<std::string> old_banned, many_new;
  for (int i = 0; i < 3000; ++i) old_banned.push_back("cnnt-old-" + std::to_string(i));
  for (int i = 0; i < 1200; ++i) many_new.push_back("cnnt-new-" + std::to_string(i));
  auto old_m = build(old_banned);
  ASSERT_TRUE(old_m);

  // 1,200 new strings: more than kMinLayer (1,000) and more than a quarter of 4,200.
  std::vector<std::string> grown = old_banned;
  grown.insert(grown.end(), many_new.begin(), many_new.end());
  Matcher::BuildStats stats;
  auto built = Matcher::build(make_config(grown), old_m->base(), &stats);
  ASSERT_TRUE(built);
  EXPECT_FALSE(stats.built_on_reuse());
  EXPECT_EQ(stats.compiled, grown.size());
  EXPECT_FALSE((*built)->layered());
  EXPECT_NE((*built)->base(), old_m->base());
  EXPECT_TRUE(match(**built, "x cnnt-new-1199").found());

  // More than half of the old strings dropped.
  std::vector<std::string> shrunk(old_banned.begin(), old_banned.begin() + 1000);
  built = Matcher::build(make_config(shrunk), old_m->base(), &stats);
  ASSERT_TRUE(built);
  EXPECT_FALSE(stats.built_on_reuse());
  EXPECT_EQ((*built)->banned_count(), 1000u);
  EXPECT_FALSE(match(**built, "x cnnt-old-2999").found());

  // Nothing in common.
  built = Matcher::build(make_config({"cnnt-unrelated"}), old_m->base(), &stats);
  ASSERT_TRUE(built);
  EXPECT_FALSE(stats.built_on_reuse());
  EXPECT_EQ((*built)->banned_count(), 1u);
}

TEST(Matcher, BannedStringWithPunctuationAtItsEdgesStillNeedsNonWordNeighbours) {
  auto m = build({"-x"});
  ASSERT_TRUE(m);
  EXPECT_FALSE(match(*m, "a-x").found());  // Python: (?<!\w)-x(?!\w) does not match "a-x"
  EXPECT_TRUE(match(*m, "a -x").found());
}

TEST(Matcher, AllowedPatternSparesAMatch) {
  auto m = build({"string"}, {"/usr/bin/safe "});
  ASSERT_TRUE(m);
  auto r = match(*m, "/usr/bin/safe string");
  ASSERT_TRUE(r.found());
  ASSERT_EQ(r.allowed, 0);
  EXPECT_EQ(m->allowed_pattern(0), "/usr/bin/safe ");
}

TEST(Matcher, AllowedPatternIsAnchoredAtTheStartOnly) {
  auto m = build({"string"}, {"safe", "/usr/bin/[a-z]+ -c"});
  ASSERT_TRUE(m);
  EXPECT_EQ(match(*m, "/usr/bin/x safe string").allowed, -1);   // "safe" only mid-string
  EXPECT_EQ(match(*m, "safe string").allowed, 0);                // at the start
  EXPECT_EQ(match(*m, "/usr/bin/sh -c string").allowed, 1);      // a prefix match suffices
  EXPECT_EQ(match(*m, "x /usr/bin/sh -c string").allowed, -1);
}

TEST(Matcher, AllowedPatternIsCaseInsensitive) {
  auto m = build({"string"}, {"/USR/BIN/Safe"});
  ASSERT_TRUE(m);
  EXPECT_EQ(match(*m, "/usr/bin/SAFE string").allowed, 0);
}

TEST(Matcher, AllowedPatternsAreOnlyConsultedWhenABannedStringMatched) {
  auto m = build({"string"}, {".*"});
  ASSERT_TRUE(m);
  auto r = match(*m, "nothing banned here");
  EXPECT_FALSE(r.found());
  EXPECT_EQ(r.allowed, -1);
}

TEST(Matcher, EmptyBannedListMatchesNothing) {
  auto m = build({}, {"^x"});
  ASSERT_TRUE(m);
  EXPECT_EQ(m->banned_count(), 0u);
  EXPECT_EQ(m->database_bytes(), 0u);
  EXPECT_FALSE(match(*m, "anything at all").found());
}

TEST(Matcher, HostileCommandLinesDoNotCrash) {
  auto m = build({"string"});
  ASSERT_TRUE(m);
  std::mt19937 rng(42);
  std::string big(4u << 20, '\0');
  for (auto& c : big) c = static_cast<char>(rng());
  EXPECT_FALSE(m->match(casefold(big)).scan_failed);
  std::string quotes(1u << 20, '\'');
  std::string joined;
  join_proc_cmdline(quotes, joined);  // every quote becomes five bytes
  EXPECT_EQ(joined.size(), quotes.size() * 5 + 2);
  EXPECT_FALSE(match(*m, joined).found());
  EXPECT_TRUE(match(*m, std::string(1u << 20, 'a') + " string").found());
}

// 100,000 strings must compile and match correctly and quickly. Figures go to stdout and
// into the test's XML properties.
TEST(Matcher, HundredThousandBannedStringsCompileAndMatch) {
  constexpr size_t kCount = 100'000;
  std::mt19937_64 rng(20240131);
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::vector<std::string> banned;
  banned.reserve(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    std::string s;
    size_t len = 16 + rng() % 48;
    for (size_t k = 0; k < len; ++k) s.push_back(kChars[rng() % 36]);
    if (i % 2 == 0) s[0] = static_cast<char>(s[0] >= 'a' ? s[0] - 32 : s[0]);  // mixed case in the config
    banned.push_back(std::move(s));
  }
  auto t0 = std::chrono::steady_clock::now();
  auto built = Matcher::build(make_config(banned));
  auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(built) << built.error().message;
  Matcher& m = **built;
  ASSERT_EQ(m.banned_count(), kCount);

  // ~100-byte command lines: half carry a banned string standalone, half only glued.
  constexpr size_t kProbes = 20'000;
  std::vector<std::string> hits, misses;
  for (size_t i = 0; i < kProbes; ++i) {
    const std::string& s = banned[(i * 7919) % kCount];
    hits.push_back(casefold("/usr/bin/python3 -c 'import os' --pool " + s + " -t 4"));
    misses.push_back(casefold("/usr/bin/python3 -c 'import os' --pool x" + s + " -t 4"));
  }
  size_t found = 0;
  auto t2 = std::chrono::steady_clock::now();
  for (const auto& h : hits) found += m.match(h).found() ? 1 : 0;
  auto t3 = std::chrono::steady_clock::now();
  size_t false_hits = 0;
  for (const auto& h : misses) false_hits += m.match(h).found() ? 1 : 0;
  auto t4 = std::chrono::steady_clock::now();
  EXPECT_EQ(found, kProbes);
  EXPECT_EQ(false_hits, 0u);
  for (size_t i = 0; i < 100; ++i) {
    auto r = m.match(hits[i]);
    ASSERT_TRUE(r.found());
    EXPECT_EQ(m.banned(static_cast<size_t>(r.banned)), casefold(banned[(i * 7919) % kCount]));
  }

  // Unrelated command lines (the common case).
  std::string plain = "/usr/bin/python3 -m ipykernel_launcher -f /home/jovyan/.local/share/jupyter/kernel-1234.json";
  std::string plain_folded = casefold(plain);
  constexpr int kPlain = 200'000;
  auto t5 = std::chrono::steady_clock::now();
  size_t plain_hits = 0;
  for (int i = 0; i < kPlain; ++i) plain_hits += m.match(plain_folded).found() ? 1 : 0;
  auto t6 = std::chrono::steady_clock::now();
  EXPECT_EQ(plain_hits, 0u);

  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  auto ns_per = [&](auto a, auto b, double n) { return ms(a, b) * 1e6 / n; };
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("[ figures  ] 100k banned strings: compile %.0f ms, database %.1f MiB, max RSS %.0f MiB\n", ms(t0, t1),
              static_cast<double>(m.database_bytes()) / (1 << 20), static_cast<double>(ru.ru_maxrss) / 1024);
  std::printf("[ figures  ] match ~%zu B cmdline: %.0f ns (hit), %.0f ns (glued miss), %.0f ns (plain, %zu B)\n",
              hits[0].size(), ns_per(t2, t3, kProbes), ns_per(t3, t4, kProbes), ns_per(t5, t6, kPlain),
              plain_folded.size());
  RecordProperty("compile_ms", static_cast<int>(ms(t0, t1)));
  RecordProperty("match_plain_ns", static_cast<int>(ns_per(t5, t6, kPlain)));
}

}  // namespace
}  // namespace cryptnono::enforcer
