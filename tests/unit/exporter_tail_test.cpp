// `cryptnono tail` as a real subprocess attached to a real publisher over ipc.
#include <capnp/message.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cryptnono/transport.h"
#include "exporter_test_util.h"

namespace cryptnono {
namespace {

using namespace std::chrono_literals;
using cryptnono::testing::LineReader;

const std::string kTail = std::string(CRYPTNONO_BIN_DIR) + "/cryptnono";

void publish_decision(Publisher& pub, const std::string& cmdline, uint32_t pid) {
  capnp::MallocMessageBuilder mb;
  auto d = pub.begin(mb, topic::kDecision).getBody().initDecision();
  d.setDetector("execwhacker");
  d.setAction(schema::Action::KILLED);
  d.setSource("execwhacker.bpf");
  d.setMatched("tailtest");
  d.setCmdline(kj::arrayPtr(reinterpret_cast<const kj::byte*>(cmdline.data()), cmdline.size()));
  d.initEvent().setPid(pid);
  ASSERT_TRUE(pub.send(topic::kDecision, mb));
}

void publish_stats(Publisher& pub) {
  capnp::MallocMessageBuilder mb;
  pub.begin(mb, topic::kStats).getBody().initStats().setIntervalMs(1000);
  ASSERT_TRUE(pub.send(topic::kStats, mb));
}

TEST(CryptnonoTail, PrintsOneJsonLinePerMessageAndStopsAfterCount) {
  cryptnono::testing::TempDir dir("tail");
  zmq::context_t ctx;
  std::string ep = "ipc://" + dir.path + "/enforcer.sock";
  auto pub = Publisher::bind(ctx, ep, "node-tail", "enforcer", "execwhacker");
  ASSERT_TRUE(pub) << pub.error().message;
  auto child = cryptnono::testing::spawn({kTail, "tail", ep, "--topic", "decision", "--count", "2", "--timeout", "20"});
  ASSERT_GT(child.pid, 0);
  // Hostile bytes in a Data field, and a stats message tail must filter out.
  static const char kRaw[] = "sh -c 'echo \"x\"\\\n\0\xff\xfe tailtest'";
  const std::string cmdline(kRaw, sizeof kRaw - 1);
  std::optional<int> code;
  for (int i = 0; i < 500 && !code; ++i) {  // until its subscription joins and it has printed 2
    publish_stats(**pub);
    publish_decision(**pub, cmdline, static_cast<uint32_t>(1000 + i));
    code = child.wait(20ms);
  }
  ASSERT_TRUE(code) << "tail did not stop after --count 2";
  EXPECT_EQ(*code, 0);
  LineReader reader(child.out);
  std::vector<nlohmann::json> lines;
  while (auto line = reader.next(1s)) {
    EXPECT_EQ(line->find('\n'), line->size() - 1);
    lines.push_back(nlohmann::json::parse(*line));
  }
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& obj : lines) {
    EXPECT_EQ(obj["topic"], "decision");
    EXPECT_EQ(obj["node"], "node-tail");
    EXPECT_EQ(obj["publisherKind"], "enforcer");
    const auto& d = obj["body"]["decision"];
    EXPECT_EQ(d["action"], "killed");
    EXPECT_EQ(d["matched"], "tailtest");
    EXPECT_EQ(d["cmdline"], "sh -c 'echo \"x\"\\\n" + std::string(1, '\0') + "\xEF\xBF\xBD\xEF\xBF\xBD tailtest'");
    EXPECT_GE(d["event"]["pid"].get<int>(), 1000);
  }
  EXPECT_EQ(lines[1]["sequence"].get<uint64_t>(), lines[0]["sequence"].get<uint64_t>() + 1);
}

TEST(CryptnonoTail, ExitsZeroOnSigtermAndThreeWhenTheTimeoutSawNothing) {
  cryptnono::testing::TempDir dir("tail-sig");
  zmq::context_t ctx;
  std::string ep = "ipc://" + dir.path + "/collector.sock";
  auto pub = Publisher::bind(ctx, ep, "node-tail", "collector", "collector");
  ASSERT_TRUE(pub) << pub.error().message;

  auto child = cryptnono::testing::spawn({kTail, "tail", ep});  // all topics, no limit
  ASSERT_GT(child.pid, 0);
  LineReader reader(child.out);
  std::optional<std::string> line;
  for (int i = 0; i < 500 && !line; ++i) {
    publish_stats(**pub);
    line = reader.next(20ms);
  }
  ASSERT_TRUE(line) << "tail printed nothing";
  auto obj = nlohmann::json::parse(*line);
  EXPECT_EQ(obj["topic"], "stats");
  EXPECT_TRUE(obj["body"].contains("stats"));
  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  EXPECT_EQ(child.wait(10s), 0);

  auto idle = cryptnono::testing::spawn({kTail, "tail", "ipc://" + dir.path + "/nobody.sock", "--timeout", "0.2"});
  EXPECT_EQ(idle.wait(10s), 3);
  auto usage = cryptnono::testing::spawn({kTail, "tail", "not-an-endpoint"});
  EXPECT_EQ(usage.wait(10s), 2);
}

}  // namespace
}  // namespace cryptnono
