@0x8df6d170fd4dc308;
# The one contract between the stages of the pipeline. Every ZeroMQ message is two
# frames: a topic ("exec", "decision", "stats", "fpu", "connect") and one
# Envelope. Evolve only by adding fields (Cap'n Proto keeps old readers working).
#
# Times: every *BootNs field is CLOCK_BOOTTIME in nanoseconds (what the kernel's
# bpf_ktime_get_boot_ns() and task->start_boottime use), so latencies can be
# computed across processes on one node. *WallNs is CLOCK_REALTIME nanoseconds.

$import "/capnp/c++.capnp".namespace("cryptnono::schema");

struct Envelope {
  node @0 :Text;             # node name (Kubernetes node or hostname)
  publisherId @1 :Text;      # "<kind>/<detector or stage>/<random hex>", new on each start
  publisherKind @2 :Text;    # "collector", "enforcer", ...
  sequence @3 :UInt64;       # per publisher and per topic, starts at 1, +1 per message
  sentWallNs @4 :UInt64;
  sentBootNs @5 :UInt64;
  body :union {
    exec @6 :ExecEvent;
    decision @7 :Decision;
    stats @8 :Stats;
    fpu @9 :FpuEvent;
    connect @10 :ConnectEvent;
  }
}

enum Source {
  bpf @0;    # seen by the exec probe as it happened
  scan @1;   # found by a /proc sweep
}

struct ExecEvent {
  source @0 :Source;
  pid @1 :UInt32;            # thread id that exec'd (== tgid after exec)
  tgid @2 :UInt32;
  ppid @3 :UInt32;           # tgid of the real parent
  uid @4 :UInt32;
  gid @5 :UInt32;
  startBootNs @6 :UInt64;    # task start time: the identity of the process with pid
  execBootNs @7 :UInt64;     # when the exec tracepoint fired (0 for scans)
  comm @8 :Text;
  filename @9 :Data;         # path given to execve (bprm->filename); may be empty for scans
  argv @10 :Data;            # NUL-separated arguments, as in the new mm (argv[0] included)
  argvTruncated @11 :Bool;   # argv holds only the first bytes of the real arguments
  argvFullLength @12 :UInt32;# real length of the argument area in bytes
  cgroupId @13 :UInt64;      # cgroup v2 id (0 if unknown)
  cgroupName @14 :Text;      # up to the last four cgroup path components, "/"-joined
  mntNs @15 :UInt32;
  pidNs @16 :UInt32;
  cpu @17 :UInt32;
  # The exec probe also wrote this exec into the kernel ring an enforcer holds (the
  # "kernel ring", direct.h): that enforcer judged it from there and skips this copy.
  inKernelRing @18 :Bool;
  # The inode number pidfs gives the process (Linux 6.9+; 0 before, and for scans): what
  # fstat() of a pidfd for it says, never reused while the system runs. The enforcer
  # checks it on the pidfd it kills through, instead of reading /proc/<pid>/stat.
  pidfsIno @19 :UInt64;
  # The exec'd file as the kernel knows it (mm->exe_file: inode number, and its superblock's
  # s_dev in the kernel's encoding, major << 20 | minor); 0 when unknown and for scans.
  exeIno @20 :UInt64;
  exeDev @21 :UInt32;
}

enum Action {
  noMatch @0;      # checked, nothing banned found
  killed @1;
  spared @2;       # matched, but an allowed pattern or a protection rule spared it
  missedKill @3;   # matched, but the process was gone or was not the one the event named
  wouldKill @4;    # matched in --dry-run
  error @5;        # could not decide (reason says why)
}

struct Decision {
  detector @0 :Text;          # "execwhacker", "monero", "flowkiller"
  action @1 :Action;
  source @2 :Text;            # "execwhacker.bpf" / "execwhacker.scan" (cryptnono's label)
  matched @3 :Text;           # the banned string that matched (casefolded), empty if none
  allowedBy @4 :Text;         # the allowed pattern that spared it
  reason @5 :Text;            # human-readable why (spared / missed / error)
  cmdline @6 :Data;           # the command line that was judged (casefolded, shlex-joined)
  cmdlineFromProc @7 :Bool;   # event was truncated; the full cmdline was read from /proc
  event @8 :ExecEvent;        # the event judged (argv omitted when action is noMatch)
  receivedBootNs @9 :UInt64;  # when the enforcer received the event
  decidedBootNs @10 :UInt64;  # when matching finished
  killedBootNs @11 :UInt64;   # when SIGKILL was sent (0 if not sent)
  configGeneration @12 :UInt64;
  # Set by the detectors that judge something else than an exec (monero, flowkiller).
  # `event` then carries the identity of the process (pid, tgid, ppid, uid, start time,
  # comm, cgroup, argv read from /proc when it could be) with execBootNs = 0.
  fpu @13 :FpuEvent;          # monero: the probe's event that crossed the threshold
  connect @14 :ConnectEvent;  # flowkiller: the connect that was judged
  rule @15 :Text;             # flowkiller: "banned" or "fanout"; monero: "rounding-mode"
  uniqueDestinations @16 :UInt32;  # flowkiller fan-out: distinct public (address, port) in the window
  eventSentBootNs @17 :UInt64;  # when the collector published the judged event (its envelope's sentBootNs); 0 from the kernel ring
  fromKernelRing @18 :Bool;     # the enforcer read the event straight from the exec probe's kernel ring
  # When the enforcer saw the killed process gone (its pidfd readable), waiting at most
  # --exit-wait-us after the signal; 0 if not within that wait (or not killed).
  exitedBootNs @19 :UInt64;
}

# monero: a process whose saved FPU state kept a non-default MXCSR rounding mode at
# `count` context switches (RandomX switches rounding modes all the time; ordinary
# programs almost never leave the default). One event per process identity, published
# when the count reaches the probe's threshold.
struct FpuEvent {
  pid @0 :UInt32;            # thread that was switched out
  tgid @1 :UInt32;
  ppid @2 :UInt32;
  uid @3 :UInt32;
  startBootNs @4 :UInt64;    # start time of the thread group leader: the process identity
  comm @5 :Text;
  cgroupId @6 :UInt64;
  cgroupName @7 :Text;
  mxcsr @8 :UInt32;          # MXCSR at the switch that crossed the threshold
  count @9 :UInt32;          # switches seen with a non-default rounding mode
  threshold @10 :UInt32;     # the probe's threshold (count == threshold when published)
  firstBootNs @11 :UInt64;   # first switch with a non-default rounding mode
  eventBootNs @12 :UInt64;   # the switch that crossed the threshold
  cpu @13 :UInt32;
}

enum AddressFamily {
  ipv4 @0;
  ipv6 @1;
}

# tcpflowkiller: one outgoing TCP connection attempt (a socket entering SYN_SENT).
struct ConnectEvent {
  pid @0 :UInt32;
  tgid @1 :UInt32;
  ppid @2 :UInt32;
  uid @3 :UInt32;
  startBootNs @4 :UInt64;    # start time of the thread group leader: the process identity
  comm @5 :Text;
  cgroupId @6 :UInt64;
  cgroupName @7 :Text;
  family @8 :AddressFamily;
  destination @9 :Data;      # 4 or 16 bytes, network order
  destinationPort @10 :UInt16;
  sourceAddress @11 :Data;   # 4 or 16 bytes (often unset: 0.0.0.0 / :: before bind)
  sourcePort @12 :UInt16;
  eventBootNs @13 :UInt64;
  cpu @14 :UInt32;
}

struct Counter {
  name @0 :Text;
  value @1 :UInt64;
}

struct Stats {
  # Cumulative since the publisher started (a new publisherId resets them).
  uptimeNs @0 :UInt64;
  counters @1 :List(Counter);  # e.g. events, kernel_drops, truncated, published, send_drops
  intervalMs @2 :UInt32;       # how often stats come: a subscriber that misses 3 is alarmed
}
