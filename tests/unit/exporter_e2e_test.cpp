// The exporter end to end with real sockets: a real Publisher on ipc in a temp dir, the
// exporter library running its loop in a thread (JSON lines into a pipe), real HTTP
// requests to its /metrics and /healthz on an ephemeral port; and the real binary as a
// subprocess, stopped by SIGTERM.
#include <sys/eventfd.h>

#include <thread>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cryptnono/exporter/exporter.h"
#include "cryptnono/log.h"
#include "cryptnono/transport.h"
#include "exporter_test_util.h"

namespace cryptnono::exporter {
namespace {

using namespace std::chrono_literals;
using cryptnono::testing::http_get;
using cryptnono::testing::http_request;
using cryptnono::testing::LineReader;
using cryptnono::testing::metric_value;

const std::string kContainerId = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

struct Sent {
  schema::Action action;
  std::string source;
  std::string cmdline;
  std::string matched;
  std::string allowed_by;
  std::string reason;
  uint64_t exec_ns = 0;
  uint64_t decided_ns = 0;
  uint64_t killed_ns = 0;
  uint32_t pid = 4242;
};

void fill_decision(schema::Decision::Builder d, const Sent& s) {
  d.setDetector("execwhacker");
  d.setAction(s.action);
  d.setSource(s.source);
  d.setMatched(s.matched);
  d.setAllowedBy(s.allowed_by);
  d.setReason(s.reason);
  d.setCmdline(kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.cmdline.data()), s.cmdline.size()));
  d.setDecidedBootNs(s.decided_ns);
  d.setKilledBootNs(s.killed_ns);
  auto ev = d.initEvent();
  ev.setPid(s.pid);
  ev.setTgid(s.pid);
  ev.setPpid(1);
  ev.setUid(1000);
  ev.setExecBootNs(s.exec_ns);
  ev.setCgroupName("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod11112222_3333_4444_5555_666677778888"
                   ".slice/cri-containerd-" + kContainerId + ".scope");
}

void publish_decision(Publisher& pub, const Sent& s) {
  capnp::MallocMessageBuilder mb;
  fill_decision(pub.begin(mb, topic::kDecision).getBody().initDecision(), s);
  ASSERT_TRUE(pub.send(topic::kDecision, mb));
}

void publish_stats(Publisher& pub, const std::vector<std::pair<std::string, uint64_t>>& counters) {
  capnp::MallocMessageBuilder mb;
  auto st = pub.begin(mb, topic::kStats).getBody().initStats();
  st.setIntervalMs(1000);
  auto list = st.initCounters(static_cast<unsigned>(counters.size()));
  for (size_t i = 0; i < counters.size(); ++i) {
    list[static_cast<unsigned>(i)].setName(counters[i].first);
    list[static_cast<unsigned>(i)].setValue(counters[i].second);
  }
  ASSERT_TRUE(pub.send(topic::kStats, mb));
}

class ExporterEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    endpoint_ = "ipc://" + dir_.path + "/execwhacker.sock";
    raw_endpoint_ = "ipc://" + dir_.path + "/raw.sock";
    auto pub = Publisher::bind(ctx_, endpoint_, "node-e2e", "enforcer", "execwhacker");
    ASSERT_TRUE(pub) << pub.error().message;
    pub_ = std::move(*pub);
    raw_.bind(raw_endpoint_);
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    out_read_ = fds[0];
    out_write_ = fds[1];
    fcntl(out_write_, F_SETPIPE_SZ, 1 << 20);
    stop_ = eventfd(0, EFD_CLOEXEC);
    Config config;
    config.connect = {endpoint_, raw_endpoint_};
    config.metrics_address = "127.0.0.1:0";
    auto exporter = Exporter::create(config, ctx_, out_write_, std::make_unique<NoopEnricher>(),
                                     make_logger("exporter-e2e", "warn"));
    ASSERT_TRUE(exporter) << exporter.error().message;
    exporter_ = std::move(*exporter);
    port_ = exporter_->metrics_port();
    ASSERT_GT(port_, 0);
    loop_ = std::thread([this] { result_ = exporter_->run(stop_); });
  }

  void TearDown() override {
    if (loop_.joinable()) {
      uint64_t one = 1;
      EXPECT_EQ(write(stop_, &one, sizeof one), 8);
      loop_.join();
      EXPECT_TRUE(result_) << result_.error().message;
    }
    exporter_.reset();
    for (int fd : {out_read_, out_write_, stop_}) {
      if (fd >= 0) close(fd);
    }
  }

  // PUB/SUB join: publish harmless stats until the exporter's /healthz reports that kind.
  void join(const std::function<void()>& publish_one, const std::string& kind) {
    for (int i = 0; i < 500; ++i) {
      publish_one();
      auto reply = http_get(port_, "/healthz");
      if (reply.status == 200 && reply.body.find(kind + ": last message") != std::string::npos) return;
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "the exporter never heard from " << kind;
  }

  nlohmann::json next_line() {
    auto line = reader_.next(10s);
    EXPECT_TRUE(line) << "no JSON line from the exporter";
    if (!line) return nullptr;
    EXPECT_EQ(line->find('\n'), line->size() - 1);
    return nlohmann::json::parse(*line);
  }

  std::string metrics() {
    auto reply = http_get(port_, "/metrics");
    EXPECT_EQ(reply.status, 200);
    return reply.body;
  }

  cryptnono::testing::TempDir dir_{"exporter-e2e"};
  zmq::context_t ctx_;
  std::string endpoint_, raw_endpoint_;
  std::unique_ptr<Publisher> pub_;
  zmq::socket_t raw_{ctx_, zmq::socket_type::pub};
  int out_read_ = -1, out_write_ = -1, stop_ = -1;
  std::unique_ptr<Exporter> exporter_;
  int port_ = 0;
  std::thread loop_;
  Result<void> result_;
  LineReader reader_{-1};
};

TEST_F(ExporterEndToEnd, WritesJsonLinesAndServesMetricsAndHealth) {
  reader_ = LineReader(out_read_);
  join([&] { publish_stats(*pub_, {{"decisions", 0}, {"killed", 0}}); }, "enforcer");

  publish_stats(*pub_, {{"decisions", 3}, {"killed", 1}});
  {
    capnp::MallocMessageBuilder skipped;  // taken a sequence number, never sent: a gap of one
    pub_->begin(skipped, topic::kStats);
  }
  publish_stats(*pub_, {{"decisions", 5}, {"killed", 2}});

  std::string hostile;
  for (int rep = 0; rep < 4096; ++rep) {
    for (int b = 0; b < 256; ++b) hostile.push_back(static_cast<char>(b));
  }
  hostile += "\n{\"action\":\"fake\"}\n";  // ~1 MiB of every byte, then an injection attempt
  const std::string seed_cmd = "/usr/bin/sh -c 'sleep 1 && echo e2etest5f0c2ad1b34e4b9a8d7c6e5f40312a9b'";
  publish_decision(*pub_, {schema::Action::NO_MATCH, "execwhacker.bpf", "", "", "", "", 1'000'000, 1'010'000, 0, 11});
  publish_decision(*pub_, {schema::Action::KILLED, "execwhacker.bpf", seed_cmd, "e2etest5f0c2ad1b34e4b9a8d7c6e5f40312a9b",
                           "", "", 2'000'000'000, 2'000'020'000, 2'000'045'000, 12});
  publish_decision(*pub_, {schema::Action::SPARED, "execwhacker.scan", "/usr/bin/sh -c 'echo ok e2e'", "e2e", "^/usr/bin/sh -c 'echo ok", "",
                           0, 3'000'000'000, 0, 13});
  publish_decision(*pub_, {schema::Action::MISSED_KILL, "execwhacker.bpf", "x e2e", "e2e", "", "process exited",
                           4'000'000'000, 4'000'030'000, 0, 14});
  publish_decision(*pub_, {schema::Action::WOULD_KILL, "execwhacker.bpf", hostile, "e2e", "", "", 5'000'000'000,
                           5'000'010'000, 0, 15});

  // noMatch is not written (no --log-no-match): the first line is the kill.
  auto killed = next_line();
  ASSERT_TRUE(killed.is_object());
  EXPECT_EQ(killed["pid"], 12);
  EXPECT_EQ(killed["action"], "killed");
  EXPECT_EQ(killed["event"], "Killed process");
  EXPECT_EQ(killed["level"], "info");
  EXPECT_EQ(killed["cmdline"], seed_cmd);
  EXPECT_EQ(killed["matched"], "e2etest5f0c2ad1b34e4b9a8d7c6e5f40312a9b");
  EXPECT_EQ(killed["source"], "execwhacker.bpf");
  EXPECT_EQ(killed["container_type"], "cri");
  EXPECT_EQ(killed["container_id"], kContainerId);
  EXPECT_EQ(killed["pod_uid"], "11112222-3333-4444-5555-666677778888");
  EXPECT_EQ(killed["labels"], nlohmann::json::object());
  EXPECT_EQ(killed["image"], "");
  EXPECT_EQ(killed["node"], "node-e2e");
  EXPECT_DOUBLE_EQ(killed["exec_to_kill_us"].get<double>(), 45.0);
  EXPECT_DOUBLE_EQ(killed["exec_to_decision_us"].get<double>(), 20.0);
  EXPECT_TRUE(std::regex_match(killed["timestamp"].get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)")));

  auto spared = next_line();
  EXPECT_EQ(spared["action"], "spared");
  EXPECT_EQ(spared["allowedby"], "^/usr/bin/sh -c 'echo ok");
  EXPECT_EQ(spared["source"], "execwhacker.scan");
  EXPECT_FALSE(spared.contains("exec_to_kill_us"));

  auto missed = next_line();
  EXPECT_EQ(missed["action"], "missed-kill");
  EXPECT_EQ(missed["event"], "Missed kill");
  EXPECT_EQ(missed["reason"], "process exited");

  auto would = next_line();  // the ~1 MiB hostile one: still one line, still valid JSON
  EXPECT_EQ(would["action"], "would-kill");
  EXPECT_EQ(would["event"], "Would kill process (dry run)");
  EXPECT_EQ(would["cmdline"].get<std::string>().substr(0, 128), hostile.substr(0, 128));
  EXPECT_EQ(reader_.pending(), "") << "nothing after the last line";

  // The would-kill line was the last message sent: everything before it has been counted.
  auto text = metrics();
  auto v = [&](const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return metric_value(text, name, labels).value_or(-1);
  };
  EXPECT_EQ(v("cryptnono_execwhacker_processes_killed_total", {{"source", "execwhacker.bpf"}}), 1);
  EXPECT_EQ(v("cryptnono_execwhacker_processes_checked_total", {{"source", "execwhacker.bpf"}}), 4);  // noMatch too
  EXPECT_EQ(v("cryptnono_execwhacker_processes_checked_total", {{"source", "execwhacker.scan"}}), 1);
  EXPECT_EQ(v("cryptnono_execwhacker_processes_allowed_total",
              {{"source", "execwhacker.scan"}, {"allowedby", "^/usr/bin/sh -c 'echo ok"}}),
            1);
  EXPECT_EQ(v("cryptnono_execwhacker_processes_missed_total", {{"source", "execwhacker.bpf"}}), 1);
  EXPECT_EQ(v("cryptnono_execwhacker_processes_would_kill_total", {{"source", "execwhacker.bpf"}}), 1);
  EXPECT_EQ(v("cryptnono_execwhacker_exec_to_kill_seconds_count"), 1);
  EXPECT_EQ(v("cryptnono_messages_lost_total", {{"publisher_kind", "enforcer"}, {"topic", "stats"}}), 1);
  EXPECT_EQ(v("cryptnono_enforcer_decisions_total", {{"name", "execwhacker"}}), 5);
  EXPECT_EQ(v("cryptnono_enforcer_killed_total", {{"name", "execwhacker"}}), 2);
  EXPECT_GT(v("cryptnono_publisher_last_seen_timestamp_seconds", {{"publisher_kind", "enforcer"}, {"name", "execwhacker"}}),
            1.6e9);
  EXPECT_EQ(v("cryptnono_exporter_malformed_messages_total"), 0);

  auto health = http_get(port_, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body.rfind("ok\n", 0), 0u) << health.body;
  EXPECT_NE(health.body.find("enforcer: last message"), std::string::npos) << health.body;

  EXPECT_EQ(http_get(port_, "/other").status, 404);
  EXPECT_EQ(http_get(port_, "/metrics/extra").status, 404);
  EXPECT_EQ(http_get(port_, "/").status, 404);
  EXPECT_EQ(http_request(port_, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi").status, 404);
  EXPECT_EQ(http_request(port_, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status, 404);
  // An oversized request is refused by the server, which keeps serving.
  auto big = http_request(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n");
  EXPECT_NE(big.status, 200);
  EXPECT_EQ(http_get(port_, "/healthz").status, 200);
}

TEST_F(ExporterEndToEnd, CountsMalformedMessagesAndPublisherRestarts) {
  reader_ = LineReader(out_read_);
  // The raw socket speaks the wire format by hand (a stage's publisher from a newer or a
  // broken build): first it joins with a well-formed stats message.
  auto raw_send = [&](std::string_view topic, capnp::MessageBuilder& mb) {
    auto words = capnp::messageToFlatArray(mb);
    raw_.send(zmq::buffer(topic.data(), topic.size()), zmq::send_flags::sndmore);
    raw_.send(zmq::buffer(words.asBytes().begin(), words.asBytes().size()), zmq::send_flags::none);
  };
  uint64_t raw_sequence = 0;
  auto raw_envelope = [&](capnp::MallocMessageBuilder& mb) {
    auto env = mb.initRoot<schema::Envelope>();
    env.setPublisherKind("probe");
    env.setPublisherId("probe/probe/01");
    env.setSequence(++raw_sequence);
    return env;
  };
  join(
      [&] {
        capnp::MallocMessageBuilder mb;
        raw_envelope(mb).getBody().initStats();
        raw_send("stats", mb);
      },
      "probe");

  // 1: garbage words (a segment table claiming more than is there)
  uint64_t garbage[2] = {0xffffffff00000000ull, 0x0123456789abcdefull};
  raw_.send(zmq::str_buffer("decision"), zmq::send_flags::sndmore);
  raw_.send(zmq::buffer(garbage, sizeof garbage), zmq::send_flags::none);
  // 2: a stats body on the decision topic
  {
    capnp::MallocMessageBuilder mb;
    raw_envelope(mb).getBody().initStats();
    raw_send("decision", mb);
  }
  // 3: three frames
  raw_.send(zmq::str_buffer("decision"), zmq::send_flags::sndmore);
  raw_.send(zmq::str_buffer("12345678"), zmq::send_flags::sndmore);
  raw_.send(zmq::str_buffer("12345678"), zmq::send_flags::none);
  // Then a good decision on the same connection: once its line is out, the above were handled.
  {
    capnp::MallocMessageBuilder mb;
    fill_decision(raw_envelope(mb).getBody().initDecision(),
                  {schema::Action::KILLED, "execwhacker.bpf", "marker", "marker", "", "", 0, 0, 0, 77});
    raw_send("decision", mb);
  }
  auto line = next_line();
  EXPECT_EQ(line["pid"], 77);
  EXPECT_EQ(metric_value(metrics(), "cryptnono_exporter_malformed_messages_total"), 3.0);

  // Restart: the enforcer's publisher goes away and a new one (new id) binds the endpoint.
  join([&] { publish_stats(*pub_, {}); }, "enforcer");
  pub_.reset();
  auto again = Publisher::bind(ctx_, endpoint_, "node-e2e", "enforcer", "execwhacker");
  ASSERT_TRUE(again) << again.error().message;
  pub_ = std::move(*again);
  bool restarted = false;
  for (int i = 0; i < 500 && !restarted; ++i) {
    publish_stats(*pub_, {});
    restarted = metric_value(metrics(), "cryptnono_publisher_restarts_total", {{"publisher_kind", "enforcer"}}) == 1.0;
    if (!restarted) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(restarted);
}

TEST(ExporterBinary, RunsPrintsAndExitsZeroOnSigterm) {
  cryptnono::testing::TempDir dir("exporter-bin");
  zmq::context_t ctx;
  std::string ep = "ipc://" + dir.path + "/enforcer.sock";
  auto pub = Publisher::bind(ctx, ep, "node-bin", "enforcer", "execwhacker");
  ASSERT_TRUE(pub) << pub.error().message;
  int port = cryptnono::testing::free_tcp_port();
  auto child = cryptnono::testing::spawn({std::string(CRYPTNONO_BIN_DIR) + "/cryptnono-exporter", "--connect", ep,
                                          "--metrics-address", "127.0.0.1:" + std::to_string(port), "--log-level",
                                          "warn"});
  ASSERT_GT(child.pid, 0);
  LineReader reader(child.out);
  std::optional<std::string> line;
  for (int i = 0; i < 500 && !line; ++i) {  // until the subscription has joined
    publish_decision(**pub, {schema::Action::KILLED, "execwhacker.bpf", "/bin/miner --pool x", "--pool x", "", "",
                             1'000, 2'000, 3'000, 99});
    line = reader.next(20ms);
  }
  ASSERT_TRUE(line);
  auto parsed = nlohmann::json::parse(*line);
  EXPECT_EQ(parsed["action"], "killed");
  EXPECT_EQ(parsed["pid"], 99);
  EXPECT_EQ(parsed["node"], "node-bin");
  auto m = http_get(port, "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_GE(metric_value(m.body, "cryptnono_execwhacker_processes_killed_total", {{"source", "execwhacker.bpf"}}).value_or(0),
            1.0);
  EXPECT_EQ(http_get(port, "/healthz").status, 200);
  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  EXPECT_EQ(child.wait(10s), 0);
}

TEST(ExporterBinary, CheckValidatesFlagsWithoutBinding) {
  auto ok = cryptnono::testing::spawn({std::string(CRYPTNONO_BIN_DIR) + "/cryptnono-exporter", "--check"});
  EXPECT_EQ(ok.wait(10s), 0);
  auto bad_prefix = cryptnono::testing::spawn(
      {std::string(CRYPTNONO_BIN_DIR) + "/cryptnono-exporter", "--check", "--metrics-prefix", "9bad-prefix"});
  EXPECT_EQ(bad_prefix.wait(10s), 2);
  auto bad_address = cryptnono::testing::spawn(
      {std::string(CRYPTNONO_BIN_DIR) + "/cryptnono-exporter", "--check", "--metrics-address", "localhost"});
  EXPECT_EQ(bad_address.wait(10s), 2);
  auto bad_endpoint = cryptnono::testing::spawn(
      {std::string(CRYPTNONO_BIN_DIR) + "/cryptnono-exporter", "--check", "--connect", "/run/x.sock"});
  EXPECT_EQ(bad_endpoint.wait(10s), 2);
}

}  // namespace
}  // namespace cryptnono::exporter
