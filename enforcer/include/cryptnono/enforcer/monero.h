// The monero detector: RandomX (Monero's proof of work) switches the FPU rounding mode
// all the time, ordinary programs almost never leave the default. The collector's probe
// counts context switches whose saved MXCSR holds a non-default rounding mode and
// publishes one FpuEvent (topic "fpu") per process when the count reaches its
// threshold; the policy lives there. This detector kills the process the event names
// (tgid + start time, through the pidfd kill path) and publishes a decision with rule
// "rounding-mode", the event, and the process's command line read from /proc while it
// was verified to be that process.
#pragma once

#include <string>

#include "cryptnono/enforcer/detector.h"

namespace cryptnono::enforcer {

inline constexpr const char* kMonero = "monero";
inline constexpr const char* kMoneroSource = "monero.bpf";
inline constexpr const char* kMoneroRule = "rounding-mode";

class MoneroDetector : public Detector {
 public:
  // `killer` must outlive the detector.
  MoneroDetector(Killer& killer, bool dry_run) : killer_(killer), dry_run_(dry_run) {}

  std::string_view name() const override { return kMonero; }
  std::string_view topic() const override;
  std::string describe() const override;
  bool read(schema::Envelope::Body::Reader body) override;
  schema::Action decide(uint64_t now_boot_ns) override;
  void fill(schema::Decision::Builder decision) override;

  // The shlex-joined command line of the last decision (empty when /proc was not read).
  const std::string& cmdline() const { return cmdline_; }

 private:
  Killer& killer_;
  bool dry_run_;
  schema::FpuEvent::Reader event_;
  Identity id_;
  uint32_t count_ = 0;
  uint32_t threshold_ = 0;
  uint32_t mxcsr_ = 0;
  KillResult result_;
  uint64_t decided_boot_ns_ = 0;
  std::string argv_;
  std::string cmdline_;
};

}  // namespace cryptnono::enforcer
