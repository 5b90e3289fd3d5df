#!/usr/bin/env python3
"""The monero and flowkiller detectors end to end: the collector's real fpu and connect
probes, three enforcer processes (monero; flowkiller killing; flowkiller's fan-out rule in
dry run), the exporter's JSON lines and /metrics, and `cryptnono tail` on the new topics.

Safety: monero kills any process that keeps a non-default FPU rounding mode, which only
RandomX-like programs do; the positive case is our own `cryptnono-test-rounding`. The
flowkiller that kills has one banned range, a random 127.a.b.0/24 only this test connects
to, and a fan-out threshold too high to reach; the fan-out rule runs in a second
flowkiller in --dry-run, so it reports but can kill nothing.
Needs root (BPF); exits 77 (CTest's skip code) otherwise.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, Pipeline, free_port, parse_metrics, wait_for  # noqa: E402


class DetectorPipeline(Pipeline):
    """collector (exec, fpu, connect probes) -> monero, flowkiller, flowkiller --dry-run -> exporter."""

    def __init__(self, banned_file):
        self.dir = tempfile.mkdtemp(prefix="cryptnono-det-")
        os.chmod(self.dir, 0o700)
        self.port = free_port()
        self.collector_ep = f"ipc://{self.dir}/collector.sock"
        self.enforcer_ep = f"ipc://{self.dir}/monero.sock"
        self.flowkiller_ep = f"ipc://{self.dir}/flowkiller.sock"
        self.fanout_ep = f"ipc://{self.dir}/fanout.sock"
        self.procs, self.files, self.argv = {}, {}, {}
        self._start("collector", [f"{BIN}/cryptnono-collector", "--bind", self.collector_ep, "--stats-interval", "1"])
        common = ["--connect", self.collector_ep, "--stats-interval", "1"]
        self._start("enforcer", [f"{BIN}/cryptnono-enforcer", "--detector", "monero", "--bind", self.enforcer_ep,
                                 *common])
        self._start("flowkiller", [f"{BIN}/cryptnono-enforcer", "--detector", "flowkiller", "--bind",
                                   self.flowkiller_ep, "--banned-ips", banned_file,
                                   "--unique-destinations-threshold", "100000",
                                   "--max-destinations-per-process", "100001", *common])
        self._start("fanout", [f"{BIN}/cryptnono-enforcer", "--detector", "flowkiller", "--bind", self.fanout_ep,
                               "--dry-run", "--count-all-destinations", "--unique-destinations-threshold", "5",
                               "--lookback-duration-seconds", "20", *common])
        self._start("exporter", [f"{BIN}/cryptnono-exporter", "--connect", self.enforcer_ep, "--connect",
                                 self.flowkiller_ep, "--connect", self.fanout_ep, "--connect", self.collector_ep,
                                 "--metrics-address", f"127.0.0.1:{self.port}", "--cri-socket", "",
                                 "--docker-socket", ""])

        def ready():
            self.check_alive()
            subprocess.run(["/bin/true"])
            try:
                return self.metric("cryptnono_collector_events_bpf_total") > 0 and self._stats_from_all()
            except OSError:
                return False
        wait_for(ready, 30, "the detector pipeline to be ready", interval=0.2)

    def _stats_from_all(self):
        # Every enforcer has published (its stats reach the exporter every second).
        _, text = self.scrape()
        names = {l.get("name") for n, l, v in parse_metrics(text) if n == "cryptnono_enforcer_decisions_total"}
        return {"monero", "flowkiller"} <= names


class DetectorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root")
        cls.tmp = tempfile.mkdtemp(prefix="cryptnono-detcfg-")
        cls.net = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
        cls.banned_file = os.path.join(cls.tmp, "banned.txt")
        with open(cls.banned_file, "w") as f:
            f.write(f"# test range, only this test connects to it\n{cls.net}.0/24\nnot-an-address\n")
        cls.pipeline = DetectorPipeline(cls.banned_file)

    @classmethod
    def tearDownClass(cls):
        codes = cls.pipeline.stop()
        logs = "\n".join(f"--- {n} ---\n{cls.pipeline.log(n)[-3000:]}" for n in codes)
        cls.pipeline.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if any(c != 0 for c in codes.values()):
            raise AssertionError(f"a stage did not exit cleanly: {codes}\n{logs}")

    def setUp(self):
        self.children = []

    def tearDown(self):
        for c in self.children:
            if c.poll() is None:
                c.kill()
            c.wait()
            c.stdout.close()
        self.pipeline.check_alive()
        self.pipeline.json_lines()

    def spawn(self, argv):
        c = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.children.append(c)
        self.assertTrue(c.stdout.readline().startswith(b"ready"), argv)
        return c

    def test_monero_kills_a_process_that_keeps_switching_rounding_modes_and_spares_default_fp_work(self):
        p = self.pipeline
        benign = self.spawn([f"{BIN}/cryptnono-test-rounding", "--default", "4"])
        miner = self.spawn([f"{BIN}/cryptnono-test-rounding", "60"])
        wait_for(lambda: miner.poll() is not None, 20, "the rounding-mode program to be killed")
        self.assertEqual(miner.returncode, -signal.SIGKILL)
        line = p.find_line(pid=miner.pid, detector="monero", action="killed")
        self.assertEqual(line["rule"], "rounding-mode")
        self.assertEqual(line["source"], "monero.bpf")
        self.assertGreaterEqual(line["fpu_switches"], 64)
        self.assertIn("cryptnono-test-rounding", line["cmdline"])
        self.assertEqual(benign.wait(timeout=30), 0, "heavy floating-point work in the default mode is left alone")
        self.assertEqual([l for l in p.json_lines() if l.get("pid") == benign.pid], [])
        wait_for(lambda: p.metric("cryptnono_monero_processes_killed_total") >= 1, 10, "monero killed_total")

    def test_flowkiller_kills_a_connect_to_a_banned_range_and_not_to_others(self):
        p = self.pipeline
        port = free_port()
        allowed = self.spawn([f"{BIN}/cryptnono-test-connect", "--sleep", "3", f"127.0.0.1:{port}"])
        banned = self.spawn([f"{BIN}/cryptnono-test-connect", "--sleep", "30", f"{self.net}.7:{port}"])
        wait_for(lambda: banned.poll() is not None, 15, "the process connecting to a banned address to be killed")
        self.assertEqual(banned.returncode, -signal.SIGKILL)
        line = p.find_line(pid=banned.pid, detector="flowkiller", action="killed")
        self.assertEqual(line["rule"], "banned")
        self.assertEqual(line["matched"], f"{self.net}.0/24")
        self.assertEqual(line["destination"], f"{self.net}.7:{port}")
        self.assertEqual(allowed.wait(timeout=15), 0, "a connect to an address not banned is left alone")
        wait_for(lambda: p.metric("cryptnono_flowkiller_processes_killed_total", reason="banned") >= 1, 10,
                 "flowkiller killed_total{reason=banned}")
        self.assertGreaterEqual(p.metric("cryptnono_flowkiller_connects_checked_total"), 2)
        self.assertRegex(p.log("flowkiller"), r"banned\.txt:3: ")  # the bad line, with file and line

    def test_flowkiller_fan_out_rule_reports_a_process_reaching_many_destinations(self):
        p = self.pipeline
        ports = [free_port() for _ in range(8)]
        scanner = self.spawn([f"{BIN}/cryptnono-test-connect", "--sleep", "2", *[f"127.0.0.1:{q}" for q in ports]])
        line = p.find_line(pid=scanner.pid, detector="flowkiller", action="would-kill", timeout=15)
        self.assertEqual(line["rule"], "fanout")
        self.assertEqual(line["unique_destinations"], 6, "reported when the 6th destination passes N=5")
        self.assertEqual(scanner.wait(timeout=15), 0, "dry run: nothing killed")

    def test_tail_shows_the_collectors_connect_events(self):
        p = self.pipeline
        port = free_port()
        tail = subprocess.Popen([f"{BIN}/cryptnono", "tail", p.collector_ep, "--topic", "connect", "--count", "50",
                                 "--timeout", "10"], stdout=subprocess.PIPE)
        time.sleep(0.5)  # the subscription reaches the collector
        c = self.spawn([f"{BIN}/cryptnono-test-connect", f"[::1]:{port}"])
        c.wait(timeout=10)
        out, _ = tail.communicate(timeout=30)
        events = [json.loads(l)["body"]["connect"] for l in out.decode().splitlines()]
        mine = [e for e in events if e["tgid"] == c.pid]
        self.assertEqual(len(mine), 1, events)
        self.assertEqual(mine[0]["family"], "ipv6")
        self.assertEqual(mine[0]["destinationPort"], port)


if __name__ == "__main__":
    unittest.main()
