// The decision for one exec event: build the command line as cryptnono does, match it,
// and kill through the Killer (or, in dry-run, only verify). No sockets here, so the whole
// policy can be unit-tested with a fake Killer. Used by one thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cryptnono.capnp.h"
#include "cryptnono/enforcer/killer.h"
#include "cryptnono/enforcer/matcher.h"

namespace cryptnono::enforcer {

// The fields of one ExecEvent, read once from the wire message. Reading a Cap'n Proto
// message validates it lazily (and counts against its traversal limit on every access),
// so an event is read exactly once, before anything is decided: a malformed message then
// fails before a kill, never between a kill and its decision.
struct ExecView {
  schema::Source source = schema::Source::BPF;
  uint32_t pid = 0;
  uint32_t tgid = 0;
  uint32_t ppid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t start_boot_ns = 0;
  uint64_t exec_boot_ns = 0;
  capnp::Text::Reader comm;
  std::string_view filename;
  std::string_view argv;
  bool argv_truncated = false;
  uint32_t argv_full_length = 0;
  uint64_t cgroup_id = 0;
  capnp::Text::Reader cgroup_name;
  uint32_t mnt_ns = 0;
  uint32_t pid_ns = 0;
  uint32_t cpu = 0;
  uint64_t pidfs_ino = 0;
  uint64_t exe_ino = 0;
  uint32_t exe_dev = 0;
};

// Reads every field; throws kj::Exception on a malformed message.
ExecView view_of(schema::ExecEvent::Reader event);
// Writes the event into a Decision's event field; argv is left out when !with_argv.
void copy_event(const ExecView& view, schema::ExecEvent::Builder out, bool with_argv);

struct Verdict {
  schema::Action action = schema::Action::NO_MATCH;
  std::string_view matched;     // the casefolded banned string (points into the Matcher)
  std::string_view allowed_by;  // the allowed pattern (points into the Matcher)
  std::string reason;
  bool cmdline_from_proc = false;
  uint64_t decided_boot_ns = 0;  // matching finished
  uint64_t killed_boot_ns = 0;   // SIGKILL sent (0 if not)
  uint64_t exited_boot_ns = 0;   // the killed process seen gone (0: not within the exit wait)
};

class Decider {
 public:
  Decider(Killer& killer, bool dry_run) : killer_(killer), dry_run_(dry_run) {}

  // Decides on `event` with `matcher`. The returned verdict and cmdline() stay valid until
  // the next call (and, for matched/allowed_by, while `matcher` lives).
  const Verdict& decide(const ExecView& event, Matcher& matcher);

  // The casefolded, shlex-joined command line that was judged.
  std::string_view cmdline() const { return folded_; }
  bool dry_run() const { return dry_run_; }

 private:
  void build_cmdline(const ExecView& event, std::string_view argv);
  void act_on(const KillOutcome& outcome);

  Killer& killer_;
  bool dry_run_;
  Verdict verdict_;
  // Reused across events so that the common path does not allocate. joined_ is only
  // the scratch space of join_fold_exec_cmdline (text.h).
  std::string joined_;
  std::string folded_;
  std::string proc_argv_;
};

}  // namespace cryptnono::enforcer
