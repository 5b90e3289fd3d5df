#include "cryptnono/enforcer/execwhacker.h"

#include <cstdio>

#include "cryptnono/transport.h"

namespace cryptnono::enforcer {

namespace {

std::string_view source_label(schema::Source s) {
  return s == schema::Source::BPF ? "execwhacker.bpf" : "execwhacker.scan";
}

kj::ArrayPtr<const kj::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const kj::byte*>(s.data()), s.size()};
}

// capnp Text setters need NUL-terminated text; the views below always point at the whole
// of a std::string (or a string literal).
capnp::Text::Reader as_text(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace

std::string_view ExecwhackerDetector::topic() const { return topic::kExec; }

std::string ExecwhackerDetector::describe() const {
  return std::to_string(matcher_->banned_count()) + " banned strings, " + std::to_string(matcher_->allowed_count()) +
         " allowed patterns";
}

bool ExecwhackerDetector::read(schema::Envelope::Body::Reader body) {
  if (!body.isExec()) return false;
  view_ = view_of(body.getExec());
  return true;
}

schema::Action ExecwhackerDetector::decide(uint64_t /*now_boot_ns*/) {
  verdict_ = &decider_.decide(view_, *matcher_);
  return verdict_->action;
}

std::string ExecwhackerDetector::last_judged() const {
  std::string out = "pid " + std::to_string(view_.tgid != 0 ? view_.tgid : view_.pid) + ", " +
                    std::to_string(matcher_->banned_count()) + " banned strings, cmdline (casefolded) ";
  // Bytes as they are, but a line: control characters escaped.
  for (unsigned char c : decider_.cmdline().substr(0, 4096)) {
    if (c < 0x20 || c == 0x7f) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

void ExecwhackerDetector::fill(schema::Decision::Builder d) {
  const Verdict& v = *verdict_;
  d.setDetector(kExecwhacker);
  d.setAction(v.action);
  d.setSource(as_text(source_label(view_.source)));
  bool matched = v.action != schema::Action::NO_MATCH;
  if (!v.matched.empty()) d.setMatched(as_text(v.matched));
  if (!v.allowed_by.empty()) d.setAllowedBy(as_text(v.allowed_by));
  if (!v.reason.empty()) d.setReason(v.reason);
  // noMatch decisions leave out argv and the command line to keep the volume low.
  if (matched) d.setCmdline(as_bytes(decider_.cmdline()));
  d.setCmdlineFromProc(v.cmdline_from_proc);
  copy_event(view_, d.initEvent(), matched);
  d.setDecidedBootNs(v.decided_boot_ns);
  d.setKilledBootNs(v.killed_boot_ns);
  d.setExitedBootNs(v.exited_boot_ns);
}

}  // namespace cryptnono::enforcer
