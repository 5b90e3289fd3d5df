// json_view and the exporter's decision line: every message, however hostile its bytes,
// must become exactly one line of valid JSON with the fields cryptnono users read.
#include <cstring>
#include <functional>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <kj/exception.h>

#include "cryptnono/exporter/container.h"
#include "cryptnono/exporter/decision_log.h"
#include "cryptnono/json_view.h"
#include "cryptnono/transport.h"

namespace cryptnono {
namespace {

using exporter::ContainerRef;
using exporter::Enrichment;

constexpr uint64_t kSeedWallNs = 1706720372990489000ull;  // 2024-01-31T16:59:32.990489Z, the seed's example
const std::string kContainerId = "3f4e1b2a9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

struct DecisionSpec {
  schema::Action action = schema::Action::KILLED;
  std::string cmdline = "/usr/bin/sh -c 'sleep 1 && echo beiquatohga1uay0ahmies9couyahpeiz9xohju3ahvaik3faem7eey1thaish1u'";
  std::string matched = "beiquatohga1uay0ahmies9couyahpeiz9xohju3ahvaik3faem7eey1thaish1u";
  std::string source = "execwhacker.bpf";
  std::string allowed_by;
  std::string reason;
  std::string cgroup = "kubepods-burstable.slice/kubepods-burstable-podd2ed6416_812f_413b_ba53_e62d11646809.slice/"
                       "cri-containerd-" + kContainerId + ".scope";
  uint64_t exec_ns = 5'000'000'000;
  uint64_t decided_ns = 5'000'020'500;
  uint64_t killed_ns = 5'000'045'000;
  uint64_t exited_ns = 5'000'105'250;
  uint64_t config_generation = 3;
};

// A whole envelope built the way the enforcer builds one.
void build_decision(capnp::MallocMessageBuilder& mb, const DecisionSpec& spec) {
  auto env = mb.initRoot<schema::Envelope>();
  env.setNode("node-7");
  env.setPublisherId("enforcer/execwhacker/0123456789abcdef");
  env.setPublisherKind("enforcer");
  env.setSequence(42);
  env.setSentWallNs(kSeedWallNs);
  env.setSentBootNs(spec.decided_ns + 1000);
  auto d = env.getBody().initDecision();
  d.setDetector("execwhacker");
  d.setConfigGeneration(spec.config_generation);
  d.setAction(spec.action);
  d.setSource(spec.source);
  d.setMatched(capnp::Text::Reader(spec.matched.data(), spec.matched.size()));  // NULs kept
  d.setAllowedBy(spec.allowed_by);
  d.setReason(spec.reason);
  d.setCmdline(kj::arrayPtr(reinterpret_cast<const kj::byte*>(spec.cmdline.data()), spec.cmdline.size()));
  d.setDecidedBootNs(spec.decided_ns);
  d.setKilledBootNs(spec.killed_ns);
  d.setExitedBootNs(spec.exited_ns);
  d.setReceivedBootNs(spec.decided_ns - 500);
  auto ev = d.initEvent();
  ev.setSource(spec.exec_ns == 0 ? schema::Source::SCAN : schema::Source::BPF);
  ev.setPid(23933);
  ev.setTgid(23933);
  ev.setPpid(23900);
  ev.setUid(1000);
  ev.setExecBootNs(spec.exec_ns);
  ev.setCgroupName(capnp::Text::Reader(spec.cgroup.data(), spec.cgroup.size()));
}

Json line_for(const DecisionSpec& spec) {
  capnp::MallocMessageBuilder mb;
  build_decision(mb, spec);
  auto env = mb.getRoot<schema::Envelope>().asReader();
  auto container = exporter::parse_cgroup(env.getBody().getDecision().getEvent().getCgroupName().cStr());
  return exporter::decision_line(env, env.getBody().getDecision(), container, Enrichment{});
}

// The property every test here checks: one line, and it parses.
nlohmann::json parse_one_line(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "a raw newline inside the JSON line";
  EXPECT_EQ(line.find('\r'), std::string::npos);
  return nlohmann::json::parse(line);  // throws (and fails the test) if invalid
}

TEST(DecisionLine, HasCryptnonoFieldsInCryptnonoOrderAsInTheSeedExample) {
  auto line = dump_line(line_for(DecisionSpec{}));
  auto parsed = nlohmann::ordered_json::parse(line);
  std::vector<std::string> keys;
  for (auto& [k, v] : parsed.items()) keys.push_back(k);
  const std::vector<std::string> cryptnono = {"pid",   "cmdline", "matched", "source", "container_type", "labels",
                                              "image", "action",  "event",   "level",  "timestamp"};
  ASSERT_GE(keys.size(), cryptnono.size());
  EXPECT_EQ(std::vector<std::string>(keys.begin(), keys.begin() + cryptnono.size()), cryptnono);
  EXPECT_EQ(parsed["pid"], 23933);
  EXPECT_EQ(parsed["cmdline"],
            "/usr/bin/sh -c 'sleep 1 && echo beiquatohga1uay0ahmies9couyahpeiz9xohju3ahvaik3faem7eey1thaish1u'");
  EXPECT_EQ(parsed["matched"], "beiquatohga1uay0ahmies9couyahpeiz9xohju3ahvaik3faem7eey1thaish1u");
  EXPECT_EQ(parsed["source"], "execwhacker.bpf");
  EXPECT_EQ(parsed["container_type"], "cri");
  EXPECT_EQ(parsed["labels"], nlohmann::ordered_json::object());
  EXPECT_EQ(parsed["image"], "");
  EXPECT_EQ(parsed["action"], "killed");
  EXPECT_EQ(parsed["event"], "Killed process");
  EXPECT_EQ(parsed["level"], "info");
  EXPECT_EQ(parsed["timestamp"], "2024-01-31T16:59:32.990489Z");
  // Ours, after cryptnono's.
  EXPECT_EQ(parsed["node"], "node-7");
  EXPECT_EQ(parsed["detector"], "execwhacker");
  EXPECT_EQ(parsed["ppid"], 23900);
  EXPECT_EQ(parsed["uid"], 1000);
  EXPECT_EQ(parsed["container_id"], kContainerId);
  EXPECT_EQ(parsed["pod_uid"], "d2ed6416-812f-413b-ba53-e62d11646809");
  EXPECT_EQ(parsed["allowedby"], "");
  EXPECT_EQ(parsed["reason"], "");
  EXPECT_EQ(parsed["cmdline_from_proc"], false);
  EXPECT_EQ(parsed["config_generation"], 3);
  EXPECT_DOUBLE_EQ(parsed["exec_to_decision_us"].get<double>(), 20.5);
  EXPECT_DOUBLE_EQ(parsed["exec_to_kill_us"].get<double>(), 45.0);
  EXPECT_DOUBLE_EQ(parsed["exec_to_exit_us"].get<double>(), 105.25);
  EXPECT_DOUBLE_EQ(parsed["kill_to_exit_us"].get<double>(), 60.25);
}

TEST(DecisionLine, MapsEveryActionToCryptnonoActionEventAndLevel) {
  struct Case {
    schema::Action action;
    const char* name;
    const char* event;
    const char* level;
  };
  const Case cases[] = {
      {schema::Action::KILLED, "killed", "Killed process", "info"},
      {schema::Action::SPARED, "spared", "Spared process", "info"},
      {schema::Action::MISSED_KILL, "missed-kill", "Missed kill", "info"},
      {schema::Action::WOULD_KILL, "would-kill", "Would kill process (dry run)", "info"},
      {schema::Action::ERROR, "error", "Error", "error"},
      {schema::Action::NO_MATCH, "no-match", "No match", "info"},
  };
  for (const auto& c : cases) {
    DecisionSpec spec;
    spec.action = c.action;
    auto parsed = parse_one_line(dump_line(line_for(spec)));
    EXPECT_EQ(parsed["action"], c.name);
    EXPECT_EQ(parsed["event"], c.event);
    EXPECT_EQ(parsed["level"], c.level);
  }
  EXPECT_FALSE(exporter::should_log(schema::Action::NO_MATCH, false));
  EXPECT_TRUE(exporter::should_log(schema::Action::NO_MATCH, true));
  for (auto a : {schema::Action::KILLED, schema::Action::SPARED, schema::Action::MISSED_KILL,
                 schema::Action::WOULD_KILL, schema::Action::ERROR}) {
    EXPECT_TRUE(exporter::should_log(a, false));
  }
}

TEST(DecisionLine, OmitsLatenciesThatWereNotMeasured) {
  DecisionSpec scan;
  scan.exec_ns = 0;  // a /proc sweep has no exec time
  scan.source = "execwhacker.scan";
  auto parsed = parse_one_line(dump_line(line_for(scan)));
  EXPECT_FALSE(parsed.contains("exec_to_decision_us"));
  EXPECT_FALSE(parsed.contains("exec_to_kill_us"));
  EXPECT_FALSE(parsed.contains("exec_to_exit_us"));
  EXPECT_TRUE(parsed.contains("kill_to_exit_us"));  // killed and seen gone: measured without an exec time

  DecisionSpec not_seen_gone;  // not gone within the exit wait
  not_seen_gone.exited_ns = 0;
  parsed = parse_one_line(dump_line(line_for(not_seen_gone)));
  EXPECT_TRUE(parsed.contains("exec_to_kill_us"));
  EXPECT_FALSE(parsed.contains("exec_to_exit_us"));
  EXPECT_FALSE(parsed.contains("kill_to_exit_us"));

  DecisionSpec spared;
  spared.action = schema::Action::SPARED;
  spared.killed_ns = 0;
  spared.allowed_by = "^/usr/bin/sh -c 'sleep";
  parsed = parse_one_line(dump_line(line_for(spared)));
  EXPECT_TRUE(parsed.contains("exec_to_decision_us"));
  EXPECT_FALSE(parsed.contains("exec_to_kill_us"));
  EXPECT_EQ(parsed["allowedby"], "^/usr/bin/sh -c 'sleep");
}

TEST(DecisionLine, EveryByteValueGivesOneValidLine) {
  DecisionSpec spec;
  spec.cmdline.clear();
  for (int b = 0; b < 256; ++b) spec.cmdline.push_back(static_cast<char>(b));
  spec.matched = spec.cmdline;  // Text fields from the wire are not validated either
  spec.cgroup = std::string("a\0b\nc\"d\\e\xff", 11);
  auto parsed = parse_one_line(dump_line(line_for(spec)));
  auto cmdline = parsed["cmdline"].get<std::string>();
  // ASCII (NUL and every control character included) survives exactly.
  EXPECT_EQ(cmdline.substr(0, 128), spec.cmdline.substr(0, 128));
  // Each of the 128 high bytes, alone, is invalid UTF-8: each becomes U+FFFD.
  std::string replacements;
  for (int i = 0; i < 128; ++i) replacements += "\xEF\xBF\xBD";
  EXPECT_EQ(cmdline.substr(128), replacements);
  EXPECT_EQ(parsed["matched"].get<std::string>().substr(0, 128), spec.cmdline.substr(0, 128));
}

TEST(DecisionLine, InvalidUtf8QuotesBackslashesAndNewlinesGiveOneValidLine) {
  struct Case {
    std::string bytes;
    std::string expected;  // after parsing back
  };
  const std::string r = "\xEF\xBF\xBD";
  const Case cases[] = {
      {"quote\" back\\slash \\\" \n\r\t\b\f end", "quote\" back\\slash \\\" \n\r\t\b\f end"},
      {std::string("nul\0inside\0\0", 13), std::string("nul\0inside\0\0", 13)},
      {"line1\nline2\n\n{\"injected\": true}\n", "line1\nline2\n\n{\"injected\": true}\n"},
      {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"},  // valid UTF-8 kept
      {"\xE2\x80\xA8 \xE2\x80\xA9", "\xE2\x80\xA8 \xE2\x80\xA9"},  // U+2028/9 are valid JSON string content
      {"x\xC3\x28y", "x" + r + "(y"},          // bad continuation
      {"\xA0\xA1", r + r},                     // lone continuation bytes
      {"\xC0\xAF", r + r},                     // overlong '/'
      {"\xED\xA0\x80", r + r + r},             // UTF-16 surrogate
      {"\xF8\x88\x80\x80\x80", r + r + r + r + r},  // 5-byte form
      {"ends mid-char \xE2\x82", "ends mid-char " + r},
      {"\xFF\xFE\xFD", r + r + r},
  };
  for (const auto& c : cases) {
    DecisionSpec spec;
    spec.cmdline = c.bytes;
    auto line = dump_line(line_for(spec));
    auto parsed = parse_one_line(line);
    EXPECT_EQ(parsed["cmdline"].get<std::string>(), c.expected) << line;
  }
}

TEST(DecisionLine, TwoMebibyteHostileCmdlineGivesOneValidLine) {
  std::mt19937 rng(1234);
  DecisionSpec spec;
  spec.cmdline.resize(2u << 20);
  for (auto& ch : spec.cmdline) ch = static_cast<char>(rng() & 0xff);
  // Seed the worst characters densely too.
  for (size_t i = 0; i < spec.cmdline.size(); i += 97) spec.cmdline[i] = "\n\"\\\0\r"[i % 5];
  auto line = dump_line(line_for(spec));
  auto parsed = parse_one_line(line);
  EXPECT_GE(parsed["cmdline"].get<std::string>().size(), 1u << 20);
  EXPECT_EQ(parsed["action"], "killed");
}

// A flowkiller or monero decision as their enforcers build them.
Json detector_line(const std::function<void(schema::Decision::Builder)>& fill) {
  capnp::MallocMessageBuilder mb;
  build_decision(mb, DecisionSpec{});
  auto env = mb.getRoot<schema::Envelope>();
  auto d = env.getBody().getDecision();
  d.getEvent().setExecBootNs(0);
  fill(d);
  auto reader = env.asReader();
  auto container = exporter::parse_cgroup(reader.getBody().getDecision().getEvent().getCgroupName().cStr());
  return exporter::decision_line(reader, reader.getBody().getDecision(), container, Enrichment{});
}

void set_destination(schema::ConnectEvent::Builder c, std::vector<uint8_t> bytes, uint16_t port) {
  c.setDestination(kj::arrayPtr(bytes.data(), bytes.size()));
  c.setDestinationPort(port);
}

TEST(DecisionLine, ConnectDecisionsSayDestinationRuleAndUniqueDestinations) {
  auto fanout = parse_one_line(dump_line(detector_line([](schema::Decision::Builder d) {
    d.setDetector("flowkiller");
    d.setRule("fanout");
    d.setUniqueDestinations(16);
    set_destination(d.initConnect(), {1, 2, 3, 4}, 443);
  })));
  EXPECT_EQ(fanout["destination"], "1.2.3.4:443");
  EXPECT_EQ(fanout["rule"], "fanout");
  EXPECT_EQ(fanout["unique_destinations"], 16);
  EXPECT_EQ(fanout["detector"], "flowkiller");
  EXPECT_EQ(fanout["pid"], 23933);  // the existing fields stay
  EXPECT_FALSE(fanout.contains("exec_to_decision_us"));
  EXPECT_FALSE(fanout.contains("fpu_switches"));

  std::vector<uint8_t> v6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  auto banned = parse_one_line(dump_line(detector_line([&](schema::Decision::Builder d) {
    d.setRule("banned");
    d.setUniqueDestinations(0);
    set_destination(d.initConnect(), v6, 8443);
  })));
  EXPECT_EQ(banned["destination"], "[2001:db8::1]:8443");
  EXPECT_EQ(banned["rule"], "banned");
  EXPECT_FALSE(banned.contains("unique_destinations"));

  auto no_match = parse_one_line(dump_line(detector_line([](schema::Decision::Builder d) {
    d.setAction(schema::Action::NO_MATCH);
    set_destination(d.initConnect(), {10, 0, 0, 1}, 5432);
  })));
  EXPECT_EQ(no_match["destination"], "10.0.0.1:5432");
  EXPECT_FALSE(no_match.contains("rule"));

  auto malformed = parse_one_line(dump_line(detector_line([](schema::Decision::Builder d) {
    set_destination(d.initConnect(), {1, 2, 3}, 1);
  })));
  EXPECT_EQ(malformed["destination"], "?:1");
}

TEST(DecisionLine, FpuDecisionsSayTheSwitchesAndMxcsr) {
  auto line = parse_one_line(dump_line(detector_line([](schema::Decision::Builder d) {
    d.setDetector("monero");
    d.setRule("rounding-mode");
    auto fpu = d.initFpu();
    fpu.setCount(200);
    fpu.setMxcsr(0x7f80);
  })));
  EXPECT_EQ(line["fpu_switches"], 200);
  EXPECT_EQ(line["mxcsr"], "0x7f80");
  EXPECT_EQ(line["rule"], "rounding-mode");
  EXPECT_FALSE(line.contains("destination"));
}

TEST(DecisionLine, ExecDecisionsGetNoneOfTheDetectorFields) {
  auto parsed = parse_one_line(dump_line(line_for(DecisionSpec{})));
  for (const char* key : {"rule", "destination", "unique_destinations", "fpu_switches", "mxcsr"})
    EXPECT_FALSE(parsed.contains(key)) << key;
}

TEST(DecisionLine, HostileBytesInConnectAndFpuDecisionsGiveOneValidLine) {
  std::string hostile;
  for (int b = 0; b < 256; ++b) hostile.push_back(static_cast<char>(b));
  hostile += "\n{\"injected\": true}\n\xff\xfe";
  for (bool connect : {true, false}) {
    auto line = dump_line(detector_line([&](schema::Decision::Builder d) {
      d.setCmdline(kj::arrayPtr(reinterpret_cast<const kj::byte*>(hostile.data()), hostile.size()));
      d.setRule(capnp::Text::Reader(hostile.data(), hostile.size()));
      d.setMatched(capnp::Text::Reader(hostile.data(), hostile.size()));
      d.getEvent().setComm(capnp::Text::Reader(hostile.data(), hostile.size()));
      if (connect) {
        auto c = d.initConnect();
        set_destination(c, {1, 2, 3, 4}, 80);
        c.setComm(capnp::Text::Reader(hostile.data(), hostile.size()));
      } else {
        d.initFpu().setComm(capnp::Text::Reader(hostile.data(), hostile.size()));
      }
    }));
    auto parsed = parse_one_line(line);
    EXPECT_EQ(parsed["cmdline"].get<std::string>().substr(0, 128), hostile.substr(0, 128));
  }
}

TEST(JsonView, EnvelopeHasEveryFieldOfEveryBodyKind) {
  // Every field the schema defines must appear, named as in the schema.
  auto expect_all_fields = [](const Json& obj, capnp::StructSchema schema) {
    for (auto field : schema.getNonUnionFields()) {
      std::string name = field.getProto().getName().cStr();
      EXPECT_TRUE(obj.contains(name)) << schema.getProto().getDisplayName().cStr() << " lacks " << name;
    }
  };
  {
    capnp::MallocMessageBuilder mb;
    DecisionSpec spec;
    build_decision(mb, spec);
    auto json = envelope_json(mb.getRoot<schema::Envelope>().asReader());
    expect_all_fields(json, capnp::Schema::from<schema::Envelope>());
    ASSERT_TRUE(json["body"].contains("decision"));
    auto& d = json["body"]["decision"];
    expect_all_fields(d, capnp::Schema::from<schema::Decision>());
    expect_all_fields(d["event"], capnp::Schema::from<schema::ExecEvent>());
    EXPECT_EQ(d["action"], "killed");
    EXPECT_EQ(d["cmdline"], spec.cmdline);
    EXPECT_EQ(d["event"]["source"], "bpf");
    EXPECT_EQ(json["sequence"], 42);
    EXPECT_EQ(json["sentWallNs"], kSeedWallNs);  // exact: JSON text keeps all 64 bits
  }
  {
    capnp::MallocMessageBuilder mb;
    auto env = mb.initRoot<schema::Envelope>();
    env.setPublisherKind("collector");
    auto ev = env.getBody().initExec();
    static const char kArgv[] = "/bin/sh\0-c\0\0echo \"hi\"\n\0";
    std::string argv(kArgv, sizeof kArgv - 1);
    ev.setArgv(kj::arrayPtr(reinterpret_cast<const kj::byte*>(argv.data()), argv.size()));
    std::string filename = "/bin/sh";
    ev.setFilename(kj::arrayPtr(reinterpret_cast<const kj::byte*>(filename.data()), filename.size()));
    ev.setArgvTruncated(true);
    ev.setComm("sh");
    auto json = envelope_json(mb.getRoot<schema::Envelope>().asReader());
    auto& e = json["body"]["exec"];
    expect_all_fields(e, capnp::Schema::from<schema::ExecEvent>());
    EXPECT_EQ(e["argv"], argv);
    EXPECT_EQ(e["argvList"], Json::array({"/bin/sh", "-c", "", "echo \"hi\"\n"}));
    EXPECT_EQ(e["filename"], "/bin/sh");
    EXPECT_EQ(e["argvTruncated"], true);
    parse_one_line(dump_line(json));
  }
  {
    capnp::MallocMessageBuilder mb;
    auto env = mb.initRoot<schema::Envelope>();
    auto st = env.getBody().initStats();
    st.setUptimeNs(7);
    st.setIntervalMs(5000);
    auto counters = st.initCounters(2);
    counters[0].setName("events_bpf");
    counters[0].setValue(10);
    counters[1].setName("send_drops");
    counters[1].setValue(0);
    auto json = envelope_json(mb.getRoot<schema::Envelope>().asReader());
    auto& s = json["body"]["stats"];
    expect_all_fields(s, capnp::Schema::from<schema::Stats>());
    EXPECT_EQ(s["counters"], Json::parse(R"([{"name":"events_bpf","value":10},{"name":"send_drops","value":0}])"));
    EXPECT_EQ(s["intervalMs"], 5000);
  }
}

TEST(JsonView, ArgvArraySplitsAtNulAndKeepsATruncatedLastArgument) {
  EXPECT_EQ(argv_array(""), Json::array());
  EXPECT_EQ(argv_array(std::string_view("a\0", 2)), Json::array({"a"}));
  EXPECT_EQ(argv_array(std::string_view("a\0\0b\0", 5)), Json::array({"a", "", "b"}));
  EXPECT_EQ(argv_array(std::string_view("a\0partial", 9)), Json::array({"a", "partial"}));
}

TEST(JsonView, RandomBytesOnTheWireNeverCrashAndAlwaysGiveOneLineOrAnError) {
  // What `cryptnono tail` does with whatever a peer sends: decode lazily, catch
  // kj::Exception. Here: 2000 random buffers, and 2000 valid messages with random bytes flipped.
  std::mt19937_64 rng(99);
  capnp::MallocMessageBuilder good;
  build_decision(good, DecisionSpec{});
  auto good_words = capnp::messageToFlatArray(good);
  int decoded = 0, refused = 0;
  for (int i = 0; i < 4000; ++i) {
    std::vector<capnp::word> words;
    if (i % 2 == 0) {
      words.resize(1 + rng() % 64);
      auto* bytes = reinterpret_cast<unsigned char*>(words.data());
      for (size_t k = 0; k < words.size() * sizeof(capnp::word); ++k) bytes[k] = static_cast<unsigned char>(rng());
    } else {
      words.assign(good_words.begin(), good_words.end());
      auto* bytes = reinterpret_cast<unsigned char*>(words.data());
      for (int k = 0; k < 4; ++k) bytes[rng() % (words.size() * 8)] = static_cast<unsigned char>(rng());
    }
    try {
      capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()), wire_reader_options());
      auto line = dump_line(envelope_json(reader.getRoot<schema::Envelope>()));
      parse_one_line(line);
      ++decoded;
    } catch (const kj::Exception&) {
      ++refused;
    }
  }
  EXPECT_EQ(decoded + refused, 4000);
  EXPECT_GT(decoded, 0);  // flipped bytes inside data mostly still decode
}

TEST(JsonView, AListDeclaringMillionsOfElementsIsShownBoundedFromAFewBytes) {
  // A stats message whose counter list claims 2^20 zero-sized elements: a handful of
  // words on the wire. Built by hand, as a hostile peer would.
  capnp::MallocMessageBuilder builder;
  auto stats = builder.initRoot<schema::Envelope>().getBody().initStats();
  stats.initCounters(1u << 20);  // real elements here, the same shape a forged list declares
  auto words = capnp::messageToFlatArray(builder);
  Received got;
  ASSERT_TRUE(got.assign("stats", words.begin(), words.size() * sizeof(capnp::word)));
  auto env = got.envelope();
  ASSERT_TRUE(env);
  Json json = envelope_json(*env);
  const auto& counters = json["body"]["stats"]["counters"];
  ASSERT_EQ(counters.size(), 4097u);
  EXPECT_EQ(counters.back(), "(1044480 more elements not shown)");
}

}  // namespace
}  // namespace cryptnono
