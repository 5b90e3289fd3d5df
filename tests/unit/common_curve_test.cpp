// Who may connect: CurveZMQ on tcp:// with real sockets on loopback. An authorized client
// receives; a client with an unknown key, a client without CurveZMQ and a peer sending
// garbage bytes receive nothing and break nothing; tcp:// without keys is refused.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <capnp/message.h>
#include <gtest/gtest.h>

#include "cryptnono/curve.h"
#include "cryptnono/transport.h"

namespace cryptnono {
namespace {

CurveKeyPair pair_or_die() {
  auto keys = generate_curve_key_pair();
  EXPECT_TRUE(keys) << keys.error().message;
  return *keys;
}

// Publishes until `sub` gets a message or `budget_ms` passes; true when one arrived.
bool delivered(Publisher& pub, Subscriber& sub, int budget_ms = 1500) {
  Received got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(budget_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    capnp::MallocMessageBuilder mb;
    pub.begin(mb, topic::kDecision).getBody().initDecision().setDetector("curve-test");
    pub.send(topic::kDecision, mb);
    if (sub.wait(-1, 10) == Subscriber::Wait::kMessage && sub.try_receive(got)) return true;
  }
  return false;
}

class Curve : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryptnono-curve-XXXXXX";
    dir_ = mkdtemp(tmpl);
    server_ = pair_or_die();
    client_ = pair_or_die();
    TransportSecurity security;
    security.keys = server_;
    security.authorized = {client_.public_key};
    auto pub = Publisher::bind(ctx_, "ipc://" + dir_ + "/pub.sock", "node", "enforcer", "execwhacker");
    ASSERT_TRUE(pub) << pub.error().message;
    pub_ = std::move(*pub);
    auto tcp = pub_->add_endpoint("tcp://127.0.0.1:*", &security);
    ASSERT_TRUE(tcp) << tcp.error().message;
    tcp_ = *tcp;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Subscriber> subscriber(const CurveKeyPair& own, const std::string& server_key) {
    TransportSecurity security;
    security.keys = own;
    security.server_key = server_key;
    auto sub = Subscriber::connect(ctx_, {tcp_}, {std::string(topic::kDecision)}, 1000, &security);
    EXPECT_TRUE(sub) << sub.error().message;
    return sub ? std::move(*sub) : nullptr;
  }

  zmq::context_t ctx_;
  std::string dir_;
  CurveKeyPair server_, client_;
  std::unique_ptr<Publisher> pub_;
  std::string tcp_;
};

TEST_F(Curve, AnAuthorizedClientReceivesOverTcp) {
  auto sub = subscriber(client_, server_.public_key);
  ASSERT_TRUE(sub);
  EXPECT_TRUE(delivered(*pub_, *sub));
  EXPECT_GE(pub_->curve_accepted(), 1u);
}

TEST_F(Curve, AClientWithAnUnknownKeyGetsNothingAndIsCounted) {
  auto stranger = pair_or_die();
  auto sub = subscriber(stranger, server_.public_key);
  ASSERT_TRUE(sub);
  EXPECT_FALSE(delivered(*pub_, *sub, 1000));
  EXPECT_GE(pub_->curve_denied(), 1u);
  // The authorized client is unaffected by the refused one.
  auto good = subscriber(client_, server_.public_key);
  EXPECT_TRUE(delivered(*pub_, *good));
}

TEST_F(Curve, APlainClientWithoutCurveGetsNothing) {
  zmq::socket_t raw(ctx_, zmq::socket_type::sub);
  raw.set(zmq::sockopt::subscribe, "");
  raw.set(zmq::sockopt::rcvtimeo, 50);
  raw.connect(tcp_);
  bool got = false;
  for (int i = 0; i < 20 && !got; ++i) {
    capnp::MallocMessageBuilder mb;
    pub_->begin(mb, topic::kDecision).getBody().initDecision();
    pub_->send(topic::kDecision, mb);
    zmq::message_t msg;
    got = raw.recv(msg, zmq::recv_flags::none).has_value();
  }
  EXPECT_FALSE(got);
}

TEST_F(Curve, GarbageBytesOnTheTcpPortBreakNothing) {
  auto port = std::stoi(tcp_.substr(tcp_.rfind(':') + 1));
  for (int i = 0; i < 20; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::string junk(4096, static_cast<char>(0xff));
    junk.replace(0, 10, "\xff\0\0\0\0\0\0\0\x01\x7f", 10);  // a ZMTP-looking greeting, then noise
    (void)!write(fd, junk.data(), junk.size());
    close(fd);
  }
  auto sub = subscriber(client_, server_.public_key);
  EXPECT_TRUE(delivered(*pub_, *sub));
}

TEST_F(Curve, TheIpcEndpointStaysPlain) {
  auto sub = Subscriber::connect(ctx_, {"ipc://" + dir_ + "/pub.sock"}, {std::string(topic::kDecision)});
  ASSERT_TRUE(sub) << sub.error().message;
  EXPECT_TRUE(delivered(*pub_, **sub));
}

TEST(CurveRules, TcpWithoutKeysIsRefusedOnBothSides) {
  zmq::context_t ctx;
  auto pub = Publisher::bind(ctx, "tcp://127.0.0.1:*", "node", "collector", "collector");
  ASSERT_FALSE(pub);
  EXPECT_NE(pub.error().message.find("CurveZMQ"), std::string::npos) << pub.error().message;
  TransportSecurity no_clients;
  no_clients.keys = pair_or_die();
  auto lonely = Publisher::bind(ctx, "tcp://127.0.0.1:*", "node", "collector", "collector",
                                Publisher::kDefaultSendHwm, &no_clients);
  ASSERT_FALSE(lonely);
  EXPECT_NE(lonely.error().message.find("authorized"), std::string::npos) << lonely.error().message;
  auto sub = Subscriber::connect(ctx, {"tcp://127.0.0.1:1"}, {"exec"});
  ASSERT_FALSE(sub);
  EXPECT_NE(sub.error().message.find("--curve-server-key"), std::string::npos);
  TransportSecurity security;
  security.keys = pair_or_die();
  security.server_key = pair_or_die().public_key;
  auto mixed = Subscriber::connect(ctx, {"tcp://127.0.0.1:1", "ipc:///tmp/x.sock"}, {"exec"}, 1000, &security);
  ASSERT_FALSE(mixed);
  EXPECT_NE(mixed.error().message.find("mix"), std::string::npos);
}

TEST(CurveRules, TcpPublishEndpointsAreCheckedUpFront) {
  TransportSecurity none;
  EXPECT_TRUE(check_publish_endpoints({"ipc:///run/x.sock"}, none));
  auto refused = check_publish_endpoints({"ipc:///run/x.sock", "tcp://0.0.0.0:5556"}, none);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("tcp://0.0.0.0:5556: a tcp:// endpoint needs CurveZMQ"), std::string::npos);
  TransportSecurity keys_only;
  keys_only.keys = pair_or_die();
  EXPECT_FALSE(check_publish_endpoints({"tcp://0.0.0.0:5556"}, keys_only));
  keys_only.authorized = {pair_or_die().public_key};
  EXPECT_TRUE(check_publish_endpoints({"tcp://0.0.0.0:5556"}, keys_only));
}

TEST(CurveKeys, FilesRoundTripAndBadFilesNameTheLine) {
  auto keys = pair_or_die();
  auto parsed = parse_curve_key_file(format_curve_key_file(keys, true), "k.key");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->public_key, keys.public_key);
  EXPECT_EQ(parsed->secret_key, keys.secret_key);
  auto pub_only = parse_curve_key_file(format_curve_key_file(keys, false), "k.pub");
  ASSERT_TRUE(pub_only);
  EXPECT_TRUE(pub_only->secret_key.empty());

  struct Case {
    std::string text, error;
  } cases[] = {
      {"# nothing\n", "k:"},
      {"public-key = \"short\"\n", "k:1: public-key is not a 40-character Z85"},
      {"\n\ngarbage line\n", "k:3: expected"},
      {"public-key = \"" + pair_or_die().public_key + "\"\nsecret-key = \"" + keys.secret_key + "\"\n",
       "public-key does not belong to secret-key"},
  };
  for (const auto& c : cases) {
    auto r = parse_curve_key_file(c.text, "k");
    ASSERT_FALSE(r) << c.text;
    EXPECT_NE(r.error().message.find(c.error), std::string::npos) << r.error().message;
  }

  char tmpl[] = "/tmp/cryptnono-keys-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::filesystem::create_directories(dir + "/clients/..data");
  std::ofstream(dir + "/clients/a.pub") << format_curve_key_file(pair_or_die(), false);
  std::ofstream(dir + "/clients/b.pub") << format_curve_key_file(pair_or_die(), false);
  std::ofstream(dir + "/own.key") << format_curve_key_file(keys, true);
  CurveOptions options{dir + "/own.key", {dir + "/clients"}, dir + "/clients/a.pub"};
  auto security = options.load();
  ASSERT_TRUE(security) << security.error().message;
  EXPECT_EQ(security->authorized.size(), 2u);
  EXPECT_EQ(security->keys->public_key, keys.public_key);
  CurveOptions secret_missing{dir + "/clients/a.pub", {}, ""};
  auto refused = secret_missing.load();
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("no secret-key"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cryptnono
