// pipeline_tap: a subscriber for the benchmarks. Connects to the stages' endpoints, and
// until SIGTERM/SIGINT keeps (a) the timings of every decision that is not noMatch and
// (b) the latest stats counters of every publisher, and counts sequence gaps per
// publisher and topic (as the exporter's messages_lost does). Then prints JSON lines:
//   {"what": "decision", "action", "pid", "exec_boot_ns", "received_boot_ns",
//    "decided_boot_ns", "killed_boot_ns", "published_boot_ns" (the decision's envelope),
//    "event_sent_boot_ns" (the collector's publish time of the judged event)}
//   {"what": "stats", "kind", "name", "publisher", "counters": {...}}
//   {"what": "exec", "pid", "exec_boot_ns", "sent_boot_ns"} for every exec event, when
//    "exec" is one of the topics (the collector's publish time: one hop of the breakdown;
//    meant for idle runs, where the extra subscriber costs nothing that matters)
//   {"what": "tap-summary", "decisions": {action: n}, "lost": {"kind/topic": n}}
//
//   pipeline_tap --connect EP [--connect EP]... [--topic decision] [--topic stats]
#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>

#include "cryptnono/clock.h"
#include "cryptnono/transport.h"

namespace {

struct DecisionRow {
  int action;
  uint32_t pid;
  uint64_t exec_boot_ns, received_boot_ns, decided_boot_ns, killed_boot_ns, published_boot_ns, event_sent_boot_ns;
};

const char* action_name(cryptnono::schema::Action a) {
  using A = cryptnono::schema::Action;
  switch (a) {
    case A::NO_MATCH: return "noMatch";
    case A::KILLED: return "killed";
    case A::SPARED: return "spared";
    case A::MISSED_KILL: return "missedKill";
    case A::WOULD_KILL: return "wouldKill";
    case A::ERROR: return "error";
  }
  return "?";
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out.push_back(c);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> endpoints;
  std::vector<std::string> topics;
  CLI::App app{"Records decision timings, stats and losses from the pipeline's publishers"};
  app.add_option("--connect", endpoints, "Endpoint to subscribe to")->required();
  app.add_option("--topic", topics, "Topics (default: decision, stats)");
  CLI11_PARSE(app, argc, argv);
  if (topics.empty()) topics = {"decision", "stats"};

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);

  zmq::context_t ctx(1);
  auto sub = cryptnono::Subscriber::connect(ctx, endpoints, topics);
  if (!sub) {
    std::fprintf(stderr, "pipeline_tap: %s\n", sub.error().message.c_str());
    return 1;
  }
  std::fprintf(stderr, "ready\n");
  cryptnono::SequenceTracker tracker;
  std::map<std::string, uint64_t> lost;  // "kind/topic"
  std::map<std::string, uint64_t> actions;
  std::vector<DecisionRow> rows;
  rows.reserve(1 << 20);
  struct ExecRow {
    uint32_t pid;
    uint64_t exec_boot_ns, sent_boot_ns;
  };
  std::vector<ExecRow> execs;
  execs.reserve(1 << 20);
  // publisher id -> (kind, name, counters)
  struct StatsRow {
    std::string kind, name;
    std::vector<std::pair<std::string, uint64_t>> counters;
  };
  std::map<std::string, StatsRow> stats;
  cryptnono::Received received;

  bool stop = false;
  while (!stop) {
    auto w = (*sub)->wait(sfd, -1);
    if (w == cryptnono::Subscriber::Wait::kFd) stop = true;
    while ((*sub)->try_receive(received)) {
      auto env = received.envelope();
      if (!env) continue;
      try {
        auto e = *env;
        std::string pub(e.getPublisherId().cStr());
        std::string topic(received.topic());
        auto seen = tracker.observe(pub, topic, e.getSequence());
        if (seen.lost) lost[std::string(e.getPublisherKind().cStr()) + "/" + topic] += seen.lost;
        auto body = e.getBody();
        if (body.isDecision()) {
          auto d = body.getDecision();
          ++actions[action_name(d.getAction())];
          if (d.getAction() != cryptnono::schema::Action::NO_MATCH && rows.size() < rows.capacity()) {
            auto ev = d.getEvent();
            rows.push_back({static_cast<int>(d.getAction()), ev.getPid(), ev.getExecBootNs(), d.getReceivedBootNs(),
                            d.getDecidedBootNs(), d.getKilledBootNs(), e.getSentBootNs(), d.getEventSentBootNs()});
          }
        } else if (body.isExec()) {
          auto ev = body.getExec();
          if (execs.size() < execs.capacity()) execs.push_back({ev.getPid(), ev.getExecBootNs(), e.getSentBootNs()});
        } else if (body.isStats()) {
          auto& row = stats[pub];
          row.kind = e.getPublisherKind().cStr();
          row.name = pub;
          row.counters.clear();
          for (auto c : body.getStats().getCounters()) row.counters.emplace_back(c.getName().cStr(), c.getValue());
        }
      } catch (const kj::Exception&) {
      }
    }
  }
  for (const auto& r : rows)
    std::printf(
        "{\"what\": \"decision\", \"action\": \"%s\", \"pid\": %u, \"exec_boot_ns\": %llu, \"received_boot_ns\": "
        "%llu, \"decided_boot_ns\": %llu, \"killed_boot_ns\": %llu, \"published_boot_ns\": %llu, "
        "\"event_sent_boot_ns\": %llu}\n",
        action_name(static_cast<cryptnono::schema::Action>(r.action)), r.pid,
        static_cast<unsigned long long>(r.exec_boot_ns), static_cast<unsigned long long>(r.received_boot_ns),
        static_cast<unsigned long long>(r.decided_boot_ns), static_cast<unsigned long long>(r.killed_boot_ns),
        static_cast<unsigned long long>(r.published_boot_ns), static_cast<unsigned long long>(r.event_sent_boot_ns));
  for (const auto& x : execs)
    std::printf("{\"what\": \"exec\", \"pid\": %u, \"exec_boot_ns\": %llu, \"sent_boot_ns\": %llu}\n", x.pid,
                static_cast<unsigned long long>(x.exec_boot_ns), static_cast<unsigned long long>(x.sent_boot_ns));
  for (const auto& [id, s] : stats) {
    std::string c;
    for (const auto& [k, v] : s.counters)
      c += (c.empty() ? "" : ", ") + std::string("\"") + json_escape(k) + "\": " + std::to_string(v);
    std::printf("{\"what\": \"stats\", \"kind\": \"%s\", \"publisher\": \"%s\", \"counters\": {%s}}\n",
                json_escape(s.kind).c_str(), json_escape(id).c_str(), c.c_str());
  }
  std::string a, l;
  for (const auto& [k, v] : actions) a += (a.empty() ? "" : ", ") + ("\"" + k + "\": ") + std::to_string(v);
  for (const auto& [k, v] : lost) l += (l.empty() ? "" : ", ") + ("\"" + json_escape(k) + "\": ") + std::to_string(v);
  std::printf("{\"what\": \"tap-summary\", \"decisions\": {%s}, \"lost\": {%s}}\n", a.c_str(), l.c_str());
  return 0;
}
