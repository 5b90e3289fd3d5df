#include "cryptnono/enforcer/flowkiller.h"

#include <cmath>
#include <cstdio>

#include "cryptnono/clock.h"
#include "cryptnono/enforcer/text.h"
#include "cryptnono/transport.h"

namespace cryptnono::enforcer {

namespace {

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

}  // namespace

std::string validate(const FlowkillerOptions& o) {
  if (o.unique_destinations_threshold < 1) return "the unique destinations threshold must be at least 1";
  if (!(o.lookback_seconds > 0) || o.lookback_seconds > 86400) return "the lookback must be within (0, 86400] seconds";
  if (o.max_tracked_processes < 1) return "at least one process must be tracked";
  if (o.max_destinations_per_process <= o.unique_destinations_threshold)
    return "the destinations remembered per process (" + std::to_string(o.max_destinations_per_process) +
           ") must exceed the unique destinations threshold (" + std::to_string(o.unique_destinations_threshold) + ")";
  return "";
}

FlowkillerDetector::FlowkillerDetector(Killer& killer, const FlowkillerOptions& options,
                                       std::shared_ptr<const BannedSet> banned)
    : killer_(killer),
      options_(options),
      banned_(banned ? std::move(banned) : std::make_shared<const BannedSet>()),
      fanout_(FanoutLimits{static_cast<uint64_t>(std::llround(options.lookback_seconds * 1e9)),
                           options.max_tracked_processes, options.max_destinations_per_process}) {}

std::string_view FlowkillerDetector::topic() const { return topic::kConnect; }

std::string FlowkillerDetector::describe() const {
  return std::to_string(banned_->size()) + " banned destinations; fan-out: more than " +
         std::to_string(options_.unique_destinations_threshold) + " unique " +
         (options_.count_all_destinations ? "" : "public ") + "destinations in " +
         seconds_text(options_.lookback_seconds) + " s";
}

void FlowkillerDetector::set_banned(std::shared_ptr<const BannedSet> banned) {
  banned_ = banned ? std::move(banned) : std::make_shared<const BannedSet>();
}

bool FlowkillerDetector::read(schema::Envelope::Body::Reader body) {
  if (!body.isConnect()) return false;
  event_ = body.getConnect();
  id_ = Identity::of(event_);
  auto dest = event_.getDestination();
  destination_bytes_ = dest.size();
  destination_ = address_from_bytes(dest.begin(), dest.size());
  port_ = event_.getDestinationPort();
  // Every field fill() copies is read once here: a malformed message throws now.
  (void)event_.getSourceAddress();
  (void)event_.getEventBootNs();
  (void)event_.getFamily();
  return true;
}

void FlowkillerDetector::remember_killed(const ProcessKey& key) {
  if (!killed_set_.insert(key).second) return;
  killed_order_.push_back(key);
  while (killed_order_.size() > options_.max_recently_killed) {
    killed_set_.erase(killed_order_.front());
    killed_order_.pop_front();
  }
}

void FlowkillerDetector::act(const ProcessKey& key, uint64_t /*now_boot_ns*/) {
  acted_ = true;
  result_ = kill_verified(killer_, id_.process(), id_.start_boot_ns, options_.dry_run, &argv_);
  if (result_.have_argv) join_proc_cmdline(argv_, cmdline_);
  // Judged: start afresh (a spared or dry-run process is judged again after another
  // threshold's worth of destinations, not on every later connect).
  fanout_.forget(key);
  if (result_.action == schema::Action::KILLED) remember_killed(key);
}

schema::Action FlowkillerDetector::decide(uint64_t now_boot_ns) {
  result_ = KillResult{};
  result_.action = schema::Action::NO_MATCH;
  acted_ = false;
  rule_.clear();
  matched_.clear();
  reason_.clear();
  unique_ = 0;
  argv_.clear();
  cmdline_.clear();

  ProcessKey key{static_cast<uint32_t>(id_.process()), id_.start_boot_ns};
  if (!destination_) {
    decided_boot_ns_ = boot_ns();
    result_.action = schema::Action::ERROR;
    reason_ = "destination is " + std::to_string(destination_bytes_) + " bytes (4 or 16 expected)";
    return result_.action;
  }
  if (recently_killed(key)) {
    // A connect queued before the kill: judged already, not a new kill nor a miss.
    decided_boot_ns_ = boot_ns();
    reason_ = "process already killed by the flowkiller";
    return result_.action;
  }

  if (const BannedEntry* hit = banned_->find(*destination_)) {
    decided_boot_ns_ = boot_ns();
    rule_ = kRuleBanned;
    matched_ = hit->network.text();
    reason_ = "destination " + format_address(*destination_) + " is banned (" + hit->file + ":" +
              std::to_string(hit->line) + ")";
    act(key, now_boot_ns);
  } else if (options_.count_all_destinations || is_public(*destination_)) {
    size_t n = fanout_.record(key, Destination{unmap_v4(*destination_), port_}, now_boot_ns);
    unique_ = static_cast<uint32_t>(n);
    decided_boot_ns_ = boot_ns();
    if (n > options_.unique_destinations_threshold) {
      rule_ = kRuleFanout;
      reason_ = std::to_string(n) + " unique destinations within " + seconds_text(options_.lookback_seconds) +
                " s (more than " + std::to_string(options_.unique_destinations_threshold) + ")";
      act(key, now_boot_ns);
    }
  } else {
    decided_boot_ns_ = boot_ns();
  }
  // Why it was not killed comes first, so a reason reads "protected: pid 1; ..." (the
  // exporter labels spared processes with the part before the first ':').
  if (acted_ && !result_.reason.empty()) reason_ = result_.reason + "; " + reason_;
  return result_.action;
}

void FlowkillerDetector::fill(schema::Decision::Builder d) {
  d.setDetector(kFlowkiller);
  d.setAction(result_.action);
  d.setSource(kFlowkillerSource);
  if (!rule_.empty()) d.setRule(rule_);
  if (!matched_.empty()) d.setMatched(matched_);
  if (!reason_.empty()) d.setReason(reason_);
  d.setUniqueDestinations(unique_);
  if (result_.have_argv)
    d.setCmdline(kj::arrayPtr(reinterpret_cast<const kj::byte*>(cmdline_.data()), cmdline_.size()));
  d.setCmdlineFromProc(result_.have_argv);
  d.setConnect(event_);
  write_identity(id_, result_.have_argv ? &argv_ : nullptr, d.initEvent());
  d.setDecidedBootNs(decided_boot_ns_);
  d.setKilledBootNs(result_.killed_boot_ns);
  d.setExitedBootNs(result_.exited_boot_ns);
}

void FlowkillerDetector::add_counters(std::vector<std::pair<std::string, uint64_t>>& out) const {
  out.emplace_back("fanout_process_evictions", fanout_.process_evictions());
  out.emplace_back("fanout_destination_evictions", fanout_.destination_evictions());
}

}  // namespace cryptnono::enforcer
