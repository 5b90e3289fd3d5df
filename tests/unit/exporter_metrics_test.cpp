// ExporterMetrics without sockets: names built from the detector, stats deltas and
// restarts, and bounds on everything that comes off the wire.
#include <capnp/message.h>
#include <gtest/gtest.h>

#include "cryptnono/exporter/metrics.h"
#include "exporter_test_util.h"

namespace cryptnono::exporter {
namespace {

using cryptnono::testing::metric_value;

void decide(ExporterMetrics& m, const std::string& detector, schema::Action action, const std::string& source,
            const std::string& allowed_by = "", const std::string& reason = "", uint64_t exec_ns = 0,
            uint64_t killed_ns = 0) {
  capnp::MallocMessageBuilder mb;
  auto d = mb.initRoot<schema::Decision>();
  d.setDetector(detector);
  d.setAction(action);
  d.setSource(source);
  d.setAllowedBy(allowed_by);
  d.setReason(reason);
  d.initEvent().setExecBootNs(exec_ns);
  d.setKilledBootNs(killed_ns);
  m.on_decision(d.asReader());
}

void stats(ExporterMetrics& m, const std::string& kind, const std::string& id,
           const std::vector<std::pair<std::string, uint64_t>>& counters) {
  capnp::MallocMessageBuilder mb;
  auto s = mb.initRoot<schema::Stats>();
  auto list = s.initCounters(static_cast<unsigned>(counters.size()));
  for (size_t i = 0; i < counters.size(); ++i) {
    list[static_cast<unsigned>(i)].setName(counters[i].first);
    list[static_cast<unsigned>(i)].setValue(counters[i].second);
  }
  auto stage = stage_of(id, kind);
  m.on_publisher(kind, stage, id, 1.0);
  m.on_stats(kind, stage, id, s.asReader());
}

TEST(ExporterMetrics, CountsDecisionsPerActionWithCryptnonoNames) {
  ExporterMetrics m("cryptnono");
  decide(m, "execwhacker", schema::Action::NO_MATCH, "execwhacker.bpf");
  decide(m, "execwhacker", schema::Action::KILLED, "execwhacker.bpf", "", "", 1'000'000, 1'030'000);  // 30 us
  decide(m, "execwhacker", schema::Action::KILLED, "execwhacker.scan");
  decide(m, "execwhacker", schema::Action::SPARED, "execwhacker.bpf", "^/usr/bin/sh -c 'sleep");
  decide(m, "execwhacker", schema::Action::SPARED, "execwhacker.scan", "", "protected: pid 1");
  decide(m, "execwhacker", schema::Action::MISSED_KILL, "execwhacker.bpf", "", "process exited");
  decide(m, "execwhacker", schema::Action::WOULD_KILL, "execwhacker.bpf");
  decide(m, "execwhacker", schema::Action::ERROR, "execwhacker.bpf", "", "cannot open pidfd");
  auto text = m.serialize();
  auto v = [&](const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return metric_value(text, name, labels).value_or(-1);
  };
  EXPECT_EQ(v("cryptnono_execwhacker_processes_checked_total", {{"source", "execwhacker.bpf"}}), 6);
  EXPECT_EQ(v("cryptnono_execwhacker_processes_checked_total", {{"source", "execwhacker.scan"}}), 2);
  EXPECT_EQ(v("cryptnono_execwhacker_processes_killed_total", {{"source", "execwhacker.bpf"}}), 1);
  EXPECT_EQ(v("cryptnono_execwhacker_processes_killed_total", {{"source", "execwhacker.scan"}}), 1);
  EXPECT_EQ(v("cryptnono_execwhacker_processes_allowed_total",
              {{"source", "execwhacker.bpf"}, {"allowedby", "^/usr/bin/sh -c 'sleep"}}),
            1);
  // A protection rule's reason is reduced to its kind: no pids in label values.
  EXPECT_EQ(v("cryptnono_execwhacker_processes_allowed_total",
              {{"source", "execwhacker.scan"}, {"allowedby", "protected"}}),
            1);
  EXPECT_EQ(v("cryptnono_execwhacker_processes_missed_total", {{"source", "execwhacker.bpf"}}), 1);
  EXPECT_EQ(v("cryptnono_execwhacker_processes_would_kill_total", {{"source", "execwhacker.bpf"}}), 1);
  EXPECT_EQ(v("cryptnono_execwhacker_unexpected_errors_total"), 1);
  EXPECT_EQ(v("cryptnono_execwhacker_exec_to_kill_seconds_count"), 1);
  EXPECT_EQ(v("cryptnono_execwhacker_exec_to_kill_seconds_bucket", {{"le", "2.5e-05"}}), 0);
  EXPECT_EQ(v("cryptnono_execwhacker_exec_to_kill_seconds_bucket", {{"le", "5e-05"}}), 1);
}

TEST(ExporterMetrics, DefaultDetectorSeriesExistAtZeroAndOtherDetectorsGetTheirOwn) {
  ExporterMetrics m("np");
  auto text = m.serialize();
  EXPECT_EQ(metric_value(text, "np_execwhacker_processes_killed_total", {{"source", "execwhacker.bpf"}}), 0.0);
  EXPECT_EQ(metric_value(text, "np_execwhacker_processes_checked_total", {{"source", "execwhacker.scan"}}), 0.0);
  EXPECT_FALSE(metric_value(text, "np_monero_processes_killed_total"));

  decide(m, "monero", schema::Action::KILLED, "monero.fpu");
  decide(m, "flow killer/../x", schema::Action::KILLED, "flow");  // sanitized into a valid name
  text = m.serialize();
  EXPECT_EQ(metric_value(text, "np_monero_processes_killed_total", {{"source", "monero.fpu"}}), 1.0);
  EXPECT_EQ(metric_value(text, "np_flow_killer____x_processes_killed_total", {{"source", "flow"}}), 1.0);
}

void decide_rule(ExporterMetrics& m, const std::string& detector, schema::Action action, const std::string& rule,
                 const std::string& reason = "") {
  capnp::MallocMessageBuilder mb;
  auto d = mb.initRoot<schema::Decision>();
  d.setDetector(detector);
  d.setAction(action);
  d.setSource(detector + ".bpf");
  if (!rule.empty()) d.setRule(rule);
  d.setReason(reason);
  d.initEvent().setExecBootNs(0);  // these detectors judge no exec
  d.setKilledBootNs(action == schema::Action::KILLED ? 5'000'000 : 0);
  m.on_decision(d.asReader());
}

TEST(ExporterMetrics, MoneroAndFlowkillerUseCryptnonoNamesAndAppearWithTheirEnforcer) {
  ExporterMetrics m("cryptnono");
  auto text = m.serialize();
  EXPECT_FALSE(metric_value(text, "cryptnono_flowkiller_connects_checked_total"));
  EXPECT_FALSE(metric_value(text, "cryptnono_monero_processes_checked_total"));

  // The first message of each enforcer makes its series, at zero.
  m.on_publisher("enforcer", "flowkiller", "enforcer/flowkiller/aa", 1.0);
  m.on_publisher("enforcer", "monero", "enforcer/monero/bb", 1.0);
  text = m.serialize();
  EXPECT_EQ(metric_value(text, "cryptnono_flowkiller_connects_checked_total"), 0.0);
  for (const char* rule : {"banned", "fanout"}) {
    EXPECT_EQ(metric_value(text, "cryptnono_flowkiller_processes_killed_total", {{"reason", rule}}), 0.0) << rule;
    EXPECT_EQ(metric_value(text, "cryptnono_flowkiller_processes_missed_total", {{"reason", rule}}), 0.0) << rule;
  }
  for (const char* name : {"checked", "killed", "missed"})
    EXPECT_EQ(metric_value(text, std::string("cryptnono_monero_processes_") + name + "_total", {{"source", "monero.bpf"}}),
              0.0)
        << name;

  for (int i = 0; i < 3; ++i) decide_rule(m, "flowkiller", schema::Action::NO_MATCH, "");
  decide_rule(m, "flowkiller", schema::Action::KILLED, "banned");
  decide_rule(m, "flowkiller", schema::Action::KILLED, "fanout");
  decide_rule(m, "flowkiller", schema::Action::KILLED, "fanout");
  decide_rule(m, "flowkiller", schema::Action::MISSED_KILL, "banned", "process exited; destination ...");
  decide_rule(m, "flowkiller", schema::Action::WOULD_KILL, "fanout");
  decide_rule(m, "flowkiller", schema::Action::SPARED, "banned", "protected: pid 1; destination 1.2.3.4 is banned");
  decide_rule(m, "flowkiller", schema::Action::ERROR, "", "destination is 5 bytes (4 or 16 expected)");
  decide_rule(m, "monero", schema::Action::KILLED, "rounding-mode");
  decide_rule(m, "monero", schema::Action::MISSED_KILL, "rounding-mode", "pid reused (start time differs)");
  decide_rule(m, "monero", schema::Action::SPARED, "rounding-mode", "protected: the enforcer itself");
  text = m.serialize();
  auto v = [&](const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return metric_value(text, name, labels).value_or(-1);
  };
  EXPECT_EQ(v("cryptnono_flowkiller_connects_checked_total"), 10);
  EXPECT_EQ(v("cryptnono_flowkiller_processes_killed_total", {{"reason", "banned"}}), 1);
  EXPECT_EQ(v("cryptnono_flowkiller_processes_killed_total", {{"reason", "fanout"}}), 2);
  EXPECT_EQ(v("cryptnono_flowkiller_processes_missed_total", {{"reason", "banned"}}), 1);
  EXPECT_EQ(v("cryptnono_flowkiller_processes_missed_total", {{"reason", "fanout"}}), 0);
  EXPECT_EQ(v("cryptnono_flowkiller_processes_would_kill_total", {{"reason", "fanout"}}), 1);
  EXPECT_EQ(v("cryptnono_flowkiller_processes_allowed_total", {{"reason", "banned"}, {"allowedby", "protected"}}), 1);
  EXPECT_EQ(v("cryptnono_flowkiller_unexpected_errors_total"), 1);
  // The flowkiller counts connects, not processes, and has no exec to time from.
  EXPECT_FALSE(metric_value(text, "cryptnono_flowkiller_processes_checked_total"));
  EXPECT_FALSE(metric_value(text, "cryptnono_flowkiller_exec_to_kill_seconds_count"));
  EXPECT_EQ(text.find("cryptnono_flowkiller_processes_killed_total{source"), std::string::npos);

  EXPECT_EQ(v("cryptnono_monero_processes_checked_total", {{"source", "monero.bpf"}}), 3);
  EXPECT_EQ(v("cryptnono_monero_processes_killed_total", {{"source", "monero.bpf"}}), 1);
  EXPECT_EQ(v("cryptnono_monero_processes_missed_total", {{"source", "monero.bpf"}}), 1);
  EXPECT_EQ(v("cryptnono_monero_processes_allowed_total", {{"source", "monero.bpf"}, {"allowedby", "protected"}}), 1);
  // execwhacker's are untouched.
  EXPECT_EQ(v("cryptnono_execwhacker_processes_killed_total"), 0);

  // The prefix stays configurable for the new names too.
  ExporterMetrics np("np");
  decide_rule(np, "flowkiller", schema::Action::KILLED, "banned");
  EXPECT_EQ(metric_value(np.serialize(), "np_flowkiller_processes_killed_total", {{"reason", "banned"}}), 1.0);
  EXPECT_EQ(metric_value(np.serialize(), "np_flowkiller_connects_checked_total"), 1.0);
}

TEST(ExporterMetrics, FlowkillerReasonLabelsAreBounded) {
  ExporterMetrics m("cryptnono");
  for (int i = 0; i < 600; ++i) decide_rule(m, "flowkiller", schema::Action::KILLED, "rule" + std::to_string(i));
  auto text = m.serialize();
  size_t series = 0;
  for (size_t pos = 0; (pos = text.find("cryptnono_flowkiller_processes_killed_total{", pos)) != std::string::npos; ++pos)
    ++series;
  EXPECT_LE(series, kMaxSeries + 1);
  EXPECT_EQ(metric_value(text, "cryptnono_flowkiller_processes_killed_total"), 600.0);
}

TEST(ExporterMetrics, StatsCountersAddDeltasAndRestartsStartFresh) {
  ExporterMetrics m("cryptnono");
  const std::string first = "enforcer/execwhacker/aaaa";
  stats(m, "enforcer", first, {{"killed", 10}, {"events_lost", 0}});
  auto text = m.serialize();
  EXPECT_EQ(metric_value(text, "cryptnono_enforcer_killed_total", {{"name", "execwhacker"}}), 10.0);
  EXPECT_EQ(metric_value(text, "cryptnono_enforcer_events_lost_total", {{"name", "execwhacker"}}), 0.0);
  stats(m, "enforcer", first, {{"killed", 15}, {"events_lost", 2}});
  text = m.serialize();
  EXPECT_EQ(metric_value(text, "cryptnono_enforcer_killed_total", {{"name", "execwhacker"}}), 15.0);
  EXPECT_EQ(metric_value(text, "cryptnono_enforcer_events_lost_total", {{"name", "execwhacker"}}), 2.0);
  EXPECT_FALSE(metric_value(text, "cryptnono_publisher_restarts_total"));

  // Same stage, new id: a restart. Its counters count from its own start.
  const std::string second = "enforcer/execwhacker/bbbb";
  stats(m, "enforcer", second, {{"killed", 4}});
  text = m.serialize();
  EXPECT_EQ(metric_value(text, "cryptnono_publisher_restarts_total", {{"publisher_kind", "enforcer"}}), 1.0);
  EXPECT_EQ(metric_value(text, "cryptnono_enforcer_killed_total", {{"name", "execwhacker"}}), 19.0);

  // A value that goes down within one publisher id is a reset, never a negative step.
  stats(m, "enforcer", second, {{"killed", 1}});
  EXPECT_EQ(metric_value(m.serialize(), "cryptnono_enforcer_killed_total", {{"name", "execwhacker"}}), 20.0);

  // Another stage of the same kind is its own series, not a restart.
  stats(m, "enforcer", "enforcer/monero/cccc", {{"killed", 3}});
  text = m.serialize();
  EXPECT_EQ(metric_value(text, "cryptnono_enforcer_killed_total", {{"name", "monero"}}), 3.0);
  EXPECT_EQ(metric_value(text, "cryptnono_publisher_restarts_total"), 1.0);
  EXPECT_GT(metric_value(text, "cryptnono_publisher_last_seen_timestamp_seconds",
                         {{"publisher_kind", "enforcer"}, {"name", "monero"}})
                .value_or(0),
            0.0);
}

TEST(ExporterMetrics, LostMessagesAndMalformedAreCounted) {
  ExporterMetrics m("cryptnono");
  m.on_lost("collector", "stats", 3);
  m.on_lost("collector", "stats", 2);
  m.on_lost("enforcer", "decision", 1);
  m.on_malformed(4);
  auto text = m.serialize();
  EXPECT_EQ(metric_value(text, "cryptnono_messages_lost_total", {{"publisher_kind", "collector"}, {"topic", "stats"}}),
            5.0);
  EXPECT_EQ(metric_value(text, "cryptnono_messages_lost_total", {{"publisher_kind", "enforcer"}}), 1.0);
  EXPECT_EQ(metric_value(text, "cryptnono_exporter_malformed_messages_total"), 4.0);
}

TEST(ExporterMetrics, HostileLabelValuesAreBoundedAndValid) {
  ExporterMetrics m("cryptnono");
  // Many distinct sources: the series count stops growing at kMaxSeries (+ the overflow series).
  for (int i = 0; i < 600; ++i) decide(m, "execwhacker", schema::Action::KILLED, "src" + std::to_string(i));
  decide(m, "execwhacker", schema::Action::KILLED, std::string("bad\xff\n\"\\utf8", 12));
  auto text = m.serialize();
  size_t series = 0;
  for (size_t pos = 0; (pos = text.find("cryptnono_execwhacker_processes_killed_total{", pos)) != std::string::npos; ++pos) {
    ++series;
  }
  EXPECT_LE(series, kMaxSeries + 1);
  EXPECT_EQ(metric_value(text, "cryptnono_execwhacker_processes_killed_total", {{"source", "_overflow"}}).value_or(0),
            601.0 - (kMaxSeries - 2));  // 2 series pre-exist: execwhacker.bpf and .scan

  EXPECT_EQ(label_value("plain"), "plain");
  EXPECT_EQ(label_value(std::string("a\xff" "b", 3)), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(label_value("line\nbreak"), "line?break");
  EXPECT_EQ(label_value("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(label_value("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_LE(label_value(std::string(10000, 'x')).size(), 200u);
  EXPECT_EQ(metric_token("exec-whacker.v2"), "exec_whacker_v2");
  EXPECT_EQ(metric_token(""), "unknown");
  EXPECT_EQ(stage_of("enforcer/execwhacker/00ff", "enforcer"), "execwhacker");
  EXPECT_EQ(stage_of("garbage", "collector"), "collector");
}

}  // namespace
}  // namespace cryptnono::exporter
