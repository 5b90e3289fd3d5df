#!/usr/bin/python3
"""Part 1 of the benchmarks: the matcher, side by side with the cryptnono reference.

For each banned-list size, the C++ harness (matcher_bench: the enforcer's real decision
path) and the Python reference (ref_bench.py) run one after the other on the same
generated inputs, in alternating rounds, so both see the same machine state. Then: each step of the C++ path
alone (--breakdown), the database build time and memory (each in a fresh process), and
the real cryptnono-enforcer's RSS with 100,000 strings, before and after a live reload.

  run_matcher.py --build BUILD --out OUT [--smoke] [--rounds 3] [--reloads 3] [--only-enforcer-rss]

Writes OUT/matcher.jsonl, OUT/matcher-breakdown.jsonl, OUT/matcher-build.jsonl,
OUT/enforcer-rss.jsonl (report.py turns them into tables).
"""
import argparse
import os
import re
import statistics
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchutil import BENCH_DIR, append_jsonl, loadavg, log, run_jsonl, status_kib  # noqa: E402

PY = "/usr/bin/python3"  # Debian's: python3-ahocorasick is installed for it


def enforcer_rss(build, data, out, tmp, reloads=3):
    """Starts cryptnono-enforcer with 100,000 strings + 5 patterns, reads its memory once it
    runs, then `reloads` times rewrites the config (one more string each time) to force a
    live reload and reads it again. The first reload's figures keep their original keys;
    every reload's are in the *_all lists."""
    banned = os.path.join(tmp, "banned.json")
    with open(os.path.join(data, "banned-100000.json")) as f:
        text = f.read()
    with open(banned, "w") as f:
        f.write(text)
    cmd = [os.path.join(build, "bin", "cryptnono-enforcer"), "--config", banned, "--config",
           os.path.join(data, "allowed-5.json"), "--connect", f"ipc://{tmp}/nobody.sock",
           "--bind", f"ipc://{tmp}/enforcer.sock", "--dry-run", "--stats-interval", "1"]
    log("$", " ".join(cmd))
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    result = {"what": "enforcer-rss", "banned": 100000, "allowed": 5}
    try:
        compiled = None
        halves = False
        for line in p.stderr:
            m = re.search(r"loaded .*compiled in (\d+) ms", line)
            if m:
                compiled = int(m.group(1))
                halves = "rebuilt in the background" in line
            if "enforcer running" in line:
                break
        # "enforcer running" comes after the enforcer's wait for a decision subscriber
        # (--wait-for-subscriber-seconds, 2 s by default; this run has none).
        result["startup_s"] = time.monotonic() - t0
        result["startup_compile_ms"] = compiled
        if halves:
            # Compiled in two halves: the steady state is after the whole rebuild.
            for line in p.stderr:
                m = re.search(r"rebuilt whole.*compiled in (\d+) ms", line)
                if m:
                    result["startup_rebuild_ms"] = int(m.group(1))
                    break
        time.sleep(1.0)
        result["rss_kib"] = status_kib(p.pid, "VmRSS")
        result["hwm_start_kib"] = status_kib(p.pid, "VmHWM")
        # Per reload: when the new rules were in force (the enforcer's own figure, from
        # reading the changed files to handing the matcher over), how long the whole
        # rebuild took (in the background when the reload was layered, else the reload
        # itself), and the memory once both are done.
        for key in ("reload_in_force_ms_all", "reload_compile_ms_all", "reload_layered_all",
                    "rss_after_reload_kib_all", "hwm_after_reload_kib_all"):
            result[key] = []
        result["reload_kind_all"] = []
        for k in range(reloads + 1):
            if k < reloads:
                # A live reload: the same list plus one string at its front.
                kind = "one added"
                marker = '"bannedCommandStrings": ["benchreloadmarker%d",' % k
                new_text = text.replace('"bannedCommandStrings": [', marker, 1)
            else:
                # Then one that replaces every string (each gets a suffix).
                kind = "all replaced"
                new_text = re.sub(r'"(,?\s*\n)', r'zq"\1', text.split('"bannedCommandStrings": [', 1)[1])
                new_text = text.split('"bannedCommandStrings": [', 1)[0] + '"bannedCommandStrings": [' + new_text
            result["reload_kind_all"].append(kind)
            with open(banned + ".new", "w") as f:
                f.write(new_text)
            os.rename(banned + ".new", banned)
            t1 = time.monotonic()
            in_force = compiled = None
            layered = False
            for line in p.stderr:
                m = re.search(r"config reloaded.*in force (\d+) ms", line)
                if m:
                    in_force = int(m.group(1))
                    layered = "rebuilt in the background" in line
                    if k == 0:
                        result["reload_seen_s"] = time.monotonic() - t1
                    if layered:
                        continue  # the whole rebuild follows
                    break
                m = re.search(r"(config reloaded|rebuilt whole).*compiled in (\d+) ms", line)
                if m:
                    compiled = int(m.group(2))
                    if in_force is None:
                        in_force = compiled  # compiled whole: in force once compiled
                        if k == 0:
                            result["reload_seen_s"] = time.monotonic() - t1
                    break
                if "reload refused" in line or "rebuilding the config database whole failed" in line:
                    result["reload_error"] = line.strip()
                    break
            time.sleep(1.0)
            result["reload_in_force_ms_all"].append(in_force)
            result["reload_compile_ms_all"].append(compiled)
            result["reload_layered_all"].append(layered)
            result["rss_after_reload_kib_all"].append(status_kib(p.pid, "VmRSS"))
            result["hwm_after_reload_kib_all"].append(status_kib(p.pid, "VmHWM"))
            if "reload_error" in result:
                break
        for key in ("reload_in_force_ms", "reload_compile_ms"):
            values = [v for v, kind in zip(result[key + "_all"], result["reload_kind_all"])
                      if v is not None and kind == "one added"]
            if values:
                result[key] = statistics.median(values)
            if len(result[key + "_all"]) > reloads:
                result[key.replace("reload", "replace")] = result[key + "_all"][reloads]
        result["rss_after_reload_kib"] = max(result["rss_after_reload_kib_all"] or [0])
        result["hwm_kib"] = status_kib(p.pid, "VmHWM")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    result["exit_code"] = p.returncode
    result["loadavg"] = loadavg()
    append_jsonl(out, result)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reloads", type=int, default=3, help="live reloads in the enforcer RSS measure")
    ap.add_argument("--only-enforcer-rss", action="store_true",
                    help="only the real enforcer's memory at start-up and after --reloads reloads")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    data = os.path.join(out, "matcher-data")
    here = os.path.join(BENCH_DIR, "matcher")
    cpp = os.path.join(build, "bench", "matcher_bench")

    if args.smoke:
        sizes, rounds, reps, rep_ms, build_reps = ["1000"], 1, "1", "1", 1
        cases = ["--cases", "short-nohit,short-hit,4k-glued,64k-hit"]
    else:
        sizes, rounds, reps, rep_ms, build_reps = ["1000", "10000", "100000"], args.rounds, "5", "20", 3
        cases = []
    if args.only_enforcer_rss:
        subprocess.run([PY, os.path.join(here, "gen_inputs.py"), data, "--counts", "100000"], check=True)
        with tempfile.TemporaryDirectory(prefix="cryptnono-bench-") as tmp:
            enforcer_rss(build, data, os.path.join(out, "enforcer-rss.jsonl"), tmp, args.reloads)
        return
    subprocess.run([PY, os.path.join(here, "gen_inputs.py"), data, "--counts", ",".join(sizes)], check=True)

    # Rounds alternate the two sides (C++, Python, C++, Python, ...) so that both see the
    # same share of whatever else this shared machine is doing; report.py compares them
    # round by round.
    for rnd in range(rounds):
        for n in sizes:
            run_jsonl([cpp, data, "--banned", n, "--allowed", "0,5", "--reps", reps, "--min-rep-ms", rep_ms]
                      + cases, os.path.join(out, "matcher.jsonl"), {"loadavg": loadavg(), "round": rnd})
            run_jsonl([PY, os.path.join(here, "ref_bench.py"), data, "--banned", n, "--allowed", "0,5", "--reps", reps,
                       "--min-rep-ms", rep_ms] + cases, os.path.join(out, "matcher.jsonl"),
                      {"loadavg": loadavg(), "round": rnd})
    big = sizes[-1]
    # Released cryptnono's word rule (two re.search over the whole line per occurrence).
    run_jsonl([PY, os.path.join(here, "ref_bench.py"), data, "--banned", big, "--allowed", "5", "--reps", reps,
               "--min-rep-ms", rep_ms, "--boundary", "upstream"] + cases, os.path.join(out, "matcher.jsonl"),
              {"loadavg": loadavg(), "round": 0})
    run_jsonl([cpp, data, "--banned", big, "--allowed", "5", "--reps", reps, "--min-rep-ms", rep_ms, "--breakdown"] + cases,
              os.path.join(out, "matcher-breakdown.jsonl"), {"loadavg": loadavg()})
    for n in sizes:
        for _ in range(build_reps):
            run_jsonl([cpp, data, "--build-only", n, "--with-allowed"], os.path.join(out, "matcher-build.jsonl"),
                      {"loadavg": loadavg()})
            run_jsonl([PY, os.path.join(here, "ref_bench.py"), data, "--build-only", n],
                      os.path.join(out, "matcher-build.jsonl"), {"loadavg": loadavg()})
    if not args.smoke:
        with tempfile.TemporaryDirectory(prefix="cryptnono-bench-") as tmp:
            enforcer_rss(build, data, os.path.join(out, "enforcer-rss.jsonl"), tmp, args.reloads)


if __name__ == "__main__":
    main()
