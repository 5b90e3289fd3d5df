#!/usr/bin/env python3
"""Faults, end to end: stages killed the hard way (SIGKILL) and restarted while banned
processes start; a stage that stops reading. The real collector, enforcer and exporter
over ipc sockets, real BPF, real processes killed.

Safety: every banned string is random (``fault`` + 32 hex digits).
Needs root (the collector loads BPF); exits 77 (CTest's skip code) otherwise.
"""
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import Pipeline, finish, wait_for, write_config  # noqa: E402


def banned_string():
    return "fault" + secrets.token_hex(16)


class FaultTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        self.tmp = tempfile.mkdtemp(prefix="cryptnono-faults-")
        self.banned = banned_string()
        cfg = os.path.join(self.tmp, "config.json")
        write_config(cfg, [self.banned])
        self.pipeline = Pipeline([cfg])
        self.children = []

    def tearDown(self):
        for c in self.children:
            try:
                os.killpg(c.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            c.wait()
        finish(self, self.pipeline, self.tmp)

    def spawn_banned(self, seconds=60):
        c = subprocess.Popen(["sh", "-c", f"sleep {seconds}; : {self.banned}"], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.children.append(c)
        return c

    def banned_dies(self, child, timeout=10):
        wait_for(lambda: child.poll() is not None, timeout, f"pid {child.pid} to be killed")
        self.assertEqual(child.returncode, -signal.SIGKILL)

    def test_enforcer_killed_and_restarted_kills_everything_started_meanwhile(self):
        p = self.pipeline
        self.assertEqual(p.kill("enforcer"), -signal.SIGKILL)
        meanwhile = [self.spawn_banned() for _ in range(5)]
        time.sleep(0.5)
        self.assertTrue(all(c.poll() is None for c in meanwhile), "nothing enforces while the enforcer is down")
        p.restart("enforcer")
        # Its subscription reaches the collector, which sweeps /proc for it: each banned
        # process that started while no enforcer ran is found and killed.
        for c in meanwhile:
            self.banned_dies(c, timeout=20)
            line = p.find_line(pid=c.pid, action="killed")
            self.assertEqual(line["source"], "execwhacker.scan")
        wait_for(lambda: p.metric("cryptnono_publisher_restarts_total", publisher_kind="enforcer") >= 1, 10,
                 "the exporter to count the enforcer's restart")
        self.banned_dies(self.spawn_banned())  # and the exec path works again

    def test_collector_killed_and_restarted_is_noticed_counted_logged_and_recovered(self):
        p = self.pipeline
        self.assertEqual(p.kill("collector"), -signal.SIGKILL)
        # Down for more than three stats intervals (1 s here): the exporter says so.
        wait_for(lambda: re.search(r"publisher collector/\S+ silent", p.log("exporter")), 10,
                 "the exporter to log the collector's silence")
        p.restart("collector")
        wait_for(lambda: p.metric("cryptnono_publisher_restarts_total", publisher_kind="collector") >= 1, 20,
                 "the exporter to count the collector's restart")
        wait_for(lambda: re.search(r"collector restarted: new publisher collector/\S+", p.log("enforcer")), 10,
                 "the enforcer to log the collector's restart")
        wait_for(lambda: re.search(r"publisher collector/\S+ replaces collector/\S+ after", p.log("exporter")),
                 10, "the exporter to log the collector's return")
        self.assertGreaterEqual(p.metric("cryptnono_publisher_silences_total", publisher_kind="collector"), 1)
        # Recovered without restarting the enforcer or the exporter.
        self.banned_dies(self.spawn_banned())
        p.check_alive()
        wait_for(lambda: p.metric("cryptnono_enforcer_publisher_restarts_total") >= 1, 10,
                 "the enforcer's own count of the collector's restart")
        # The direct path went down with the collector and came back by itself.
        log = p.log("enforcer")
        self.assertRegex(log, r"direct path \S+ lost: events keep coming over ZeroMQ")
        self.assertGreaterEqual(log.count("direct path connected"), 2, log)
        # ... and took the exec events alone again once it had caught up.
        wait_for(lambda: subprocess.run(["true"]).returncode == 0 and
                 p.log("enforcer").count("carries the exec events alone now") >= 2, 10,
                 "the direct path to take the exec events alone again")
        # The old collector's kernel ring was let go (after reading what it held), and the
        # new one's is taken and kills: the exec path is whole again.
        self.assertIn("kernel ring let go", p.log("enforcer"))
        wait_for(lambda: subprocess.run(["true"]).returncode == 0 and
                 p.log("enforcer").count("execs come straight from the probe") >= 2, 10,
                 "the enforcer to take the new collector's kernel ring")
        ring_before = p.metric("cryptnono_enforcer_ring_events_total")
        self.banned_dies(self.spawn_banned())
        wait_for(lambda: p.metric("cryptnono_enforcer_ring_events_total") > ring_before, 10,
                 "execs to come from the new kernel ring")

    def test_exporter_down_blocks_nothing_upstream_and_grows_nothing(self):
        p = self.pipeline
        self.assertEqual(p.kill("exporter"), -signal.SIGKILL)
        # Anonymous memory: where queues grow. (VmRSS also counts the pages of the BPF rings
        # the collector and the enforcer map, which fill in as events pass through them.)
        rss = {n: p.rss_kib(n, "RssAnon") for n in ("collector", "enforcer")}
        # Work for the pipeline while its only decision subscriber is gone.
        for _ in range(300):
            subprocess.run(["/bin/true"])
        for _ in range(3):
            self.banned_dies(self.spawn_banned())
        grown = {n: p.rss_kib(n, "RssAnon") - rss[n] for n in rss}
        print(f"\nRSS growth with the exporter down (KiB): {grown}")
        for n, kib in grown.items():
            self.assertLess(kib, 8 * 1024, f"{n} grew by {kib} KiB with nobody reading its decisions")
        p.restart("exporter")
        wait_for(lambda: self._scrape_ok(), 20, "the restarted exporter to serve /metrics")
        c = self.spawn_banned()
        self.banned_dies(c)
        p.find_line(pid=c.pid, action="killed")

    def test_a_subscriber_that_stops_reading_costs_bounded_memory_and_its_losses_are_counted(self):
        # Restarted with a small per-subscriber queue so the test needs few events.
        p = self.pipeline
        p.kill("enforcer", signal.SIGTERM)
        p.argv["enforcer"] = p.argv["enforcer"] + ["--send-hwm", "100"]
        p.restart("enforcer")
        wait_for(lambda: self._checked_grows(), 20, "the restarted enforcer to decide again")
        os.kill(p.procs["exporter"].pid, signal.SIGSTOP)  # every thread of it, ZeroMQ's too
        try:
            rss = p.rss_kib("enforcer", "RssAnon")  # queues; not the kernel ring's pages
            deadline = time.monotonic() + 60
            spawned = 0
            while spawned < 6000 and time.monotonic() < deadline:
                subprocess.run(["/bin/true"])
                spawned += 1
            c = self.spawn_banned()
            self.banned_dies(c)  # killing goes on while nobody reads the decisions
            grown = p.rss_kib("enforcer", "RssAnon") - rss
        finally:
            os.kill(p.procs["exporter"].pid, signal.SIGCONT)
        print(f"\n{spawned} execs with the exporter stopped: enforcer RSS grew {grown} KiB")
        self.assertLess(grown, 8 * 1024, "the enforcer's queue for a stopped subscriber is bounded")
        # A gap shows when the next message after it arrives: keep making decisions.
        def lost_counted():
            subprocess.run(["/bin/true"])
            return p.metric("cryptnono_messages_lost_total", publisher_kind="enforcer", topic="decision") > 0
        wait_for(lost_counted, 20, "the exporter to count the decisions it missed while stopped", interval=0.2)
        p.check_alive()

    def _checked_grows(self):
        before = self.pipeline.metric("cryptnono_execwhacker_processes_checked_total")
        subprocess.run(["/bin/true"])
        time.sleep(0.2)
        return self.pipeline.metric("cryptnono_execwhacker_processes_checked_total") > before

    def _scrape_ok(self):
        try:
            return self.pipeline.scrape("/healthz")[0] == 200
        except OSError:
            return False


if __name__ == "__main__":
    unittest.main()
