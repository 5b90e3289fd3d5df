// The wake filter's plan (enforcer/wake_plan.h) and the probe's arithmetic for it
// (wake_filter_hits, the same steps as bpf/exec.bpf.c): it must wake the enforcer for every
// exec whose command line, as the enforcer builds it (shlex.join, casefold), contains a
// banned string, and for few others. The probe itself is tested against the kernel in
// tests/bpf/wake_filter_test.cpp.
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cryptnono/enforcer/matcher.h"
#include "cryptnono/enforcer/text.h"
#include "cryptnono/enforcer/wake_plan.h"

namespace cryptnono::enforcer {
namespace {

ExecwhackerConfig make_config(const std::vector<std::string>& banned) {
  ExecwhackerConfig c;
  for (size_t i = 0; i < banned.size(); ++i) c.banned.push_back({banned[i], "t.json", i, 1});
  return c;
}

std::unique_ptr<Matcher> build(const std::vector<std::string>& banned) {
  auto m = Matcher::build(make_config(banned));
  EXPECT_TRUE(m) << m.error().message;
  return m ? std::move(*m) : nullptr;
}

WakePlan plan_for(const std::vector<std::string>& banned) {
  WakePlanner p;
  for (const auto& b : banned) p.add(casefold(b));
  return p.finish();
}

// The argv area of a process (NUL after each argument).
std::string argv_area(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    out += a;
    out.push_back('\0');
  }
  return out;
}

bool hits(const WakePlan& plan, const std::string& filename, const std::vector<std::string>& argv) {
  return wake_filter_hits(plan, filename, argv_area(argv));
}

class Gen {
 public:
  explicit Gen(uint32_t seed) : rng_(seed) {}
  size_t upto(size_t n) { return std::uniform_int_distribution<size_t>(0, n)(rng_); }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  std::string word(size_t min, size_t max, std::string_view alphabet) {
    std::string s;
    size_t n = min + upto(max - min);
    for (size_t i = 0; i < n; ++i) s.push_back(alphabet[upto(alphabet.size() - 1)]);
    return s;
  }
  // A banned string of one of the shapes operators write: tokens, pool URLs, wallets,
  // phrases with spaces and quotes, some with non-ASCII; each with a run of 4+ plain bytes.
  std::string banned() {
    static constexpr std::string_view kAlnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    switch (upto(5)) {
      case 0:
        return word(4, 12, kAlnum);
      case 1:
        return "stratum+tcp://" + word(3, 10, kAlnum) + ".pool." + word(2, 3, "abcdefghijklmnopqrstuvwxyz") + ":" +
               std::to_string(upto(65535));
      case 2:
        return "4" + word(40, 94, kAlnum);
      case 3:  // words with spaces and quotes between them: only the runs in between count
        return word(4, 9, kAlnum) + (chance(0.5) ? " " : "'") + word(1, 6, kAlnum) + (chance(0.5) ? " \"" : " ") +
               word(1, 8, kAlnum);
      case 4:  // non-ASCII in it
        return word(4, 10, kAlnum) + (chance(0.5) ? "\xc3\x9f" : "\xe2\x84\xaa") + word(1, 10, kAlnum);
      default:
        return word(4, 30, "abcdefghijklmnopqrstuvwxyz0123456789-_.:/=@%+,");
    }
  }
  // The text as a user might run it: random case, sometimes with characters that casefold
  // to ASCII letters (U+212A KELVIN SIGN -> k, U+017F LONG S -> s).
  std::string disguise(const std::string& s) {
    std::string out;
    for (char c : s) {
      if (c == 'k' && chance(0.2)) {
        out += "\xe2\x84\xaa";
      } else if (c == 's' && chance(0.2)) {
        out += "\xc5\xbf";
      } else if (c >= 'a' && c <= 'z' && chance(0.3)) {
        out.push_back(static_cast<char>(c - 32));
      } else {
        out.push_back(c);
      }
    }
    return out;
  }
  std::string benign_arg() {
    switch (upto(3)) {
      case 0:
        return "/" + word(2, 8, "abcdefghijklmnopqrstuvwxyz") + "/" + word(2, 12, "abcdefghijklmnopqrstuvwxyz._-");
      case 1:
        return "--" + word(2, 10, "abcdefghijklmnopqrstuvwxyz-") + "=" + word(1, 10, "abcdefghijklmnopqrstuvwxyz0123456789");
      case 2:
        return "cd /tmp && " + word(2, 8, "abcdefghijklmnopqrstuvwxyz") + " '" + word(1, 8, "abc def") + "'";
      default:
        return word(1, 12, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    }
  }

 private:
  std::mt19937 rng_;
};

// Soundness: a banned string anywhere in the enforcer's command line (glued to other words
// or not: more than the matcher kills) means the probe wakes the enforcer.
TEST(WakePlan, WakesForEveryCommandLineThatContainsABannedString) {
  Gen g(20261129);
  size_t containing = 0, rounds_on = 0;
  for (int round = 0; round < 150; ++round) {
    std::vector<std::string> banned;
    const size_t n = 1 + g.upto(25);
    for (size_t i = 0; i < n; ++i) banned.push_back(g.banned());
    auto m = build(banned);
    ASSERT_TRUE(m);
    const WakePlan& plan = m->wake_plan();
    ASSERT_TRUE(plan.on) << plan.why_off;  // every generated string has a run of 4
    ++rounds_on;
    std::string folded, scratch;
    for (int t = 0; t < 60; ++t) {
      std::vector<std::string> argv;
      const size_t before = g.upto(3), after = g.upto(3);
      argv.push_back(g.chance(0.5) ? "python3" : "sh");
      for (size_t i = 0; i < before; ++i) argv.push_back(g.benign_arg());
      if (g.chance(0.8)) {
        std::string b = g.disguise(banned[g.upto(banned.size() - 1)]);
        // A banned phrase with spaces is also found across arguments (shlex.join puts a
        // space between them): split it there sometimes.
        if (b.find(' ') != std::string::npos && g.chance(0.5)) {
          size_t start = 0;
          for (size_t sp = b.find(' '); sp != std::string::npos; sp = b.find(' ', start)) {
            argv.push_back(b.substr(start, sp - start));
            start = sp + 1;
          }
          argv.push_back(b.substr(start));
        } else {
          argv.push_back(g.word(0, 9, "abc-_/.XYZ") + b + g.word(0, 9, "abc-_/.XYZ"));
        }
      }
      for (size_t i = 0; i < after; ++i) argv.push_back(g.benign_arg());
      const std::string filename = g.chance(0.5) ? "/usr/bin/" + argv[0] : argv[0];
      join_fold_exec_cmdline(filename, argv_area(argv), folded, scratch);
      bool contains = false;
      for (size_t i = 0; i < m->banned_count() && !contains; ++i)
        contains = folded.find(m->banned(i)) != std::string::npos;
      if (!contains) continue;
      ++containing;
      ASSERT_TRUE(hits(plan, filename, argv))
          << "round " << round << ": the filter (" << plan.describe() << ") would not wake the enforcer for \""
          << folded << "\"";
    }
  }
  EXPECT_EQ(rounds_on, 150u);
  EXPECT_GT(containing, 5000u) << "the generator should plant banned strings in most command lines";
}

TEST(WakePlan, RulesOutAlmostEveryBenignCommandLine) {
  Gen g(7);
  std::vector<std::string> banned;
  for (int i = 0; i < 1000; ++i) banned.push_back(g.word(12, 64, "abcdefghijklmnopqrstuvwxyz0123456789"));
  WakePlan plan = plan_for(banned);
  ASSERT_TRUE(plan.on) << plan.why_off;
  EXPECT_EQ(plan.gram, 8u);
  EXPECT_EQ(plan.stride, 4u);
  size_t woken = 0;
  const size_t lines = 20000;
  for (size_t i = 0; i < lines; ++i) {
    std::vector<std::string> argv = {"python3"};
    while (argv_area(argv).size() < 100) argv.push_back(g.benign_arg());
    woken += hits(plan, "/usr/bin/python3", argv) ? 1 : 0;
  }
  // 1,000 strings of 4 grams set at most 8,000 of 2^19 bits (128 per gram): a lookup hits
  // both with p < 0.03%, and a line of 100 bytes makes about 25 lookups.
  EXPECT_EQ(plan.bits_log2, 19u);
  EXPECT_LE(woken, lines * 2 / 100) << woken << " of " << lines << " benign command lines would wake the enforcer";
  // No strings at all: nothing is looked up in vain.
  WakePlan empty = plan_for({});
  ASSERT_TRUE(empty.on);
  EXPECT_FALSE(hits(empty, "/bin/sh", {"sh", "-c", "true"}));
}

TEST(WakePlan, ChoosesTheGramAndStrideTheShortestRunAllows) {
  struct Case {
    std::vector<std::string> banned;
    bool on;
    uint32_t gram, stride;
  };
  const std::vector<Case> cases = {
      {{"beiquatohGa1uay0ahMies9couyahPeiz9xohju3Ahvaik3FaeM7eey1thaish1U"}, true, 8, 4},
      {{"abcdefghijk", "0123456789"}, true, 8, 3},  // 10 bytes: 8 + 3 - 1
      {{"abcdefghi"}, true, 8, 2},
      {{"xmrig"}, true, 5, 1},
      {{"abcd"}, true, 4, 1},
      {{"xmrig xmrig"}, true, 5, 1},    // the space splits it: runs of 5
      {{"ab'cdefgh"}, true, 6, 1},      // a quote splits it too
      {{"a b c d", "long-enough-string"}, false, 0, 0},
      {{"x\xc3\xa9yz"}, false, 0, 0},  // runs of 1 and 2 around the non-ASCII (é stays é)
      {{"x\xc3\x9fyz"}, true, 5, 1},   // ß casefolds to "ss": one run of 5
  };
  for (const auto& c : cases) {
    WakePlan plan = plan_for(c.banned);
    EXPECT_EQ(plan.on, c.on) << c.banned[0];
    if (!c.on) {
      EXPECT_NE(plan.why_off.find("no run of 4"), std::string::npos) << plan.why_off;
      EXPECT_TRUE(hits(plan, "/bin/true", {"true"})) << "off: every exec wakes";
      continue;
    }
    EXPECT_EQ(plan.gram, c.gram) << c.banned[0];
    EXPECT_EQ(plan.stride, c.stride) << c.banned[0];
    EXPECT_EQ(plan.bits_log2, static_cast<uint32_t>(WAKE_FILTER_BITS_LOG2_MIN)) << "a few strings, a small filter";
    EXPECT_EQ(plan.bits.size(), (size_t{1} << plan.bits_log2) / 64);
  }
}

TEST(WakePlan, WakesForNonAsciiAndForWhatIsTooLongToLookUp) {
  WakePlan plan = plan_for({"beiquatohGa1uay0ahMies9couyahPeiz9xohju3Ahvaik3FaeM7eey1thaish1U"});
  ASSERT_TRUE(plan.on);
  EXPECT_FALSE(hits(plan, "/bin/echo", {"echo", "hello"}));
  EXPECT_TRUE(hits(plan, "/bin/echo", {"echo", "caf\xc3\xa9"}));
  // The last byte alone past a word boundary is looked at too.
  EXPECT_TRUE(wake_filter_hits(plan, "", std::string("abcdefgh\x80", 9)));
  const std::string at_limit(WAKE_SCAN_CHECKS * plan.stride, 'a');
  EXPECT_FALSE(wake_filter_hits(plan, "", at_limit));
  EXPECT_TRUE(wake_filter_hits(plan, "", at_limit + "a")) << "past the lookups the probe makes: wake";
  // argv[0] is not part of the command line when there is a filename: not looked at. (Its
  // non-ASCII would otherwise wake.)
  EXPECT_FALSE(hits(plan, "/bin/echo", {"\xc3\xa9" "cho", "hello"}));
  EXPECT_TRUE(hits(plan, "", {"\xc3\xa9" "cho", "hello"}));
  // Found in any case and at any offset.
  const std::string s = "beiquatohGa1uay0ahMies9couyahPeiz9xohju3Ahvaik3FaeM7eey1thaish1U";
  for (size_t pad = 0; pad < 8; ++pad) {
    std::string upper = s;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_TRUE(hits(plan, "/bin/sh", {"sh", "-c", std::string(pad, 'x') + upper})) << pad;
  }
}

}  // namespace
}  // namespace cryptnono::enforcer
