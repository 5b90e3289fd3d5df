#!/usr/bin/env python3
"""Load, end to end: benign execs at a target rate (default 1,000/s) for a while
(default 60 s; CTest runs a shorter one, see CMakeLists.txt) while banned processes are
mixed in and /metrics is scraped by 200 clients at once, repeatedly.

Asserts: every banned process is killed and logged; no event is lost at any stage
(collector ring-buffer drops and send drops, enforcer sequence gaps, exporter sequence
gaps all zero); every scrape answers 200. Prints the exec rate reached and the figures
(BENCHMARKS.md records a full run).

  sudo CRYPTNONO_BIN=build/bin CRYPTNONO_EXEC_STORM=build/bench/latency/exec_storm \\
       CRYPTNONO_LOAD_SECONDS=60 python3 tests/integration/test_load.py -v

Safety: the banned string is random (``load`` + 32 hex digits).
"""
import concurrent.futures
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import Pipeline, finish, parse_metrics, wait_for, write_config  # noqa: E402

STORM = os.environ.get("CRYPTNONO_EXEC_STORM", "")
SECONDS = float(os.environ.get("CRYPTNONO_LOAD_SECONDS", "60"))
RATE = float(os.environ.get("CRYPTNONO_LOAD_RATE", "1000"))
SCRAPERS = 200


class LoadTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        self.assertTrue(STORM and os.access(STORM, os.X_OK), "CRYPTNONO_EXEC_STORM must name the exec_storm binary")
        self.tmp = tempfile.mkdtemp(prefix="cryptnono-load-")
        self.banned = "load" + secrets.token_hex(16)
        cfg = os.path.join(self.tmp, "config.json")
        write_config(cfg, [self.banned])
        self.pipeline = Pipeline([cfg])

    def tearDown(self):
        finish(self, self.pipeline, self.tmp)

    def scrape_burst(self):
        """SCRAPERS concurrent GET /metrics; returns (statuses, slowest seconds)."""
        def one(_):
            start = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{self.pipeline.port}/metrics", timeout=30) as r:
                r.read()
                return r.status, time.monotonic() - start
        with concurrent.futures.ThreadPoolExecutor(max_workers=SCRAPERS) as pool:
            results = list(pool.map(one, range(SCRAPERS)))
        return [s for s, _ in results], max(t for _, t in results)

    def test_benign_storm_with_banned_processes_and_concurrent_scrapes(self):
        p = self.pipeline
        storm = subprocess.Popen([STORM, "--workers", "2", "--seconds", str(SECONDS), "--rate", str(RATE)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        banned, scrapes, slowest = [], [], 0.0
        stop = threading.Event()

        def scraper():
            nonlocal slowest
            while not stop.is_set():
                statuses, worst = self.scrape_burst()
                scrapes.extend(statuses)
                slowest = max(slowest, worst)
                stop.wait(2)
        t = threading.Thread(target=scraper)
        t.start()
        try:
            deadline = time.monotonic() + SECONDS
            while time.monotonic() < deadline:
                banned.append(subprocess.Popen(["sh", "-c", f"sleep 60; : {self.banned}"], start_new_session=True,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                time.sleep(0.25)
            out, err = storm.communicate(timeout=SECONDS + 60)
        finally:
            stop.set()
            t.join()
            for c in banned:
                c.poll()
                try:  # the whole session: a killed sh leaves its `sleep` behind
                    os.killpg(c.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for c in banned:
                c.wait()
        self.assertEqual(storm.returncode, 0, err.decode())
        result = json.loads(out.decode().strip().splitlines()[-1])

        survivors = [c.pid for c in banned if c.returncode != -signal.SIGKILL]
        self.assertEqual(survivors, [], "every banned process must die by SIGKILL during the storm")
        for c in banned:
            p.find_line(pid=c.pid, action="killed", timeout=20)

        # Counters arrive with stats (every second here): wait two rounds past the storm.
        time.sleep(2.5)
        _, text = p.scrape()
        series = parse_metrics(text)

        def total(name, **labels):
            return sum(v for n, l, v in series if n == name and all(l.get(k) == val for k, val in labels.items()))
        lost = {
            "collector ring buffer drops": total("cryptnono_collector_kernel_ringbuf_drops_total"),
            "collector send drops": total("cryptnono_collector_send_drops_total"),
            "enforcer events lost": total("cryptnono_enforcer_events_lost_total"),
            "enforcer send drops": total("cryptnono_enforcer_send_drops_total"),
            "exporter messages lost": total("cryptnono_messages_lost_total"),
        }
        checked = total("cryptnono_execwhacker_processes_checked_total")
        failed_scrapes = [s for s in scrapes if s != 200]
        print(f"\nload: {result['rate']:.0f} benign execs/s for {result['seconds']:.0f} s ({result['execs']} execs), "
              f"{len(banned)} banned processes all killed, {checked:.0f} processes checked, "
              f"{len(scrapes)} scrapes in bursts of {SCRAPERS} (slowest {slowest * 1000:.0f} ms), losses {lost}")
        self.assertGreaterEqual(checked, result["execs"], "every benign exec was checked")
        self.assertEqual(failed_scrapes, [])
        self.assertGreaterEqual(len(scrapes), SCRAPERS)
        self.assertEqual(lost, {k: 0 for k in lost}, "no event lost at any stage")


if __name__ == "__main__":
    unittest.main()
