#!/usr/bin/env python3
"""Integration tier: the three real programs as separate processes, wired over ipc
sockets in a private temp dir, with real BPF, real processes killed and real HTTP scrapes
of /metrics.

Safety: every test bans only strings it generates at random (``itest`` + 32 hex digits),
so the enforcer can never match anything but the processes the test itself starts.

Run by CTest (label ``integration``) with CRYPTNONO_BIN pointing at the build's bin/.
Needs root (the collector loads BPF); exits 77 (CTest's skip code) otherwise.
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

BIN = os.environ.get("CRYPTNONO_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))
REWRITER = os.environ.get("CRYPTNONO_ARGV_REWRITER", "")


def random_banned():
    return "itest" + secrets.token_hex(16)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def parse_metrics(text):
    """Prometheus text format -> list of (name, {labels}, value)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)', line)
        if not m:
            raise AssertionError(f"unparsable metrics line: {line!r}")
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


class Pipeline:
    """collector -> enforcer -> exporter, each its own process, sockets in a temp dir."""

    def __init__(self, configs, enforcer_args=(), collector_args=()):
        self.dir = tempfile.mkdtemp(prefix="cryptnono-it-")
        os.chmod(self.dir, 0o700)
        self.port = free_port()
        self.collector_ep = f"ipc://{self.dir}/collector.sock"
        self.enforcer_ep = f"ipc://{self.dir}/execwhacker.sock"
        self.procs = {}
        self.files = {}
        self.argv = {}
        self._start("collector", [f"{BIN}/cryptnono-collector", "--bind", self.collector_ep,
                                  "--stats-interval", "1", *collector_args])
        config_args = [a for c in configs for a in ("--config", c)]
        self._start("enforcer", [f"{BIN}/cryptnono-enforcer", *config_args, "--connect", self.collector_ep,
                                 "--bind", self.enforcer_ep, "--stats-interval", "1", *enforcer_args,
                                 *os.environ.get("CRYPTNONO_IT_ENFORCER_ARGS", "").split()])
        self._start("exporter", [f"{BIN}/cryptnono-exporter", "--connect", self.enforcer_ep,
                                 "--connect", self.collector_ep, "--metrics-address", f"127.0.0.1:{self.port}",
                                 *os.environ.get("CRYPTNONO_IT_EXPORTER_ARGS", "").split()])
        self.wait_ready()

    def _start(self, name, argv):
        # Appending: a restarted stage keeps its earlier output in the same files.
        out = open(os.path.join(self.dir, f"{name}.out"), "ab")
        err = open(os.path.join(self.dir, f"{name}.err"), "ab")
        if name in self.files:
            for f in self.files[name]:
                f.close()
        self.files[name] = (out, err)
        self.argv[name] = argv
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=err)

    def kill(self, name, sig=signal.SIGKILL):
        """Kills one stage the hard way (no clean shutdown) and reaps it."""
        p = self.procs[name]
        p.send_signal(sig)
        return p.wait(timeout=10)

    def restart(self, name):
        """Starts a stage again with the argv it had (after kill())."""
        self._start(name, self.argv[name])

    def rss_kib(self, name, field="VmRSS"):
        """A stage's resident memory (KiB): all of it, or one part ("RssAnon": its heap and
        stacks, without the shared mappings such as the BPF rings it reads)."""
        with open(f"/proc/{self.procs[name].pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {field} for {name}")

    def log(self, name, stream="err"):
        with open(os.path.join(self.dir, f"{name}.{stream}"), "rb") as f:
            return f.read().decode(errors="replace")

    def check_alive(self):
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError(f"{name} exited with {p.returncode}:\n{self.log(name)}")

    def wait_ready(self):
        # Ready when decisions flow end to end: the exporter has counted checked processes
        # (benign execs we make) and has collector stats.
        def ready():
            self.check_alive()
            subprocess.run(["/bin/true"])
            try:
                return self.metric("cryptnono_execwhacker_processes_checked_total") > 0 and \
                    self.metric("cryptnono_collector_events_bpf_total") > 0
            except OSError:
                return False
        wait_for(ready, 30, "the pipeline to be ready", interval=0.1)

    def scrape(self, path="/metrics"):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return r.status, r.read().decode()

    def metric(self, name, **labels):
        """Sum of the series of `name` whose labels include `labels`."""
        _, text = self.scrape()
        return sum(v for n, l, v in parse_metrics(text)
                   if n == name and all(l.get(k) == str(val) for k, val in labels.items()))

    def diagnose(self):
        """For a failure's output: the stages' counters as scraped, and where each of their
        threads is (state and kernel wait channel)."""
        out = []
        try:
            _, text = self.scrape()
            out += [line for line in text.splitlines() if line.startswith(("cryptnono_enforcer_", "cryptnono_collector_"))]
        except Exception as e:  # noqa: BLE001 - a diagnosis must not hide the failure
            out.append(f"(scrape failed: {e})")
        for name, p in self.procs.items():
            for tid in sorted(os.listdir(f"/proc/{p.pid}/task")) if p.poll() is None else []:
                try:
                    with open(f"/proc/{p.pid}/task/{tid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    with open(f"/proc/{p.pid}/task/{tid}/wchan") as f:
                        wchan = f.read()
                    with open(f"/proc/{p.pid}/task/{tid}/comm") as f:
                        comm = f.read().strip()
                    out.append(f"{name} thread {tid} ({comm}): state {fields[0]}, wchan {wchan}, "
                               f"utime {fields[11]} stime {fields[12]}")
                except OSError:
                    pass
        return "\n".join(out)

    def json_lines(self):
        """Every stdout line of the exporter, each required to be one valid JSON object."""
        lines = []
        for raw in self.log("exporter", "out").splitlines():
            obj = json.loads(raw)
            assert isinstance(obj, dict), raw
            lines.append(obj)
        return lines

    def find_line(self, timeout=10, **fields):
        def look():
            for obj in self.json_lines():
                if all(obj.get(k) == v for k, v in fields.items()):
                    return obj
            return None
        return wait_for(look, timeout, f"exporter JSON line with {fields}")

    def stop(self):
        codes = {}
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in self.procs.items():
            try:
                codes[name] = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[name] = "hung"
        for out, err in self.files.values():
            out.close()
            err.close()
        return codes

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def finish(test, pipeline, tmp):
    """Stops the pipeline, removes its files and `tmp`, and requires every stage to have
    exited 0 on SIGTERM (the stages' stderr tails are the failure message)."""
    codes = pipeline.stop()
    logs = "\n".join(f"--- {n} ---\n{pipeline.log(n)[-3000:]}" for n in codes)
    pipeline.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
    test.assertEqual(codes, {n: 0 for n in codes}, logs)


def write_config(path, banned, allowed=()):
    with open(path, "w") as f:
        json.dump({"bannedCommandStrings": list(banned), "allowedCommandPatterns": list(allowed)}, f, indent=2)


def wait_for_kernel_ring(p):
    """Until the enforcer has taken the kernel ring (any exec on the machine moves the
    hand-over along; these are ours)."""
    wait_for(lambda: subprocess.run(["true"]).returncode == 0 and
             "execs come straight from the probe" in p.log("enforcer"), 10, "the enforcer to take the kernel ring")


def run_banned_shell(text, sleep="1"):
    """The seed's test command with our own string; returns (returncode, seconds)."""
    start = time.monotonic()
    p = subprocess.run(["sh", "-c", f"sleep {sleep} && echo {text}"], stdout=subprocess.DEVNULL, timeout=30)
    return p.returncode, time.monotonic() - start


class PipelineTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cryptnono-itcfg-")
        self.pipeline = None
        self.children = []

    def tearDown(self):
        for c in self.children:
            try:
                os.killpg(c.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            c.wait()
        if self.pipeline:
            if self._outcome_failed():
                sys.stderr.write(f"--- the stages before stopping ---\n{self.pipeline.diagnose()}\n")
            codes = self.pipeline.stop()
            if not self._outcome_failed():
                # Every stage must exit cleanly on SIGTERM.
                self.assertEqual(codes, {"collector": 0, "enforcer": 0, "exporter": 0},
                                 "\n".join(self.pipeline.log(n) for n in codes))
            else:
                for n in codes:
                    # Without --log-level trace's line per event.
                    text = "\n".join(line for line in self.pipeline.log(n).splitlines() if " trace [" not in line)
                    sys.stderr.write(f"--- {n} stderr ---\n{text[-4000:]}\n")
                # The exporter's decisions (JSON lines): what the enforcer made of each exec.
                sys.stderr.write(f"--- exporter stdout (last decisions) ---\n{self.pipeline.log('exporter', 'out')[-6000:]}\n")
                mine = [line for line in self.pipeline.log("exporter", "out").splitlines()
                        if f'"ppid":{os.getpid()},' in line]
                sys.stderr.write("--- decisions about this test's children ---\n" + "\n".join(mine[-60:]) + "\n")
                traced = [line for line in self.pipeline.log("enforcer").splitlines() if "judged" in line and "itest" in line]
                if traced:
                    sys.stderr.write("--- the enforcer's trace of this test's commands ---\n" + "\n".join(traced[-40:]) + "\n")
            self.pipeline.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _outcome_failed(self):
        # In tearDown, unittest (3.11+) reports outcome.success for tearDown's own part,
        # True so far: whether the test failed is in the result's lists.
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        result = outcome.result
        bad = getattr(result, "failures", []) + getattr(result, "errors", [])
        return not outcome.success or any(test is self for test, _ in bad)

    def start(self, banned, allowed=(), **kw):
        cfg = os.path.join(self.tmp, "config.json")
        write_config(cfg, banned, allowed)
        self.pipeline = Pipeline([cfg], **kw)
        return self.pipeline

    def spawn(self, argv, **kw):
        c = subprocess.Popen(argv, start_new_session=True, **kw)
        self.children.append(c)
        return c

    def test_seed_command_is_killed_logged_counted_and_tailed(self):
        banned = random_banned()
        # A long exit wait, so that a loaded machine still sees the process gone within it.
        p = self.start([banned], enforcer_args=["--exit-wait-us", "500000"])
        killed_before = p.metric("cryptnono_execwhacker_processes_killed_total", source="execwhacker.bpf")
        tail_out = open(os.path.join(self.tmp, "tail.out"), "w+b")
        tail = self.spawn([f"{BIN}/cryptnono", "tail", p.enforcer_ep, "--topic", "decision"], stdout=tail_out)
        time.sleep(0.5)  # PUB/SUB join: let tail's subscription reach the enforcer

        code, seconds = run_banned_shell(banned)
        self.assertEqual(code, -signal.SIGKILL, "the seed-style command must die by SIGKILL")
        self.assertLess(seconds, 1.0, "killed before its `sleep 1` ended")

        line = p.find_line(matched=banned.lower(), action="killed")
        self.assertEqual(line["source"], "execwhacker.bpf")
        self.assertEqual(line["event"], "Killed process")
        self.assertEqual(line["level"], "info")
        self.assertIn(f"echo {banned.lower()}", line["cmdline"])
        self.assertTrue(line["cmdline"].startswith("/"), line["cmdline"])  # exec'd filename first
        for field in ("pid", "container_type", "labels", "image", "timestamp", "node", "ppid", "uid"):
            self.assertIn(field, line)
        print(f"\nexec->kill latency observed: {line.get('exec_to_kill_us')} us "
              f"(exec->decision {line.get('exec_to_decision_us')} us); command died after {seconds * 1000:.1f} ms")
        self.assertGreater(line["exec_to_kill_us"], 0)
        # The enforcer waited for it to go: it says when (after the signal, before the shell's end).
        self.assertGreaterEqual(line["exec_to_exit_us"], line["exec_to_kill_us"], line)
        self.assertAlmostEqual(line["kill_to_exit_us"], line["exec_to_exit_us"] - line["exec_to_kill_us"], delta=1, msg=line)
        self.assertLess(line["exec_to_exit_us"], seconds * 1e6, line)

        wait_for(lambda: p.metric("cryptnono_execwhacker_processes_killed_total", source="execwhacker.bpf")
                 >= killed_before + 1, 10, "killed_total to go up")

        def tail_saw():
            tail_out.seek(0)
            for raw in tail_out.read().decode(errors="replace").splitlines():
                obj = json.loads(raw)
                if obj.get("topic") == "decision" and banned.lower() in json.dumps(obj):
                    return obj
            return None
        wait_for(tail_saw, 10, "cryptnono tail to print the decision")

    def test_the_agents_own_program_with_a_banned_string_is_spared(self):
        """An operator's `cryptnono tail` whose argv holds a banned string: the exec event
        names the agent's own program (the file the exec ran), so it is never killed."""
        banned = random_banned()
        p = self.start([banned])
        tail = self.spawn([f"{BIN}/cryptnono", "tail", p.enforcer_ep, "--topic", banned],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        line = p.find_line(matched=banned.lower())
        self.assertEqual(line["action"], "spared", line)
        self.assertEqual(line["reason"], "protected: one of the agent's own programs", line)
        self.assertEqual(line["pid"], tail.pid)
        time.sleep(0.2)
        self.assertIsNone(tail.poll(), "the agent's own program was killed")
        # The same bytes under another inode are not the agent's program: killed.
        copy = os.path.join(self.tmp, "not-cryptnono")
        shutil.copy(f"{BIN}/cryptnono", copy)
        other = self.spawn([copy, "tail", p.enforcer_ep, "--topic", banned],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.assertEqual(other.wait(timeout=10), -signal.SIGKILL)

    def test_execs_come_from_the_kernel_ring_then_the_direct_path_then_zeromq_alone(self):
        # Default: the enforcer takes exec events from the collector's direct socket (next
        # to collector.sock) and from ZeroMQ, judges the first copy and skips the second;
        # once the direct path has caught up it takes them from it alone, and asks for the
        # collector's kernel ring, from which it then reads every exec straight from the probe.
        banned = random_banned()
        p = self.start([banned])
        self.assertTrue(os.path.exists(os.path.join(p.dir, "collector.direct")))
        self.assertIn("direct path connected", p.log("enforcer"))
        wait_for_kernel_ring(p)
        self.assertIn("carries the exec events alone now", p.log("enforcer"))
        self.assertIn("kernel ring taken by an enforcer", p.log("collector"))
        ring_before = p.metric("cryptnono_enforcer_ring_events_total")
        code, _ = run_banned_shell(banned)
        self.assertEqual(code, -signal.SIGKILL)
        p.find_line(matched=banned.lower(), action="killed")
        wait_for(lambda: p.metric("cryptnono_enforcer_ring_events_total") > ring_before and
                 p.metric("cryptnono_collector_kernel_ring_grants_total") == 1, 10,
                 "the kernel ring's counters to go up")
        self.assertEqual(p.metric("cryptnono_enforcer_events_lost_total"), 0)
        self.assertEqual(p.metric("cryptnono_collector_kernel_ring_drops_total"), 0)
        # Every exec was judged once: what the ring carried was not sent again on the direct
        # path, and what ZeroMQ still had queued of it was skipped.
        wait_for(lambda: p.metric("cryptnono_enforcer_events_received_total") ==
                 p.metric("cryptnono_enforcer_decisions_total") and
                 p.metric("cryptnono_enforcer_ring_events_total") + p.metric("cryptnono_enforcer_direct_events_total")
                 <= p.metric("cryptnono_enforcer_events_received_total"), 10, "one decision per judged event")
        finish(self, p, self.tmp)
        self.pipeline = None
        self.tmp = tempfile.mkdtemp(prefix="cryptnono-itcfg-")

        # --kernel-ring false: the direct path carries the execs and kills.
        banned = random_banned()
        p = self.start([banned], enforcer_args=["--kernel-ring", "false"])
        wait_for(lambda: subprocess.run(["true"]).returncode == 0 and
                 "carries the exec events alone now" in p.log("enforcer"), 10,
                 "the direct path to take the exec events alone")
        code, _ = run_banned_shell(banned)
        self.assertEqual(code, -signal.SIGKILL)
        p.find_line(matched=banned.lower(), action="killed")
        wait_for(lambda: p.metric("cryptnono_enforcer_direct_events_total") > 0 and
                 p.metric("cryptnono_collector_direct_sent_total") > 0, 10,
                 "the direct path's counters to go up")
        self.assertEqual(p.metric("cryptnono_enforcer_ring_events_total"), 0)
        self.assertEqual(p.metric("cryptnono_collector_kernel_ring_grants_total"), 0)
        self.assertEqual(p.metric("cryptnono_enforcer_events_lost_total"), 0)
        received = p.metric("cryptnono_enforcer_events_received_total")
        decisions = p.metric("cryptnono_enforcer_decisions_total")
        self.assertEqual(received, decisions)
        finish(self, p, self.tmp)
        self.pipeline = None
        self.tmp = tempfile.mkdtemp(prefix="cryptnono-itcfg-")

        # --direct off: ZeroMQ alone still kills; nothing is counted as direct.
        banned = random_banned()
        p = self.start([banned], enforcer_args=["--direct", "off"])
        code, _ = run_banned_shell(banned)
        self.assertEqual(code, -signal.SIGKILL)
        p.find_line(matched=banned.lower(), action="killed")
        wait_for(lambda: p.metric("cryptnono_enforcer_events_received_total") > 0, 10,
                 "enforcer stats")
        self.assertEqual(p.metric("cryptnono_enforcer_direct_events_total"), 0)
        self.assertEqual(p.metric("cryptnono_enforcer_ring_events_total"), 0)
        self.assertEqual(p.metric("cryptnono_enforcer_duplicates_total"), 0)
        self.assertNotIn("direct path connected", p.log("enforcer"))

    def test_the_wake_filter_leaves_benign_execs_to_batches_and_judges_banned_ones_at_once(self):
        # The enforcer writes its banned strings into the exec probe's wake filter: a benign
        # exec waits in the kernel ring for the batch timer (1 s here, to make a late judgement
        # plain), a banned one wakes the enforcer at once, ahead of the benign ones before it.
        banned = random_banned()
        p = self.start([banned], enforcer_args=["--ring-batch-ms", "1000"])
        wait_for_kernel_ring(p)
        self.assertIn("wake filter on: 1 banned strings as grams of 8 bytes looked up every 4 bytes",
                      p.log("enforcer"))
        for _ in range(3):
            subprocess.run(["true"])  # opens a batch: its timer fires 1 s from now
            code, _ = run_banned_shell(banned, sleep="5")
            self.assertEqual(code, -signal.SIGKILL)
        def three_kills():
            kills = [o for o in p.json_lines() if o.get("action") == "killed" and o.get("matched") == banned.lower()]
            return kills if len(kills) >= 3 else None
        kills = wait_for(three_kills, 10, "three kill lines")
        for k in kills:
            # Had the banned exec waited for the batch, it would have been judged about 1 s
            # after the exec of `true` just before it.
            self.assertLess(k["exec_to_kill_us"], 500_000, k)
        wait_for(lambda: p.metric("cryptnono_enforcer_ring_batched_total") > 0 and
                 p.metric("cryptnono_collector_kernel_ring_woken_total") >= 3, 10,
                 "the batched and woken counters to go up")
        # The benign execs of the test (and of the machine) did not each wake the enforcer.
        self.assertLess(p.metric("cryptnono_collector_kernel_ring_woken_total"),
                        p.metric("cryptnono_enforcer_ring_events_total"))
        self.assertEqual(p.metric("cryptnono_enforcer_events_lost_total"), 0)

        # --wake-filter false: every exec wakes the enforcer again.
        finish(self, p, self.tmp)
        self.pipeline = None
        self.tmp = tempfile.mkdtemp(prefix="cryptnono-itcfg-")
        banned = random_banned()
        p = self.start([banned], enforcer_args=["--wake-filter", "false"])
        wait_for_kernel_ring(p)
        code, _ = run_banned_shell(banned)
        self.assertEqual(code, -signal.SIGKILL)
        wait_for(lambda: p.metric("cryptnono_enforcer_ring_events_total") > 0, 10, "enforcer stats")
        self.assertEqual(p.metric("cryptnono_enforcer_ring_batched_total"), 0)
        self.assertNotIn("wake filter on", p.log("enforcer"))

    def test_an_exec_the_kernel_ring_has_no_room_for_comes_the_direct_way(self):
        # A one-page kernel ring cannot take an exec whose argv is longer than the page: the
        # probe counts the drop, the record goes out unflagged, and the collector sends it to
        # the ring's holder over the direct path, which kills it.
        banned = random_banned()
        p = self.start([banned], collector_args=["--kernel-ring-bytes", "4096"])
        wait_for_kernel_ring(p)
        child = self.spawn(["sh", "-c", f"sleep 5; echo {banned}", "x" * 6000])
        self.assertEqual(child.wait(timeout=10), -signal.SIGKILL)
        p.find_line(matched=banned.lower(), action="killed")
        wait_for(lambda: p.metric("cryptnono_collector_kernel_ring_drops_total") >= 1, 10,
                 "the kernel ring's drop to be counted")
        self.assertEqual(p.metric("cryptnono_enforcer_events_lost_total"), 0)
        # Short execs still fit: they came from the ring.
        self.assertGreater(p.metric("cryptnono_enforcer_ring_events_total"), 0)

    def test_sweep_kills_process_started_before_and_argv_rewriter(self):
        early, late = random_banned(), random_banned()
        before = self.spawn(["sh", "-c", f"sleep 600; : {early}"])
        time.sleep(0.2)
        p = self.start([early, late], collector_args=("--scan-interval", "1"))
        wait_for(lambda: before.poll() is not None, 15, "the process started before the pipeline to die")
        self.assertEqual(before.returncode, -signal.SIGKILL)
        line = p.find_line(matched=early, action="killed")
        self.assertEqual(line["source"], "execwhacker.scan")
        self.assertEqual(line["pid"], before.pid)

        self.assertTrue(REWRITER, "CRYPTNONO_ARGV_REWRITER not set")
        rewriter = self.spawn([REWRITER, "x" * len(late)], env={**os.environ, "REWRITE_TO": late},
                              stdout=subprocess.PIPE)
        self.assertEqual(rewriter.stdout.readline().strip(), b"rewritten")
        wait_for(lambda: rewriter.poll() is not None, 15, "the argv rewriter to die")
        self.assertEqual(rewriter.returncode, -signal.SIGKILL)
        line = p.find_line(matched=late, action="killed")
        self.assertEqual(line["source"], "execwhacker.scan")
        self.assertEqual(line["pid"], rewriter.pid)

    def test_dry_run_kills_nothing_and_reports_would_kill(self):
        banned = random_banned()
        p = self.start([banned], enforcer_args=("--dry-run",))
        code, _ = run_banned_shell(banned, sleep="0.3")
        self.assertEqual(code, 0, "dry run must not kill")
        line = p.find_line(matched=banned.lower(), action="would-kill")
        self.assertEqual(line["source"], "execwhacker.bpf")
        wait_for(lambda: p.metric("cryptnono_execwhacker_processes_would_kill_total") >= 1, 10, "would_kill_total")
        self.assertEqual(p.metric("cryptnono_execwhacker_processes_killed_total"), 0)

    def test_config_edit_and_symlink_swap_take_effect_without_restart(self):
        first, second, third = random_banned(), random_banned(), random_banned()
        plain = os.path.join(self.tmp, "plain.json")
        write_config(plain, [first])
        # The layout Kubernetes uses for a mounted ConfigMap/Secret: the file is a symlink
        # through `..data`, which is swapped atomically to a new timestamped directory.
        k8s = os.path.join(self.tmp, "k8s")
        os.makedirs(os.path.join(k8s, "..2026_01_01_00_00_00.1"))
        write_config(os.path.join(k8s, "..2026_01_01_00_00_00.1", "cfg.json"), [])
        os.symlink("..2026_01_01_00_00_00.1", os.path.join(k8s, "..data"))
        os.symlink("..data/cfg.json", os.path.join(k8s, "cfg.json"))
        self.pipeline = p = Pipeline([plain, os.path.join(k8s, "cfg.json")])

        code, _ = run_banned_shell(second, sleep="0")
        self.assertEqual(code, 0, "not banned yet")

        write_config(plain, [first, second])  # edited in place
        wait_for(lambda: run_banned_shell(second, sleep="0.5")[0] == -signal.SIGKILL, 15,
                 "the edited config to kill the new string")
        # One string more: only it was compiled, on top of the serving database; the whole
        # database is then rebuilt in the background and swapped in, and keeps killing.
        self.assertRegex(p.log("enforcer"), r"in force \d+ ms after the change was read; strings compiled: 1, "
                                            r"reused from the serving database: 1, disabled: 0")
        wait_for(lambda: "config database rebuilt whole in the background: 2 banned strings" in p.log("enforcer"),
                 15, "the background rebuild")
        code, _ = run_banned_shell(second, sleep="0.5")
        self.assertEqual(code, -signal.SIGKILL, "the rebuilt database kills the new string")

        new = os.path.join(k8s, "..2026_01_01_00_00_01.2")
        os.makedirs(new)
        write_config(os.path.join(new, "cfg.json"), [third])
        os.symlink("..2026_01_01_00_00_01.2", os.path.join(k8s, "..data_tmp"))
        os.rename(os.path.join(k8s, "..data_tmp"), os.path.join(k8s, "..data"))
        shutil.rmtree(os.path.join(k8s, "..2026_01_01_00_00_00.1"))
        wait_for(lambda: run_banned_shell(third, sleep="0.5")[0] == -signal.SIGKILL, 15,
                 "the swapped ConfigMap to kill its string")

        failures = p.metric("cryptnono_enforcer_config_reload_failures_total")
        with open(plain, "w") as f:
            f.write('{"bannedCommandStrings": [\n  "x",\n  oops\n]}\n')
        wait_for(lambda: p.metric("cryptnono_enforcer_config_reload_failures_total") > failures, 15,
                 "the bad edit to be refused and counted")
        self.assertRegex(p.log("enforcer"), re.escape(plain) + r":3:")  # file:line:column
        code, _ = run_banned_shell(first, sleep="0.5")
        self.assertEqual(code, -signal.SIGKILL, "the old config keeps working after a bad edit")

    def test_bad_config_is_refused_at_start_with_file_and_line(self):
        bad = os.path.join(self.tmp, "bad.json")
        with open(bad, "w") as f:
            f.write('{\n  "bannedCommandStrings": [\n    "ok",\n    42\n  ]\n}\n')
        r = subprocess.run([f"{BIN}/cryptnono-enforcer", "--config", bad, "--bind", f"ipc://{self.tmp}/e.sock",
                            "--connect", f"ipc://{self.tmp}/c.sock"], capture_output=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        err = r.stderr.decode()
        self.assertRegex(err, re.escape(bad) + r":4: ")  # file:line: reason
        self.assertLessEqual(len(err.strip().splitlines()), 2, err)


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("skipped: the integration tier needs root (it loads BPF and kills processes)")
        sys.exit(77)
    unittest.main()
