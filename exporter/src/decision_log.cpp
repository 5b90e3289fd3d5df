#include "cryptnono/exporter/decision_log.h"

#include <arpa/inet.h>

#include <cstdio>

#include "cryptnono/clock.h"

namespace cryptnono::exporter {

std::string endpoint_text(capnp::Data::Reader address, uint16_t port) {
  char host[INET6_ADDRSTRLEN] = {};
  if (address.size() == 4) {
    inet_ntop(AF_INET, address.begin(), host, sizeof host);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (address.size() == 16) {
    inet_ntop(AF_INET6, address.begin(), host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return "?:" + std::to_string(port);  // a malformed event: say so rather than guess
}

bool should_log(schema::Action action, bool log_no_match) {
  return action != schema::Action::NO_MATCH || log_no_match;
}

std::string_view event_text(schema::Action action) {
  switch (action) {
    case schema::Action::NO_MATCH:
      return "No match";
    case schema::Action::KILLED:
      return "Killed process";
    case schema::Action::SPARED:
      return "Spared process";
    case schema::Action::MISSED_KILL:
      return "Missed kill";
    case schema::Action::WOULD_KILL:
      return "Would kill process (dry run)";
    case schema::Action::ERROR:
      return "Error";
  }
  return "Unknown";
}

std::optional<double> latency_us(uint64_t from_ns, uint64_t to_ns) {
  if (from_ns == 0 || to_ns == 0) return std::nullopt;
  // Signed: a negative value would be a clock bug upstream, and the log should show it.
  auto delta = static_cast<int64_t>(to_ns - from_ns);
  return static_cast<double>(delta) / 1000.0;
}

Json decision_line(schema::Envelope::Reader envelope, schema::Decision::Reader decision,
                   const ContainerRef& container, const Enrichment& enrichment) {
  auto event = decision.getEvent();
  auto action = decision.getAction();
  Json line = Json::object();
  line["pid"] = event.getPid();
  line["cmdline"] = bytes_string(decision.getCmdline());
  line["matched"] = text_string(decision.getMatched());
  line["source"] = text_string(decision.getSource());
  line["container_type"] = container.container_type;
  line["labels"] = Json::object();
  for (const auto& [key, value] : enrichment.labels) line["labels"][key] = value;
  line["image"] = enrichment.image;
  line["action"] = std::string(action_name(action));
  line["event"] = std::string(event_text(action));
  line["level"] = action == schema::Action::ERROR ? "error" : "info";
  line["timestamp"] = format_timestamp(envelope.getSentWallNs());

  line["node"] = text_string(envelope.getNode());
  line["detector"] = text_string(decision.getDetector());
  line["ppid"] = event.getPpid();
  line["uid"] = event.getUid();
  line["container_id"] = container.container_id;
  line["pod_uid"] = container.pod_uid;
  line["allowedby"] = text_string(decision.getAllowedBy());
  line["reason"] = text_string(decision.getReason());
  line["cmdline_from_proc"] = decision.getCmdlineFromProc();
  // Which configuration judged it (the enforcer logs each generation as it takes over).
  if (decision.getConfigGeneration() != 0) line["config_generation"] = decision.getConfigGeneration();
  if (auto us = latency_us(event.getExecBootNs(), decision.getDecidedBootNs())) line["exec_to_decision_us"] = *us;
  if (auto us = latency_us(event.getExecBootNs(), decision.getKilledBootNs())) line["exec_to_kill_us"] = *us;
  // The enforcer saw the killed process gone (its exit wait): the kill took effect.
  if (auto us = latency_us(event.getExecBootNs(), decision.getExitedBootNs())) line["exec_to_exit_us"] = *us;
  if (auto us = latency_us(decision.getKilledBootNs(), decision.getExitedBootNs())) line["kill_to_exit_us"] = *us;
  // The detectors that judge something else than an exec say what they judged.
  if (decision.hasRule()) line["rule"] = text_string(decision.getRule());
  if (decision.hasConnect()) {
    auto connect = decision.getConnect();
    line["destination"] = endpoint_text(connect.getDestination(), connect.getDestinationPort());
    if (text_string(decision.getRule()) == "fanout") line["unique_destinations"] = decision.getUniqueDestinations();
  }
  if (decision.hasFpu()) {
    auto fpu = decision.getFpu();
    char mxcsr[16];
    std::snprintf(mxcsr, sizeof mxcsr, "0x%04x", fpu.getMxcsr());
    line["fpu_switches"] = fpu.getCount();
    line["mxcsr"] = mxcsr;
  }
  return line;
}

}  // namespace cryptnono::exporter
