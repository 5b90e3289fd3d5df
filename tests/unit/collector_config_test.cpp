// Flag parsing and validation, table-driven: every rejection names its flag.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cryptnono/collector/config.h"

namespace cryptnono::collector {
namespace {

struct Case {
  std::vector<std::string> args;
  std::string error;  // empty: valid; else a substring of the error
};

Result<Config> parse(const std::vector<std::string>& args) {
  Config c;
  CLI::App app;
  add_options(app, c);
  std::vector<const char*> argv{"cryptnono-collector"};
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return fail(std::string("parse: ") + e.what());
  }
  if (auto ok = validate(c); !ok) return tl::unexpected(ok.error());
  return c;
}

TEST(CollectorConfig, ValidatesEachFlag) {
  const std::vector<Case> cases = {
      {{}, ""},
      {{"--max-args-bytes", "32768"}, ""},
      {{"--max-args-bytes", "262144"}, ""},
      {{"--max-args-bytes", "32767"}, "--max-args-bytes"},
      {{"--max-args-bytes", "262145"}, "--max-args-bytes"},
      {{"--ringbuf-bytes", "1048576"}, ""},
      {{"--ringbuf-bytes", "3000000"}, "--ringbuf-bytes"},
      {{"--ringbuf-bytes", "4096"}, "--ringbuf-bytes"},
      {{"--scan-interval", "0"}, ""},
      {{"--scan-interval", "-1"}, "--scan-interval"},
      {{"--stats-interval", "0"}, "--stats-interval"},
      {{"--stats-interval", "0.5"}, ""},
      {{"--bind", "nonsense"}, "--bind"},
      {{"--bind", "tcp://127.0.0.1:5555"}, ""},
      {{"--log-level", "loud"}, "--log-level"},
      {{"--no-such-flag"}, "parse"},
      {{"--probes", "exec"}, ""},
      {{"--probes", "exec,connect"}, ""},
      {{"--probes", "connect,fpu,exec"}, ""},
      {{"--probes", "fpu,connect"}, "--probes"},
      {{"--probes", "exec,gpu"}, "--probes"},
      {{"--probes", "exec,exec"}, "--probes"},
      {{"--fpu-threshold", "1"}, ""},
      {{"--fpu-threshold", "1000000"}, ""},
      {{"--fpu-threshold", "0"}, "--fpu-threshold"},
      {{"--fpu-threshold", "1000001"}, "--fpu-threshold"},
      {{"--fpu-threshold", "-5"}, "parse"},
  };
  for (const auto& c : cases) {
    auto got = parse(c.args);
    std::string label = c.args.empty() ? "(defaults)" : c.args[0] + (c.args.size() > 1 ? " " + c.args[1] : "");
    if (c.error.empty()) {
      EXPECT_TRUE(got.has_value()) << label << ": " << (got ? "" : got.error().message);
    } else {
      ASSERT_FALSE(got.has_value()) << label;
      EXPECT_NE(got.error().message.find(c.error), std::string::npos) << label << ": " << got.error().message;
    }
  }
}

TEST(CollectorConfig, DefaultsMatchTheContract) {
  auto c = parse({});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->bind, "ipc:///run/cryptnono/collector.sock");
  EXPECT_EQ(c->scan_interval, 60);
  EXPECT_EQ(c->stats_interval, 5);
  EXPECT_EQ(c->max_args_bytes, 65536u);
  EXPECT_EQ(c->ringbuf_bytes, 16u << 20);
  EXPECT_FALSE(c->check);
  EXPECT_EQ(c->probes, (std::vector<std::string>{"exec", "fpu", "connect"}));
  EXPECT_EQ(c->fpu_threshold, 64u);
  EXPECT_TRUE(c->wants("fpu"));
}

TEST(CollectorConfig, ProbesIsACommaList) {
  auto c = parse({"--probes", "exec,connect"});
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->wants("exec"));
  EXPECT_TRUE(c->wants("connect"));
  EXPECT_FALSE(c->wants("fpu"));
  EXPECT_NE(describe(*c).find("probes=exec,connect"), std::string::npos) << describe(*c);
}

}  // namespace
}  // namespace cryptnono::collector
