// What the enforcer loop asks of a detector (execwhacker, monero, flowkiller). The loop
// owns the sockets, the sequence tracking, the stats and the config hand-over; a detector
// reads one event, decides (and kills through the Killer), and writes the decision.
//
// The three steps are separate so that a malformed message fails in read(), before any
// kill, never between a kill and its decision (Cap'n Proto validates lazily, on access).
// Called from the event thread only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cryptnono.capnp.h"
#include "cryptnono/enforcer/killer.h"

namespace cryptnono::enforcer {

struct WakePlan;  // wake_filter.h

class Detector {
 public:
  virtual ~Detector() = default;

  virtual std::string_view name() const = 0;   // the decision's `detector`, the publisher's name
  virtual std::string_view topic() const = 0;  // the collector topic it judges
  virtual std::string describe() const = 0;    // one line for the start-up log

  // Reads the event out of `body` completely. False when the body is not this detector's
  // kind; throws kj::Exception when the message is malformed.
  virtual bool read(schema::Envelope::Body::Reader body) = 0;
  // Decides on the event read last (and kills). `now_boot_ns` is when it was received.
  virtual schema::Action decide(uint64_t now_boot_ns) = 0;
  // Writes the decision for the event read last; the loop adds receivedBootNs and
  // configGeneration.
  virtual void fill(schema::Decision::Builder decision) = 0;

  // Counters of its own, appended to the stats message after the loop's.
  virtual void add_counters(std::vector<std::pair<std::string, uint64_t>>& /*out*/) const {}
  // What the last decide() looked at, for the trace log (--log-level trace): one line.
  virtual std::string last_judged() const { return {}; }
  // The probe's wake filter for what this detector kills on (wake_filter.h); null: it
  // cannot say, every exec must wake it.
  virtual const WakePlan* wake_plan() const { return nullptr; }
};

// The outcome of the kill path shared by the detectors: open the process by pidfd,
// verify it is the one the event named (start time), optionally read its full command
// line while it is known to be that process, then SIGKILL it (or, in dry-run, only
// verify).
struct KillResult {
  schema::Action action = schema::Action::KILLED;
  std::string reason;          // why it was not killed
  uint64_t killed_boot_ns = 0;  // 0 when no signal was sent
  uint64_t exited_boot_ns = 0;  // the killed process seen gone (0: not within the exit wait)
  bool have_argv = false;       // argv_out holds /proc/<pid>/cmdline of the verified process
};

// `argv_out`: nullptr to skip reading the command line. A failure to read it does not
// stop the kill.
KillResult kill_verified(Killer& killer, pid_t pid, uint64_t start_boot_ns, bool dry_run, std::string* argv_out);

// The process an FpuEvent or ConnectEvent names, as the detectors that do not judge execs
// write it into Decision.event (execBootNs 0, source bpf). The readers point into the
// received message, valid until the next receive.
struct Identity {
  uint32_t pid = 0;  // the thread that was seen
  uint32_t tgid = 0;
  uint32_t ppid = 0;
  uint32_t uid = 0;
  uint64_t start_boot_ns = 0;  // of the thread-group leader
  capnp::Text::Reader comm;
  uint64_t cgroup_id = 0;
  capnp::Text::Reader cgroup_name;
  uint32_t cpu = 0;

  // The process to open: the thread group (a kill ends every thread).
  pid_t process() const { return static_cast<pid_t>(tgid != 0 ? tgid : pid); }

  // From any event reader that names these fields as FpuEvent and ConnectEvent do.
  template <typename Reader>
  static Identity of(const Reader& event) {
    Identity id;
    id.pid = event.getPid();
    id.tgid = event.getTgid();
    id.ppid = event.getPpid();
    id.uid = event.getUid();
    id.start_boot_ns = event.getStartBootNs();
    id.comm = event.getComm();
    id.cgroup_id = event.getCgroupId();
    id.cgroup_name = event.getCgroupName();
    id.cpu = event.getCpu();
    return id;
  }
};

// Writes the identity (pid = the process, i.e. tgid) and, when `argv` is non-null, the
// argument area read from /proc.
void write_identity(const Identity& id, const std::string* argv, schema::ExecEvent::Builder out);

}  // namespace cryptnono::enforcer
