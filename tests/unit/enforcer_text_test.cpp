// Command-line joining, casefolding and word characters, checked against Python: every
// expected value below was produced with python3 (shlex.join, str.casefold, re \w).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cryptnono/enforcer/text.h"

namespace cryptnono::enforcer {
namespace {

using namespace std::string_literals;
using namespace std::string_view_literals;

struct ShlexCase {
  const char* name;
  std::vector<std::string> argv;
  std::string expected;  // python3 -c 'import shlex; print(shlex.join([...]))'
};

class ShlexJoin : public ::testing::TestWithParam<ShlexCase> {};

TEST_P(ShlexJoin, MatchesPython) {
  const auto& c = GetParam();
  EXPECT_EQ(shlex_join(c.argv), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Table, ShlexJoin,
    ::testing::Values(
        ShlexCase{"ShDashC",
                  {"/usr/bin/sh", "-c", "sleep 1 && echo beiquatohGa1uay0ahMies9couyahPeiz9xohju3Ahvaik3FaeM7eey1thaish1U"},
                  "/usr/bin/sh -c 'sleep 1 && echo beiquatohGa1uay0ahMies9couyahPeiz9xohju3Ahvaik3FaeM7eey1thaish1U'"},
        ShlexCase{"EmptyArg", {""}, "''"},
        ShlexCase{"SingleQuote", {"it's"}, R"('it'"'"'s')"},
        ShlexCase{"Space", {"a b", "c"}, "'a b' c"},
        ShlexCase{"AllSafeCharacters", {"safe@%+=:,./-_AZaz09"}, "safe@%+=:,./-_AZaz09"},
        ShlexCase{"NonAsciiIsUnsafe", {"\xc3\xa9"}, "'\xc3\xa9'"},
        ShlexCase{"Newline", {"new\nline"}, "'new\nline'"},
        ShlexCase{"ShellSpecials",
                  {"$HOME", "*", "~", "!x", "a;b", "back\\slash", "tab\t", "quote\"d"},
                  R"('$HOME' '*' '~' '!x' 'a;b' 'back\slash' 'tab)" "\t" R"(' 'quote"d')"},
        ShlexCase{"OnlyQuotes", {"''"}, R"(''"'"''"'"'')"},
        ShlexCase{"MinerFlags", {"--pool=stratum+tcp://x.example:3333", "-u", "wallet.worker"},
                  "--pool=stratum+tcp://x.example:3333 -u wallet.worker"},
        ShlexCase{"NoArgs", {}, ""},
        ShlexCase{"EmptyInTheMiddle", {"a", "", "b"}, "a '' b"},
        ShlexCase{"InvalidUtf8Byte", {"\xff"}, "'\xff'"},
        ShlexCase{"ControlByte", {"x\x01y"}, "'x\x01y'"},
        ShlexCase{"Brackets", {"{}", "[a]", "a&b", "a|b", "#", "^"}, "'{}' '[a]' 'a&b' 'a|b' '#' '^'"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(JoinExecCmdline, ReplacesArgv0WithTheFilename) {
  std::string out;
  join_exec_cmdline("/usr/bin/sh", "sh\0-c\0echo hi\0"s, out);
  EXPECT_EQ(out, "/usr/bin/sh -c 'echo hi'");
}

TEST(JoinExecCmdline, KeepsArgv0WhenThereIsNoFilename) {
  std::string out;
  join_exec_cmdline("", "sh\0-c\0echo hi\0"s, out);
  EXPECT_EQ(out, "sh -c 'echo hi'");
}

TEST(JoinExecCmdline, FilenameAloneWhenArgvIsEmpty) {
  std::string out;
  join_exec_cmdline("/bin/true", "", out);
  EXPECT_EQ(out, "/bin/true");
}

TEST(JoinProcCmdline, TrailingNulEndsTheLastArgumentOnly) {
  struct Case {
    std::string area;
    std::string expected;
  };
  const Case cases[] = {
      {"a\0\0b\0"s, "a '' b"},  // an empty argument in the middle is kept
      {"a\0"s, "a"},            // no empty argument after the trailing NUL
      {"a"s, "a"},              // a rewritten cmdline may lack the NUL
      {"a\0\0"s, "a ''"},       // only one trailing NUL is a terminator
      {"\0"s, "''"},
      {""s, ""},
      {"x y\0z\0"s, "'x y' z"},  // setproctitle-style spaces stay inside one argument
  };
  for (const auto& c : cases) {
    std::string out;
    join_proc_cmdline(c.area, out);
    EXPECT_EQ(out, c.expected) << testing::PrintToString(c.area);
  }
}

// join_fold_*: one pass for plain ASCII lines, join + casefold for the rest; either way
// the bytes must be exactly casefold(join(...)).
std::string join_then_fold(std::string_view filename, std::string_view area) {
  std::string joined;
  join_exec_cmdline(filename, area, joined);
  return casefold(joined);
}

TEST(JoinFoldCmdline, TableMatchesJoinThenCasefold) {
  const std::string areas[] = {
      "python3\0-m\0IPyKernel_Launcher\0-f\0/tmp/Kernel-C9.json\0"s,  // the one-pass case
      "a\0\0b\0"s, "a\0"s, "a"s, "a\0\0"s, "\0"s, ""s, "\0a\0"s, "a\0\0\0b"s,  // empty arguments
      "sh\0-c\0ECHO 'Hi'\0"s,                                      // quoting
      "x\0Stra\xc3\x9f" "e\0"s, "x\0\xc3\x89" "COLE\0"s, "x\0\xff\0"s,  // non-ASCII
      "x\0A\x01" "B\0"s, "x\0{}\0"s, "x\0TAB\t\0"s,                      // unsafe ASCII
      "x\0%@=_+,-./:09AZaz\0"s,                                        // every safe class
  };
  for (const auto& area : areas) {
    for (std::string_view filename : {""sv, "/usr/bin/Env"sv, "/tmp/it's"sv, "/x/\xc3\x89"sv}) {
      std::string out = "stale", scratch = "stale";
      join_fold_exec_cmdline(filename, area, out, scratch);
      EXPECT_EQ(out, join_then_fold(filename, area)) << testing::PrintToString(area) << " " << filename;
    }
    std::string out, scratch;
    join_fold_proc_cmdline(area, out, scratch);
    std::string joined;
    join_proc_cmdline(area, joined);
    EXPECT_EQ(out, casefold(joined)) << testing::PrintToString(area);
  }
}

// The one-pass join works sixteen bytes at a time: every length around those edges, with
// the byte that makes it give up (or an argument boundary) at every position.
TEST(JoinFoldCmdline, EveryLengthAndPositionMatchesJoinThenCasefold) {
  const char specials[] = {'\0', ' ', '\'', 'Q', '\x80', '~', 'z'};
  for (size_t len = 1; len <= 50; ++len) {
    for (size_t pos = 0; pos < len; ++pos) {
      for (char special : specials) {
        std::string area = "argv0";
        area.push_back('\0');
        for (size_t i = 0; i < len; ++i) area.push_back(static_cast<char>('A' + i % 26));
        area[6 + pos] = special;
        for (bool trailing : {false, true}) {
          std::string a = trailing ? area + '\0' : area;
          for (std::string_view filename : {""sv, "/bin/X"sv}) {
            std::string out, scratch;
            join_fold_exec_cmdline(filename, a, out, scratch);
            ASSERT_EQ(out, join_then_fold(filename, a)) << testing::PrintToString(a) << " " << filename;
          }
        }
      }
    }
  }
}

TEST(Casefold, MatchesPythonStrCasefold) {
  struct Case {
    std::string in;
    std::string expected;  // python3: s.casefold().encode()
  };
  const Case cases[] = {
      {"XMRig --URL", "xmrig --url"},
      {"\xc3\x89" "COLE", "\xc3\xa9" "cole"},                       // ÉCOLE -> école
      {"Stra\xc3\x9f" "e", "strasse"},                              // ß -> ss (full folding)
      {"\xce\xa3\xce\x91\xce\xa3", "\xcf\x83\xce\xb1\xcf\x83"},     // ΣΑΣ -> σασ (no final-sigma rule)
      {"\xc4\xb0", "i\xcc\x87"},                                    // İ -> i + combining dot
      {"\xef\xbc\xa1", "\xef\xbd\x81"},                             // fullwidth A
      {"\xe2\x84\xaa", "k"},                                        // Kelvin sign
      {"\xc7\x85", "\xc7\x86"},                                     // titlecase ǅ
      {"\xef\xac\x81", "fi"},                                       // ligature ﬁ
      {"\xe1\x8f\xb8", "\xe1\x8f\xb0"},                             // Cherokee folds to upper case
  };
  for (const auto& c : cases) EXPECT_EQ(casefold(c.in), c.expected) << testing::PrintToString(c.in);
}

TEST(Casefold, KeepsInvalidUtf8BytesAsTheyAre) {
  const std::string cases[] = {
      "\xff" "ABC",             // never valid
      "A\xc3",                  // lead byte at the end
      "\xc3(",                  // lead byte without continuation
      "\xed\xa0\x80",           // an encoded surrogate
      "\xc0\xaf",               // overlong '/'
      "\xf4\x90\x80\x80",       // above U+10FFFF
      "\x80\x80",               // stray continuation bytes
  };
  for (const auto& in : cases) {
    std::string expected;
    for (char c : in) expected.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
    EXPECT_EQ(casefold(in), expected) << testing::PrintToString(in);
  }
}

TEST(Casefold, KeepsNulBytes) { EXPECT_EQ(casefold("A\0B\0"s), "a\0b\0"s); }

TEST(WordChar, AsciiWordCharactersAreLettersDigitsAndUnderscore) {
  for (int c = 1; c < 128; ++c) {
    std::string s(1, static_cast<char>(c));
    bool expected = std::isalnum(c) != 0 || c == '_';
    EXPECT_EQ(word_char_at(s, 0), expected) << c;
    EXPECT_EQ(word_char_before(s, 1), expected) << c;
  }
}

TEST(WordChar, NonAsciiLettersAndDigitsCountAsPythonSays) {
  struct Case {
    const char* utf8;
    bool word;  // python3: bool(re.match(r"\w", ch))
  };
  const Case cases[] = {
      {"\xc3\xa9", true},       // é
      {"\xe2\x91\xa0", true},   // ① (numeric)
      {"\xe4\xb8\xad", true},   // 中
      {"\xe2\x80\x94", false},  // em dash
      {"\xcc\x81", false},      // combining acute accent
      {"\xc2\xbd", true},       // ½
      {"\xd9\xa3", true},       // Arabic-Indic digit three
      {"\xc2\xaa", true},       // ª
      {"\xc2\xa0", false},      // no-break space
  };
  for (const auto& c : cases) {
    std::string s = c.utf8;
    EXPECT_EQ(word_char_at(s + "x", 0), c.word) << c.utf8;
    EXPECT_EQ(word_char_before("x" + s, 1 + s.size()), c.word) << c.utf8;
  }
}

TEST(WordChar, InvalidBytesAndEdgesAreNotWordCharacters) {
  EXPECT_FALSE(word_char_before("abc", 0));
  EXPECT_FALSE(word_char_at("abc", 3));
  EXPECT_FALSE(word_char_before("\xff" "a", 1));
  EXPECT_FALSE(word_char_at("\xff" "a", 0));
  EXPECT_FALSE(word_char_before("\xc3" "a", 1));       // lead byte without its continuation
  EXPECT_FALSE(word_char_before("\xa9" "a", 1));       // continuation without a lead byte
  EXPECT_FALSE(word_char_before("\x80\x80\x80\x80" "a", 4));
  EXPECT_FALSE(word_char_at("\xe4\xb8", 0));          // truncated 3-byte sequence
  EXPECT_TRUE(word_char_before("\xe4\xb8\xad" "a", 3));
}

}  // namespace
}  // namespace cryptnono::enforcer
