// The flowkiller detector (cryptnono's tcpflowkiller): judges every outgoing TCP connect
// the collector reports (ConnectEvent, topic "connect") with two rules, in this order:
//
//   banned  the destination address is in the banned list (addresses and CIDR networks,
//           IPv4 and IPv6, from files; see address.h): the process is killed at once.
//           `matched` names the entry ("127.77.0.0/16").
//   fanout  the process reached more than `unique_destinations_threshold` distinct
//           public destinations (address, port) within the last
//           `lookback_seconds`: it is scanning, and is killed. Non-public destinations
//           (loopback, private, link-local, CGNAT, multicast, ...; is_public() in
//           address.h) are not counted unless `count_all_destinations` is set.
//
// Every connect gets a decision (noMatch too, so connects checked can be counted); only
// the decisions that act read /proc for the command line, so the common path stays
// cheap. The banned list is replaced between events when its files change.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>

#include "cryptnono/enforcer/address.h"
#include "cryptnono/enforcer/detector.h"
#include "cryptnono/enforcer/fanout.h"

namespace cryptnono::enforcer {

inline constexpr const char* kFlowkiller = "flowkiller";
inline constexpr const char* kFlowkillerSource = "flowkiller.bpf";
inline constexpr const char* kRuleBanned = "banned";
inline constexpr const char* kRuleFanout = "fanout";

struct FlowkillerOptions {
  // cryptnono's FlowKiller.unique_destinations_threshold and lookback_duration_seconds
  // (same defaults): more than this many distinct destinations within the lookback kills.
  uint32_t unique_destinations_threshold = 15;
  double lookback_seconds = 30;
  bool count_all_destinations = false;  // count loopback/private too (tests)
  size_t max_tracked_processes = 4096;
  size_t max_destinations_per_process = 256;
  size_t max_recently_killed = 1024;  // identities whose later connects are not re-judged
  bool dry_run = false;
};

// "" when valid, else what is wrong (e.g. the per-process bound cannot reach the threshold).
std::string validate(const FlowkillerOptions& options);

class FlowkillerDetector : public Detector {
 public:
  // `killer` must outlive the detector; `banned` may be empty (nullptr: no list).
  FlowkillerDetector(Killer& killer, const FlowkillerOptions& options, std::shared_ptr<const BannedSet> banned);

  std::string_view name() const override { return kFlowkiller; }
  std::string_view topic() const override;
  std::string describe() const override;
  bool read(schema::Envelope::Body::Reader body) override;
  schema::Action decide(uint64_t now_boot_ns) override;
  void fill(schema::Decision::Builder decision) override;
  void add_counters(std::vector<std::pair<std::string, uint64_t>>& out) const override;

  // Event thread only (through Enforcer::install_update).
  void set_banned(std::shared_ptr<const BannedSet> banned);

  // The last decision, for tests.
  const std::string& rule() const { return rule_; }
  const std::string& matched() const { return matched_; }
  const std::string& reason() const { return reason_; }
  uint32_t unique_destinations() const { return unique_; }
  const std::string& cmdline() const { return cmdline_; }
  const FanoutTracker& fanout() const { return fanout_; }

 private:
  void act(const ProcessKey& key, uint64_t now_boot_ns);
  bool recently_killed(const ProcessKey& key) const { return killed_set_.count(key) > 0; }
  void remember_killed(const ProcessKey& key);

  Killer& killer_;
  FlowkillerOptions options_;
  std::shared_ptr<const BannedSet> banned_;
  FanoutTracker fanout_;
  std::unordered_set<ProcessKey, ProcessKeyHash> killed_set_;
  std::deque<ProcessKey> killed_order_;

  // The event read last and its decision.
  schema::ConnectEvent::Reader event_;
  Identity id_;
  std::optional<Address> destination_;
  size_t destination_bytes_ = 0;
  uint16_t port_ = 0;
  KillResult result_;
  bool acted_ = false;
  std::string rule_, matched_, reason_;
  uint32_t unique_ = 0;
  uint64_t decided_boot_ns_ = 0;
  std::string argv_;
  std::string cmdline_;
};

}  // namespace cryptnono::enforcer
