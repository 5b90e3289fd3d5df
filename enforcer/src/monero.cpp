#include "cryptnono/enforcer/monero.h"

#include <cstdio>

#include "cryptnono/clock.h"
#include "cryptnono/enforcer/text.h"
#include "cryptnono/transport.h"

namespace cryptnono::enforcer {

std::string_view MoneroDetector::topic() const { return topic::kFpu; }

std::string MoneroDetector::describe() const {
  return std::string("kills the processes the FPU probe reports (rule ") + kMoneroRule + ")";
}

bool MoneroDetector::read(schema::Envelope::Body::Reader body) {
  if (!body.isFpu()) return false;
  event_ = body.getFpu();
  id_ = Identity::of(event_);
  count_ = event_.getCount();
  threshold_ = event_.getThreshold();
  mxcsr_ = event_.getMxcsr();
  // Every field fill() copies has been read once: a malformed message throws here.
  (void)event_.getFirstBootNs();
  (void)event_.getEventBootNs();
  return true;
}

schema::Action MoneroDetector::decide(uint64_t /*now_boot_ns*/) {
  // The probe already judged (threshold reached): nothing to match here.
  decided_boot_ns_ = boot_ns();
  argv_.clear();
  cmdline_.clear();
  result_ = kill_verified(killer_, id_.process(), id_.start_boot_ns, dry_run_, &argv_);
  if (result_.have_argv) join_proc_cmdline(argv_, cmdline_);
  return result_.action;
}

void MoneroDetector::fill(schema::Decision::Builder d) {
  d.setDetector(kMonero);
  d.setAction(result_.action);
  d.setSource(kMoneroSource);
  d.setRule(kMoneroRule);
  std::string reason = result_.reason;
  if (reason.empty()) {
    char mx[16];
    std::snprintf(mx, sizeof mx, "0x%04x", mxcsr_);
    reason = "non-default FPU rounding mode at " + std::to_string(count_) + " context switches (threshold " +
             std::to_string(threshold_) + ", MXCSR " + mx + ")";
  }
  d.setReason(reason);
  if (result_.have_argv)
    d.setCmdline(kj::arrayPtr(reinterpret_cast<const kj::byte*>(cmdline_.data()), cmdline_.size()));
  d.setCmdlineFromProc(result_.have_argv);
  d.setFpu(event_);
  write_identity(id_, result_.have_argv ? &argv_ : nullptr, d.initEvent());
  d.setDecidedBootNs(decided_boot_ns_);
  d.setKilledBootNs(result_.killed_boot_ns);
  d.setExitedBootNs(result_.exited_boot_ns);
}

}  // namespace cryptnono::enforcer
