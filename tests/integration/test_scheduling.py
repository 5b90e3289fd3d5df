#!/usr/bin/env python3
"""Opt-in scheduling end to end: the real collector and enforcer started with
--rt-priority and --cpus run every thread SCHED_FIFO and pinned (ZeroMQ's I/O threads
included), hold no CAP_SYS_NICE afterwards in any thread, still kill, and the enforcer's
config watcher (a reload compiles for seconds) runs in the normal policy. Without
CAP_SYS_NICE the flag is refused with a clear message.

Safety: the banned string is random (``sched`` + 32 hex digits).
Needs root (the collector loads BPF; SCHED_FIFO needs CAP_SYS_NICE); exits 77 otherwise.
"""
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, Pipeline, finish, run_banned_shell, write_config  # noqa: E402

SCHED_OTHER, SCHED_FIFO = 0, 1
CAP_KILL, CAP_SYS_NICE = 5, 23
PRIORITY = 11


def threads(pid):
    """{tid: (comm, policy, rt_priority, allowed CPUs, CapEff)} of every thread of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        with open(f"{base}/stat") as f:
            stat = f.read()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()  # rest[0] is field 3 (state)
        rt_priority, policy = int(rest[40 - 3]), int(rest[41 - 3])
        with open(f"{base}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        out[int(tid)] = (comm, policy, rt_priority, status["Cpus_allowed_list"], int(status["CapEff"], 16))
    return out


class SchedulingTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        self.tmp = tempfile.mkdtemp(prefix="cryptnono-sched-")
        self.banned = "sched" + secrets.token_hex(16)
        self.config = os.path.join(self.tmp, "config.json")
        write_config(self.config, [self.banned])
        # The last CPU this process may use: a real pinning on a machine with two or more.
        self.cpu = str(max(os.sched_getaffinity(0)))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_every_thread_runs_fifo_pinned_without_sys_nice_and_still_kills(self):
        flags = ["--rt-priority", str(PRIORITY), "--cpus", self.cpu]
        p = Pipeline([self.config], enforcer_args=flags, collector_args=flags)
        try:
            collector, enforcer = p.procs["collector"].pid, p.procs["enforcer"].pid
            for name, pid in (("collector", collector), ("enforcer", enforcer)):
                ts = threads(pid)
                comms = sorted(c for c, *_ in ts.values())
                self.assertTrue(any(c.startswith("ZMQbg/IO") for c in comms), f"{name}: no ZeroMQ I/O thread: {comms}")
                for tid, (comm, policy, prio, cpus, caps) in ts.items():
                    with self.subTest(stage=name, thread=tid, comm=comm):
                        self.assertEqual(cpus, self.cpu)
                        # CAP_SYS_NICE was needed to apply SCHED_FIFO, and is gone from every thread.
                        self.assertFalse(caps & (1 << CAP_SYS_NICE), hex(caps))
                        self.assertEqual(caps, 0 if name == "collector" else 1 << CAP_KILL, hex(caps))
                        # The enforcer's config watcher (neither the main thread nor ZeroMQ's)
                        # compiles reloads: it leaves SCHED_FIFO.
                        watcher = name == "enforcer" and tid != pid and not comm.startswith("ZMQbg")
                        if watcher:
                            self.assertEqual((policy, prio), (SCHED_OTHER, 0))
                        else:
                            self.assertEqual((policy, prio), (SCHED_FIFO, PRIORITY))
                if name == "enforcer":
                    self.assertEqual(sum(1 for t, (c, *_) in ts.items() if t != pid and not c.startswith("ZMQbg")), 1,
                                     f"expected one config watcher thread: {ts}")
            self.assertIn(f"scheduling: SCHED_FIFO {PRIORITY}, CPUs {self.cpu} (every thread)", p.log("collector"))
            self.assertIn(f"scheduling: SCHED_FIFO {PRIORITY}, CPUs {self.cpu} (every thread)", p.log("enforcer"))
            # The exporter was not asked to: normal policy.
            for tid, (comm, policy, *_rest) in threads(p.procs["exporter"].pid).items():
                self.assertEqual(policy, SCHED_OTHER, f"exporter thread {tid} {comm}")

            code, seconds = run_banned_shell(self.banned)
            self.assertEqual(code, -signal.SIGKILL, "a banned command is still killed")
            self.assertLess(seconds, 1.0)
        finally:
            finish(self, p, self.tmp)

    def test_rt_priority_without_cap_sys_nice_is_refused_clearly(self):
        # Root, but CAP_SYS_NICE out of the bounding set: after exec it is in no set.
        for program, args in (("cryptnono-enforcer", ["--connect", f"ipc://{self.tmp}/c.sock",
                                                      "--bind", f"ipc://{self.tmp}/e.sock"]),
                              ("cryptnono-collector", ["--bind", f"ipc://{self.tmp}/c.sock", "--probes", "exec"])):
            with self.subTest(program=program):
                r = subprocess.run(["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice",
                                    f"{BIN}/{program}", *args, "--rt-priority", "20"],
                                   capture_output=True, timeout=60)
                err = r.stderr.decode()
                self.assertNotEqual(r.returncode, 0, err)
                self.assertIn("SCHED_FIFO needs CAP_SYS_NICE (or an RLIMIT_RTPRIO of at least 20)", err)

    def test_bad_flags_are_refused_before_anything_loads(self):
        for program in ("cryptnono-enforcer", "cryptnono-collector"):
            for flags, message in ((["--rt-priority", "100"], "--rt-priority: must be 0 (off) or 1..99"),
                                   (["--cpus", "2-1"], "--cpus: '2-1': a range must go upwards"),
                                   (["--cpus", "1023"], "--cpus 1023: none of these CPUs is available")):
                with self.subTest(program=program, flags=flags):
                    r = subprocess.run([f"{BIN}/{program}", "--bind", f"ipc://{self.tmp}/x.sock", *flags],
                                       capture_output=True, timeout=60)
                    self.assertNotEqual(r.returncode, 0)
                    self.assertIn(message, r.stderr.decode())


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("skipped: needs root (BPF, SCHED_FIFO)")
        sys.exit(77)
    unittest.main()
