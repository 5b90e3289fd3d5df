#!/usr/bin/python3
"""Parts 2-4 of the benchmarks (root): exec -> SIGKILL latency against the floor,
throughput and loss at the machine's highest exec rate, and what the agent costs.

  run_pipeline.py --build BUILD --out OUT [--parts 2,3,4] [--smoke] [--rounds 3]
                  [--victims 500] [--throughput-s 60] [--variants plain,rt]

Writes OUT/latency.jsonl (one line per scenario and round, with every victim's timings
summarised), OUT/throughput.jsonl and OUT/cost.jsonl; report_pipeline.py makes tables.

Every process this script starts is stopped by its own pid (SIGTERM, then SIGKILL).
"""
import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchutil import (BENCH_DIR, append_jsonl, cpu_seconds, loadavg, log, status_kib,  # noqa: E402
                       summary)

PY = "/usr/bin/python3"


class Proc:
    """A started process, stopped by pid; stdout captured to a file, stderr to a log."""

    def __init__(self, name, cmd, tmp, ready=None, timeout=60, env=None):
        self.name = name
        self.cmd = cmd
        self.out_path = os.path.join(tmp, f"{name}.out")
        self.err_path = os.path.join(tmp, f"{name}.err")
        log("start", name, ":", " ".join(cmd))
        self.out = open(self.out_path, "w")
        self.err = open(self.err_path, "w")
        self.p = subprocess.Popen(cmd, stdout=self.out, stderr=self.err, env=env)
        self.pid = self.p.pid
        if ready:
            self.wait_for(ready, timeout)

    def wait_for(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            with open(self.err_path) as f:
                if rx.search(f.read()):
                    return
            if self.p.poll() is not None:
                raise SystemExit(f"{self.name} exited ({self.p.returncode}): {self.stderr_tail()}")
            time.sleep(0.05)
        raise SystemExit(f"{self.name}: no '{pattern}' within {timeout} s: {self.stderr_tail()}")

    def stderr_tail(self):
        with open(self.err_path) as f:
            return f.read()[-2000:]

    def cpu_s(self):
        try:
            return cpu_seconds(self.pid)
        except OSError:
            return 0.0

    def hwm_kib(self):
        return status_kib(self.pid, "VmHWM")

    def rss_kib(self):
        return status_kib(self.pid, "VmRSS")

    def stop(self, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(self.name, "did not stop on SIGTERM; SIGKILL")
                self.p.kill()
                self.p.wait()
        self.out.close()
        self.err.close()
        return self.p.returncode

    def jsonl(self):
        rows = []
        with open(self.out_path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rows.append(json.loads(line))
        return rows


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.out = os.path.abspath(args.out)
        self.bin = os.path.join(self.build, "bin")
        self.bb = os.path.join(self.build, "bench")
        self.tmp = tempfile.mkdtemp(prefix="cryptnono-bench-")
        self.victim = os.path.join(self.bb, "cnb-victim")
        # A fresh random banned string: nothing else on the machine carries it.
        self.token = "cnbtok" + secrets.token_hex(12)
        data = os.path.join(self.out, "matcher-data")
        n = "1000" if args.smoke else "100000"
        self.banned = os.path.join(data, f"banned-{n}.json")
        if not os.path.exists(self.banned):
            subprocess.run([PY, os.path.join(BENCH_DIR, "matcher", "gen_inputs.py"), data, "--counts", n], check=True)
        self.token_config = os.path.join(self.tmp, "token.json")
        with open(self.token_config, "w") as f:
            json.dump({"bannedCommandStrings": [self.token]}, f)
        self.token_file = os.path.join(self.tmp, "token.txt")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        self.seq = 0
        self._max_workers = None  # max_rate_workers() measures it once
        # What the storms exec: by default the static exit-only program (the machine's
        # highest exec rate); --storm-exe /bin/true gives the earlier, dynamically linked storm.
        self.storm_exe = args.storm_exe or os.path.join(self.bb, "cnb-exit0")

    def ep(self, name):
        return f"ipc://{self.tmp}/{name}.sock"

    def fresh(self, name):
        self.seq += 1
        return f"{name}-{self.seq}"

    # --- the killers -----------------------------------------------------------------
    @staticmethod
    def prefix(variant):
        """How the killer's processes are started for a scheduling variant: "plain",
        "rt" (SCHED_FIFO 50, every thread), "pin" (every thread on the last CPU), "pin+rt".
        "zmq" schedules as "plain" and turns the pipeline's direct path off (ZeroMQ only);
        "sock" schedules as "plain" and keeps the direct socket but not the kernel ring
        (the enforcer's --kernel-ring false); "now" schedules as "plain" and publishes killed
        decisions at once (--kill-decision-delay-ms 0); "nowait" schedules as "plain" and does
        not wait for a killed process to exit before going on (--exit-wait-us 0).
        "flags": the pipeline applies pin + SCHED_FIFO 50 itself (--cpus, --rt-priority); the
        floor gets them from outside, as in "pin+rt"."""
        if variant == "flags":
            variant = "pin+rt"
        cmd = []
        if "pin" in variant:
            cmd += ["taskset", "-c", str(os.cpu_count() - 1)]
        if "rt" in variant:
            cmd += ["chrt", "-f", "50"]
        return cmd

    def start_floor(self, variant):
        cmd = self.prefix(variant) + [os.path.join(self.bb, "floor_consumer"), "--marker", "cnb-victim"]
        return [Proc(self.fresh("floor"), cmd, self.tmp, ready=r"ready")]

    def start_pipeline(self, variant, exporter=False, tap=True):
        chrt = [] if variant == "flags" else self.prefix(variant)
        direct = ["--direct", "off"] if "zmq" in variant else []
        if variant == "flags":
            direct += ["--rt-priority", "50", "--cpus", str(os.cpu_count() - 1)]
        enforcer_only = ["--kernel-ring", "false"] if "sock" in variant else []
        if variant == "now":
            enforcer_only += ["--kill-decision-delay-ms", "0"]
        if variant == "nowait":
            enforcer_only += ["--exit-wait-us", "0"]
        if variant == "nofilter":  # every exec wakes the enforcer, as before the wake filter
            enforcer_only += ["--wake-filter", "false"]
        procs = []
        col_ep, enf_ep = self.ep(self.fresh("collector")), self.ep(self.fresh("enforcer"))
        procs.append(Proc(self.fresh("collector"), chrt + [os.path.join(self.bin, "cryptnono-collector"), "--bind", col_ep,
                                                           "--scan-interval", "0", "--stats-interval", "1",
                                                           "--node", "bench", *direct],
                          self.tmp, ready=r"capabilities after drop|publishing on"))
        procs.append(Proc(self.fresh("enforcer"), chrt + [os.path.join(self.bin, "cryptnono-enforcer"), "--connect", col_ep,
                                                          "--bind", enf_ep, "--config", self.banned, "--config",
                                                          self.token_config, "--stats-interval", "1",
                                                          "--node", "bench", *direct, *enforcer_only],
                          self.tmp, ready=r"enforcer running", timeout=120))
        if exporter:
            self.metrics_port = 20000 + secrets.randbelow(20000)
            procs.append(Proc(self.fresh("exporter"), [os.path.join(self.bin, "cryptnono-exporter"), "--connect", enf_ep,
                                                       "--connect", col_ep, "--metrics-address",
                                                       f"127.0.0.1:{self.metrics_port}"], self.tmp))
        if tap:
            procs.append(Proc(self.fresh("tap"), [os.path.join(self.bb, "pipeline_tap"), "--connect", enf_ep, "--connect",
                                                  col_ep, "--topic", "decision", "--topic", "stats"],
                              self.tmp, ready=r"ready"))
        return procs

    def max_rate_workers(self):
        """How many spawning processes give this machine its highest exec rate, measured
        once (3 s each for 1 and 2 workers, no agent running). On this 2-vCPU VM one worker
        spawns ~3,000 execs/s and two only ~1,900/s together: concurrent execs contend in the
        kernel, so "flat out on every core" is not the maximum here."""
        if self._max_workers is None:
            rates = {}
            for w in (1, os.cpu_count() or 1):
                st = self.storm(seconds=1 if self.args.smoke else 3, workers=w)
                st.p.wait()
                st.stop()
                rates[w] = next(r for r in st.jsonl() if r.get("what") == "storm")["rate"]
            self._max_workers = max(rates, key=rates.get)
            append_jsonl(os.path.join(self.out, "throughput.jsonl"),
                         {"what": "storm-calibration", "rates": {str(k): v for k, v in rates.items()},
                          "workers": self._max_workers, "loadavg": loadavg()})
            log(f"storm calibration: {rates} -> {self._max_workers} worker(s)")
        return self._max_workers

    def storm(self, seconds=0, workers=2, rate=0):
        return Proc(self.fresh("storm"), [os.path.join(self.bb, "exec_storm"), "--workers", str(workers), "--seconds",
                                          str(seconds), "--rate", str(rate), "--exe", self.storm_exe], self.tmp)

    # --- part 2 ----------------------------------------------------------------------
    def latency_scenario(self, killer, storm, variant, victims, rnd):
        # The per-hop breakdown needs no exec subscription of the tap (the decision carries the
        # collector's publish time), which would make the collector's ZeroMQ thread run after
        # every exec, as it does not in production.
        procs = self.start_floor(variant) if killer == "floor" else self.start_pipeline(variant)
        st = self.storm() if storm else None
        if st:
            time.sleep(1.0)  # let the storm reach its pace
        lat = Proc(self.fresh("latency"), [os.path.join(self.bb, "exec_latency"), "--victim", self.victim, "--token-file",
                                           self.token_file, "--count", str(victims), "--interval-ms", "20",
                                           "--exit-probe"], self.tmp)
        rc = lat.p.wait()
        lat.stop()
        storm_row = None
        if st:
            st.stop()
            storm_row = next((r for r in st.jsonl() if r.get("what") == "storm"), None)
        # Stats land every second: let one more arrive before the tap stops.
        if killer != "floor":
            time.sleep(1.5)
        for p in reversed(procs):
            p.stop()
        if rc != 0:
            raise SystemExit(f"exec_latency failed: {lat.stderr_tail()}")
        victims_rows = [r for r in lat.jsonl() if "pid" in r]
        lat_summary = next(r for r in lat.jsonl() if r.get("what") == "latency-summary")
        killer_rows = procs[0].jsonl() if killer == "floor" else procs[-1].jsonl()
        if killer == "floor":
            events = [r for r in killer_rows if "pid" in r]
            ksum = next((r for r in killer_rows if r.get("what") == "floor-summary"), {})
        else:
            events = [dict(r, read_boot_ns=r["received_boot_ns"], sent_boot_ns=r["killed_boot_ns"])
                      for r in killer_rows if r.get("what") == "decision" and r["action"] == "killed"]
            ksum = {"stats": [r for r in killer_rows if r.get("what") == "stats"],
                    "tap": next((r for r in killer_rows if r.get("what") == "tap-summary"), {})}
        by_pid = {}
        for e in events:
            by_pid.setdefault(e["pid"], []).append(e)
        read, sent, dead, exited = [], [], [], []
        hops = {"collector": [], "transport": [], "decide": [], "kill_syscalls": []}
        unmatched = 0
        for v in victims_rows:
            if not v["sigkill"]:
                continue
            cands = [e for e in by_pid.get(v["pid"], []) if v["spawn_boot_ns"] <= e["exec_boot_ns"] <= v["dead_boot_ns"]]
            if not cands:
                unmatched += 1
                continue
            e = cands[0]
            x = e["exec_boot_ns"]
            read.append((e["read_boot_ns"] - x) / 1e3)
            sent.append((e["sent_boot_ns"] - x) / 1e3)
            dead.append((v["dead_boot_ns"] - x) / 1e3)
            if v.get("exit_boot_ns"):
                exited.append((v["exit_boot_ns"] - x) / 1e3)
            # The collector's publish time, carried by the decision (eventSentBootNs).
            pub = e.get("event_sent_boot_ns")
            if pub:
                hops["collector"].append((pub - x) / 1e3)
                hops["transport"].append((e["read_boot_ns"] - pub) / 1e3)
            if killer != "floor":
                hops["decide"].append((e["decided_boot_ns"] - e["received_boot_ns"]) / 1e3)
                hops["kill_syscalls"].append((e["killed_boot_ns"] - e["decided_boot_ns"]) / 1e3)
        row = {"what": "latency", "killer": killer, "storm": storm, "rt": variant, "round": rnd, "victims": victims,
               "killed": lat_summary["killed"], "survived": lat_summary["survived"], "unmatched": unmatched,
               "read_us": summary(read), "sent_us": summary(sent), "dead_us": summary(dead),
               "exit_us": summary(exited),
               "collector_us": summary(hops["collector"]), "transport_us": summary(hops["transport"]),
               "decide_us": summary(hops["decide"]), "kill_syscalls_us": summary(hops["kill_syscalls"]),
               "storm_rate": storm_row["rate"] if storm_row else 0, "killer_summary": ksum, "loadavg": loadavg()}
        append_jsonl(os.path.join(self.out, "latency.jsonl"), row)
        if self.args.smoke and (row["survived"] or row["killed"] != victims):
            raise SystemExit(f"{killer}: {row['survived']} of {victims} victims were not killed")
        log(f"latency {killer} storm={storm} variant={variant} round={rnd}: exec->dead p50 {row['dead_us'].get('p50', 0):.0f} "
            f"p99 {row['dead_us'].get('p99', 0):.0f} µs; exec->exit p50 {row['exit_us'].get('p50', 0):.0f} "
            f"p99 {row['exit_us'].get('p99', 0):.0f} µs; exec->sent p50 {row['sent_us'].get('p50', 0):.0f} µs; "
            f"storm {row['storm_rate']:.0f}/s; killed {row['killed']}/{victims}")
        return row

    def part2(self):
        a = self.args
        # The kill path alone: the enforcer's pidfd sequence against a bare kill(2), on a
        # settled victim, then as the pipeline meets one (fresh, own programs protected).
        for mode, extra in (("settled", []), ("fresh+protect", ["--settle-us", "400", "--protect-own"])):
            kp = Proc(self.fresh("killpath"), [os.path.join(self.bb, "kill_path"), "--victim", self.victim, "--count",
                                               "40" if a.smoke else "400", *extra], self.tmp)
            kp.p.wait()
            kp.stop()
            for r in kp.jsonl():
                r.update({"mode": mode, "loadavg": loadavg()})
                append_jsonl(os.path.join(self.out, "killpath.jsonl"), r)
        # One process hop alone: cryptnono's ZeroMQ transport against a bare unix socket.
        for variant in ("plain", "pin+rt"):
            hb = Proc(self.fresh("hop"), self.prefix(variant) + [os.path.join(self.bb, "hop_bench"), "--mode", "all", "--count",
                                                                 "40" if a.smoke else "400", "--dir", self.tmp],
                      self.tmp)
            hb.p.wait()
            hb.stop()
            for r in hb.jsonl():
                r.update({"variant": variant, "loadavg": loadavg()})
                append_jsonl(os.path.join(self.out, "hop.jsonl"), r)
        for rnd in range(a.rounds):
            for variant in a.variants.split(","):
                for storm in (False, True):
                    for killer in ("floor", "pipeline"):
                        self.latency_scenario(killer, storm, variant, a.victims, rnd)

    def paced_bpf_cost(self, consumers, prog_prefix, seconds):
        """BPF run time per exec of the programs named prog_prefix* at 200 execs/s, twice:
        with `consumers` (the processes reading their ring buffers: the floor, or the
        collector and the enforcer holding the kernel ring) running, so every record wakes
        one, and with them stopped (SIGSTOP), so none does."""
        for mode in ("wakeup", "no-wakeup"):
            if mode == "no-wakeup":
                for consumer in consumers:
                    os.kill(consumer.pid, signal.SIGSTOP)
            bpf0 = {r["id"]: r for r in self.bpf_prog_stats(prog_prefix)}
            st = self.storm(seconds=seconds, workers=1, rate=200)
            st.p.wait()
            st.stop()
            bpf1 = {r["id"]: r for r in self.bpf_prog_stats(prog_prefix)}
            if mode == "no-wakeup":
                for consumer in consumers:
                    os.kill(consumer.pid, signal.SIGCONT)
            for prog_id, r in bpf1.items():
                r0 = bpf0.get(prog_id, {"run_time_ns": 0, "run_cnt": 0})
                cnt = r["run_cnt"] - r0["run_cnt"]
                if cnt > 0:
                    append_jsonl(os.path.join(self.out, "cost.jsonl"),
                                 {"what": "bpf-paced", "mode": mode, "name": r["name"], "runs": cnt,
                                  "ns_per_run": (r["run_time_ns"] - r0["run_time_ns"]) / cnt, "loadavg": loadavg()})

    def probe_parts(self, seconds, rounds):
        pp = Proc(self.fresh("probe-parts"), [os.path.join(self.bb, "probe_parts"), "--objects", self.bb,
                                              "--banned", self.banned, "--seconds", str(seconds), "--rounds",
                                              str(rounds)], self.tmp)
        if pp.p.wait() != 0:
            raise RuntimeError(f"probe_parts failed: {pp.stderr_tail()}")
        pp.stop()
        for r in pp.jsonl():
            if r.get("what") == "probe-parts":
                r["loadavg"] = loadavg()
                append_jsonl(os.path.join(self.out, "cost.jsonl"), r)
                log(f"probe part {r['build']}: {r['ns_per_run']:.0f} ns per exec ({r['min']:.0f}-{r['max']:.0f})")

    # --- part 3 ----------------------------------------------------------------------
    def metrics(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError as e:
            return f"# error: {e}"

    def part3(self):
        seconds = 3 if self.args.smoke else self.args.throughput_s
        procs = self.start_pipeline(self.args.agent_variant, exporter=True)
        time.sleep(1.0)
        cpu0 = {p.name.split("-")[0]: p.cpu_s() for p in procs}
        st = self.storm(seconds=seconds, workers=self.max_rate_workers())
        st.p.wait()
        st.stop()
        storm_row = next(r for r in st.jsonl() if r.get("what") == "storm")
        time.sleep(2.5)  # two more stats rounds, so the last counters include the storm's tail
        cpu1 = {p.name.split("-")[0]: p.cpu_s() for p in procs}
        hwm = {p.name.split("-")[0]: p.hwm_kib() for p in procs}
        metrics = self.metrics()
        for p in reversed(procs):
            p.stop()
        tap = procs[-1].jsonl()
        stats = {r["kind"]: r["counters"] for r in tap if r.get("what") == "stats"}
        lost = [(m.group(0)) for m in re.finditer(r"^\w*messages_lost_total\{[^}]*\} \S+$", metrics, re.M)]
        exp_lost = sum(float(line.rsplit(" ", 1)[1]) for line in lost)
        row = {"what": "throughput", "seconds": storm_row["seconds"], "execs": storm_row["execs"],
               "workers": storm_row["workers"], "exe": os.path.basename(self.storm_exe),
               "rate": storm_row["rate"], "collector": stats.get("collector", {}), "enforcer": stats.get("enforcer", {}),
               "exporter_messages_lost": exp_lost, "exporter_lost_lines": lost,
               "tap": next((r for r in tap if r.get("what") == "tap-summary"), {}),
               "cpu_s": {k: cpu1[k] - cpu0[k] for k in cpu1}, "hwm_kib": hwm, "loadavg": loadavg()}
        append_jsonl(os.path.join(self.out, "throughput.jsonl"), row)
        c, e = row["collector"], row["enforcer"]
        log(f"throughput: {row['rate']:.0f} execs/s for {row['seconds']:.0f} s; collector events_bpf "
            f"{c.get('events_bpf')} ringbuf_drops {c.get('kernel_ringbuf_drops')} kernel_ring_drops "
            f"{c.get('kernel_ring_drops')} follow_laps {c.get('kernel_ring_follow_laps')} send_drops "
            f"{c.get('send_drops')}; enforcer received "
            f"{e.get('events_received')} (kernel ring {e.get('ring_events')}) lost {e.get('events_lost')}; "
            f"exporter lost {exp_lost}")

    # --- part 4 ----------------------------------------------------------------------
    def bpf_prog_stats(self, name_prefix):
        out = subprocess.run(["bpftool", "-j", "prog", "show"], stdout=subprocess.PIPE, text=True).stdout
        rows = []
        for p in json.loads(out or "[]"):
            if p.get("name", "").startswith(name_prefix):
                rows.append({"id": p["id"], "name": p["name"], "run_time_ns": p.get("run_time_ns", 0),
                             "run_cnt": p.get("run_cnt", 0)})
        return rows

    def part4(self):
        a = self.args
        seconds = 2 if a.smoke else a.cost_s
        reps = 1 if a.smoke else a.cost_reps
        stats_path = "/proc/sys/kernel/bpf_stats_enabled"
        with open(stats_path) as f:
            old_stats = f.read().strip()
        try:
            with open(stats_path, "w") as f:
                f.write("1")
            for rep in range(reps):
                # Without the agent.
                st = self.storm(seconds=seconds, workers=self.max_rate_workers())
                st.p.wait()
                st.stop()
                base = next(r for r in st.jsonl() if r.get("what") == "storm")
                append_jsonl(os.path.join(self.out, "cost.jsonl"),
                             {"what": "storm", "agent": False, "rep": rep, "rate": base["rate"], "execs": base["execs"],
                              "workers": base["workers"], "exe": os.path.basename(self.storm_exe),
                              "seconds": base["seconds"], "loadavg": loadavg()})
                # With the floor: the least any user-space killer that hears of every exec
                # costs (its probe, and waking it for each exec).
                floor = self.start_floor("plain")
                st = self.storm(seconds=seconds, workers=self.max_rate_workers())
                st.p.wait()
                st.stop()
                for p in floor:
                    p.stop()
                fl = next(r for r in st.jsonl() if r.get("what") == "storm")
                append_jsonl(os.path.join(self.out, "cost.jsonl"),
                             {"what": "storm-floor", "rep": rep, "rate": fl["rate"], "execs": fl["execs"],
                              "seconds": fl["seconds"], "loadavg": loadavg()})
                # With the agent (collector, enforcer with the big list, exporter) and nothing
                # else: the bench's decision tap would be a fourth subscriber to pay for.
                procs = self.start_pipeline(self.args.agent_variant, exporter=True, tap=False)
                # Steady state: the enforcer serves its first config from two halves compiled at
                # once and rebuilds it whole in the background (about 5 s of CPU at 100,000
                # strings, once per start; timed in part 1); the cost measured here is what every
                # exec costs after that. Before 2026-11-29 17:00 the storm began 1 s after the
                # start, with that rebuild running (the slowdowns reported until then include it).
                enforcer = next(p for p in procs if p.name.startswith("enforcer"))
                with open(enforcer.err_path) as f:
                    halves = "in two halves" in f.read()
                if halves:
                    enforcer.wait_for(r"rebuilt whole in the background", 120)
                time.sleep(1.0)
                names = [p.name.split("-")[0] for p in procs]
                cpu0 = [p.cpu_s() for p in procs]
                bpf0 = {r["id"]: r for r in self.bpf_prog_stats("exec_")}
                st = self.storm(seconds=seconds, workers=self.max_rate_workers())
                st.p.wait()
                st.stop()
                withagent = next(r for r in st.jsonl() if r.get("what") == "storm")
                time.sleep(1.5)
                cpu1 = [p.cpu_s() for p in procs]
                hwm = [p.hwm_kib() for p in procs]
                rss = [p.rss_kib() for p in procs]
                bpf1 = {r["id"]: r for r in self.bpf_prog_stats("exec_")}
                for p in reversed(procs):
                    p.stop()
                bpf = []
                for pid_, r in bpf1.items():
                    r0 = bpf0.get(pid_, {"run_time_ns": 0, "run_cnt": 0})
                    cnt = r["run_cnt"] - r0["run_cnt"]
                    if cnt > 0:
                        bpf.append({"name": r["name"], "runs": cnt,
                                    "ns_per_run": (r["run_time_ns"] - r0["run_time_ns"]) / cnt})
                append_jsonl(os.path.join(self.out, "cost.jsonl"),
                             {"what": "storm", "agent": True, "rep": rep, "rate": withagent["rate"],
                              "execs": withagent["execs"], "seconds": withagent["seconds"],
                              "stages": {n: {"cpu_s": c1 - c0, "hwm_kib": h, "rss_kib": r}
                                         for n, c0, c1, h, r in zip(names, cpu0, cpu1, hwm, rss)},
                              "bpf": bpf, "loadavg": loadavg()})
                log(f"cost rep {rep}: {base['rate']:.0f}/s without, {withagent['rate']:.0f}/s with the agent; bpf {bpf}")
            # BPF time per exec at 200 execs/s: the collector is idle between execs, so
            # (adaptive wake-up) every record wakes it. Then the same with the collector
            # stopped (SIGSTOP): it never catches up, so no record wakes it: the
            # difference is what the wake-up costs inside the program.
            procs = self.start_pipeline(self.args.agent_variant)
            time.sleep(1.0)
            self.paced_bpf_cost(procs[:2], "exec_", seconds)
            time.sleep(1.0)
            for p in reversed(procs):
                p.stop()
            # The same for the floor's minimal program: what any exec probe costs here.
            procs = self.start_floor("plain")
            self.paced_bpf_cost(procs[:1], "floor_", seconds)
            for p in procs:
                p.stop()
            # Where the probe's own time goes: builds of it with parts left out, side by
            # side on the same execs (bench/latency/probe_parts.cpp).
            self.probe_parts(seconds=1 if a.smoke else max(2, seconds // 3), rounds=2 if a.smoke else 9)
        finally:
            with open(stats_path, "w") as f:
                f.write(old_stats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="2,3,4")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--victims", type=int, default=400)
    ap.add_argument("--variants", default="plain,sock,zmq,pin,rt,pin+rt",
                    help="variants for part 2: scheduling (plain, rt, pin, pin+rt from outside; flags: pin + "
                         "SCHED_FIFO through the programs' own --cpus/--rt-priority), sock (plain, the direct socket "
                         "without the kernel ring), now (plain, killed decisions published at once), nowait (plain, "
                         "no wait for a killed process to exit), nofilter (plain, --wake-filter false: every exec wakes "
                         "the enforcer) and zmq (plain, direct path off)")
    ap.add_argument("--agent-variant", default="plain", help="variant of the agent in parts 3 and 4 (as --variants)")
    ap.add_argument("--storm-exe", default="", help="program the exec storms start (default: BUILD/bench/cnb-exit0)")
    ap.add_argument("--throughput-s", type=int, default=60)
    ap.add_argument("--cost-s", type=int, default=10)
    ap.add_argument("--cost-reps", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run_pipeline.py needs root (BPF, killing its own victims)")
    if args.smoke:
        args.rounds, args.victims, args.variants = 1, 20, "plain"
    os.makedirs(args.out, exist_ok=True)
    b = Bench(args)
    parts = args.parts.split(",")
    try:
        if "2" in parts:
            b.part2()
        if "3" in parts:
            b.part3()
        if "4" in parts:
            b.part4()
    except BaseException:
        log("the stages' logs are kept in", b.tmp)
        raise
    shutil.rmtree(b.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
