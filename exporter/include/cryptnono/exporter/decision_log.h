// The exporter's stdout line for one decision: cryptnono's log fields, in cryptnono's
// order, then ours. Pure; thread-safe.
//
//   pid, cmdline, matched, source, container_type, labels, image, action, event, level,
//   timestamp                                    (cryptnono's fields, see shared/seed)
//   node, detector, ppid, uid, container_id, pod_uid, allowedby, reason, cmdline_from_proc,
//   exec_to_decision_us, exec_to_kill_us         (ours; latencies only when measurable)
//   rule                                         (monero, flowkiller: the rule that fired)
//   destination, unique_destinations             (flowkiller: "1.2.3.4:443" / "[2001:db8::1]:443";
//                                                 unique_destinations for rule "fanout")
//   fpu_switches, mxcsr                          (monero: the probe's count, MXCSR as "0x7f80")
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "cryptnono.capnp.h"
#include "cryptnono/exporter/container.h"
#include "cryptnono/json_view.h"

namespace cryptnono::exporter {

// Whether a decision is written to stdout: every action but noMatch, and noMatch too
// when log_no_match (it is one line per exec on the node: for debugging only).
bool should_log(schema::Action action, bool log_no_match);

// cryptnono's `event` text: "Killed process", "Spared process", "Missed kill",
// "Would kill process (dry run)", "Error", "No match".
std::string_view event_text(schema::Action action);

// Microseconds from `from_ns` to `to_ns` (CLOCK_BOOTTIME), nullopt when either is 0 (not
// measured: scans have no exec time; only kills have a kill time).
std::optional<double> latency_us(uint64_t from_ns, uint64_t to_ns);

// "1.2.3.4:443" for 4 address bytes, "[2001:db8::1]:443" for 16, "?:443" otherwise.
std::string endpoint_text(capnp::Data::Reader address, uint16_t port);

Json decision_line(schema::Envelope::Reader envelope, schema::Decision::Reader decision,
                   const ContainerRef& container, const Enrichment& enrichment);

}  // namespace cryptnono::exporter
