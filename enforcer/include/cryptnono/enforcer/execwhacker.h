// The execwhacker detector: cryptnono's banned command strings on exec events (topic
// "exec"), decided by the Decider with the Matcher that serves now. The matcher is
// replaced on the event thread, between events, when the config changes.
#pragma once

#include <memory>
#include <string>

#include "cryptnono/enforcer/decider.h"
#include "cryptnono/enforcer/detector.h"
#include "cryptnono/enforcer/matcher.h"

namespace cryptnono::enforcer {

inline constexpr const char* kExecwhacker = "execwhacker";

class ExecwhackerDetector : public Detector {
 public:
  // `killer` must outlive the detector.
  ExecwhackerDetector(Killer& killer, bool dry_run, std::unique_ptr<Matcher> matcher)
      : decider_(killer, dry_run), matcher_(std::move(matcher)) {}

  std::string_view name() const override { return kExecwhacker; }
  std::string_view topic() const override;
  std::string describe() const override;
  bool read(schema::Envelope::Body::Reader body) override;
  schema::Action decide(uint64_t now_boot_ns) override;
  void fill(schema::Decision::Builder decision) override;
  std::string last_judged() const override;

  // Event thread only. The old matcher is freed here.
  void set_matcher(std::unique_ptr<Matcher> matcher) { matcher_ = std::move(matcher); }
  const Matcher& matcher() const { return *matcher_; }
  const WakePlan* wake_plan() const override { return &matcher_->wake_plan(); }

 private:
  Decider decider_;
  std::unique_ptr<Matcher> matcher_;
  ExecView view_;
  const Verdict* verdict_ = nullptr;
};

}  // namespace cryptnono::enforcer
