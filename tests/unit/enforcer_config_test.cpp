// cryptnono config files: parsing, merging, and errors that name file, line and reason.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include <nlohmann/json.hpp>

#include "cryptnono/enforcer/app.h"
#include "cryptnono/enforcer/config.h"
#include "cryptnono/enforcer/matcher.h"
#include "enforcer_test_util.h"

namespace cryptnono::enforcer {
namespace {

TEST(ParseConfig, ReadsBothListsWithTheirLines) {
  auto c = parse_config(
      "{\n"
      "  \"bannedCommandStrings\": [\n"
      "    \"XMRig\",\n"
      "    \"minerd\"\n"
      "  ],\n"
      "  \"allowedCommandPatterns\": [\"^/usr/bin/safe\"]\n"
      "}\n",
      "a.json");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->banned.size(), 2u);
  EXPECT_EQ(c->banned[0].value, "XMRig");  // kept as written; casefolded by the matcher
  EXPECT_EQ(c->banned[0].line, 3u);
  EXPECT_EQ(c->banned[1].line, 4u);
  EXPECT_EQ(c->banned[1].index, 1u);
  EXPECT_EQ(c->banned[1].file, "a.json");
  ASSERT_EQ(c->allowed.size(), 1u);
  EXPECT_EQ(c->allowed[0].line, 6u);
  EXPECT_TRUE(c->warnings.empty());
}

TEST(ParseConfig, EitherKeyMayBeAbsent) {
  auto only_banned = parse_config(R"({"bannedCommandStrings": ["x"]})", "a.json");
  ASSERT_TRUE(only_banned);
  EXPECT_EQ(only_banned->banned.size(), 1u);
  EXPECT_TRUE(only_banned->allowed.empty());
  auto only_allowed = parse_config(R"({"allowedCommandPatterns": ["x"]})", "b.json");
  ASSERT_TRUE(only_allowed);
  EXPECT_TRUE(only_allowed->banned.empty());
  auto neither = parse_config("{}", "c.json");
  ASSERT_TRUE(neither);
  EXPECT_TRUE(neither->banned.empty());
}

TEST(ParseConfig, UnknownKeysAreWarningsAndTheirValuesIgnored) {
  auto c = parse_config(
      "{\"comment\": {\"bannedCommandStrings\": 5, \"x\": [1, [2], {}]},\n"
      " \"bannedCommandStrings\": [\"x\"]}",
      "a.json");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->banned.size(), 1u);
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_EQ(c->warnings[0], "a.json:1: unknown key \"comment\" ignored");
}

TEST(ParseConfig, SyntaxErrorsNameFileLineAndColumnLikeNlohmann) {
  const std::string cases[] = {
      "{\"bannedCommandStrings\": [\"a\",\n ]}",
      "{\n\n  \"bannedCommandStrings\": [\"a\" \"b\"]}",
      "{\"bannedCommandStrings\": [\"a\"]",  // unexpected end
      "",
      "{\"bannedCommandStrings\": [\"a\"]} trailing",
      "{\"bannedCommandStrings\": [\"\xff\"]}",  // invalid UTF-8 in a string
  };
  std::regex place(R"(at line (\d+), column (\d+))");
  for (const auto& text : cases) {
    auto c = parse_config(text, "bad.json");
    ASSERT_FALSE(c) << text;
    // nlohmann computes line and column from the same offset: they must agree.
    std::string nlohmann_message;
    try {
      auto parsed = nlohmann::json::parse(text);
      ADD_FAILURE() << "nlohmann accepted " << parsed.dump();
    } catch (const nlohmann::json::parse_error& e) {
      nlohmann_message = e.what();
    }
    std::smatch m;
    ASSERT_TRUE(std::regex_search(nlohmann_message, m, place)) << nlohmann_message;
    std::string expected_prefix = "bad.json:" + m[1].str() + ":" + m[2].str() + ": invalid JSON: ";
    EXPECT_EQ(c.error().message.rfind(expected_prefix, 0), 0u) << c.error().message << " vs " << nlohmann_message;
  }
}

TEST(ParseConfig, RefusesWrongTypesAndEmptyStringsNamingKeyIndexAndLine) {
  struct Case {
    std::string text;
    std::string error;
  };
  const Case cases[] = {
      {"{\"bannedCommandStrings\": [\"a\",\n 5]}", "f.json:2: bannedCommandStrings[1]: must be a string, not a number"},
      {"{\"bannedCommandStrings\": [\"a\",\n 5.5\n]}", "f.json:2: bannedCommandStrings[1]: must be a string, not a number"},
      {"{\"bannedCommandStrings\": [null]}", "f.json:1: bannedCommandStrings[0]: must be a string, not null"},
      {"{\"bannedCommandStrings\": [[\"a\"]]}", "f.json:1: bannedCommandStrings[0]: must be a string, not an array"},
      {"{\"bannedCommandStrings\": [{}]}", "f.json:1: bannedCommandStrings[0]: must be a string, not an object"},
      {"{\n\"bannedCommandStrings\": [\"a\", \"\"]}",
       "f.json:2: bannedCommandStrings[1]: empty string (it would match every command line)"},
      {"{\"allowedCommandPatterns\": [\"\"]}",
       "f.json:1: allowedCommandPatterns[0]: empty pattern (it would spare every command line)"},
      {"{\"bannedCommandStrings\": \"xmrig\"}", "f.json:1: bannedCommandStrings: must be an array of strings, not a string"},
      {"{\"allowedCommandPatterns\": {}}", "f.json:1: allowedCommandPatterns: must be an array of strings, not an object"},
      {"[\"xmrig\"]", "f.json:1: the top level must be a JSON object"},
      {"\"xmrig\"", "f.json:1: the top level must be a JSON object"},
  };
  for (const auto& c : cases) {
    auto parsed = parse_config(c.text, "f.json");
    ASSERT_FALSE(parsed) << c.text;
    EXPECT_EQ(parsed.error().message, c.error);
  }
}

TEST(MatcherBuild, RefusesARegexRe2RejectsNamingFileKeyIndexAndLine) {
  auto c = parse_config("{\"allowedCommandPatterns\": [\n  \"^ok\",\n  \"(?<=x)y\"\n]}", "p.json");
  ASSERT_TRUE(c);
  auto m = Matcher::build(*c);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().message.rfind("p.json:3: allowedCommandPatterns[1]: invalid regular expression (RE2): ", 0), 0u)
      << m.error().message;
}

class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::make_temp_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string file(const std::string& name, const std::string& text) {
    std::string p = dir_ + "/" + name;
    testing::write_file(p, text);
    return p;
  }
  std::string dir_;
};

TEST_F(ConfigFiles, MergesSeveralFilesIntoTheUnion) {
  auto a = file("a.json", testing::config_json({"alpha", "Shared"}, {"^/usr/bin/a"}));
  auto b = file("b.json", testing::config_json({"beta", "shared"}, {"^/usr/bin/b"}));
  std::vector<std::string> contents;
  auto c = load_config_files({a, b}, &contents);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->banned.size(), 4u);
  EXPECT_EQ(c->allowed.size(), 2u);
  EXPECT_EQ(c->banned[2].file, b);
  EXPECT_EQ(contents.size(), 2u);
  auto m = Matcher::build(*c);
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)->banned_count(), 3u);  // "Shared" and "shared" are one string once casefolded
  EXPECT_EQ((*m)->allowed_count(), 2u);
}

TEST_F(ConfigFiles, AnErrorInTheSecondFileNamesThatFile) {
  auto a = file("a.json", testing::config_json({"alpha"}));
  auto b = file("b.json", "{\"bannedCommandStrings\": [\n\"ok\",\n true]}");
  auto c = load_config_files({a, b});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, b + ":3: bannedCommandStrings[1]: must be a string, not a boolean");
}

TEST_F(ConfigFiles, AMissingFileIsAnError) {
  auto c = load_config_files({dir_ + "/nope.json"});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find(dir_ + "/nope.json: cannot open"), std::string::npos) << c.error().message;
}

TEST_F(ConfigFiles, DuplicateKeysAreMergedWithAWarning) {
  auto a = file("a.json", "{\"bannedCommandStrings\": [\"x\"],\n \"bannedCommandStrings\": [\"y\"]}");
  auto c = load_config_files({a});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->banned.size(), 2u);
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_NE(c->warnings[0].find(":2: key \"bannedCommandStrings\" appears more than once"), std::string::npos);
}

TEST(LoadRules, WithoutConfigFilesUsesTheEmbeddedDefault) {
  auto rules = load_rules({});
  ASSERT_TRUE(rules) << rules.error().message;
  ASSERT_EQ(rules->matcher->banned_count(), 1u);
  EXPECT_EQ(rules->matcher->banned(0), "beiquatohga1uay0ahmies9couyahpeiz9xohju3ahvaik3faem7eey1thaish1u");
  EXPECT_EQ(check_line(*rules), "ok: 1 banned strings, 0 allowed patterns from the embedded default config");
}

TEST(LineAndColumn, CountsBytesFromOne) {
  using LineColumn = std::pair<size_t, size_t>;
  EXPECT_EQ(line_and_column("ab\ncd", 0), LineColumn(1, 1));
  EXPECT_EQ(line_and_column("ab\ncd", 3), LineColumn(2, 1));
  EXPECT_EQ(line_and_column("ab\ncd", 4), LineColumn(2, 2));
}

}  // namespace
}  // namespace cryptnono::enforcer
