#!/usr/bin/python3
"""Times the cryptnono reference (bench/reference/cryptnono_kill_if_needed.py) on the
matcher benchmark's inputs (gen_inputs.py) and prints one JSON object per line, in the
same shape as matcher_bench (the C++ side), so report.py can put them side by side.

Timed per call: shlex.join(argv) + kill_if_needed (casefold, automaton, allowed patterns,
word rule; the kill is a no-op). argv is decoded from the event bytes beforehand, as
upstream's ring-buffer callback does argument by argument before joining.

Must run with Debian's /usr/bin/python3 (python3-ahocorasick is installed for it).

  ref_bench.py DATA [--banned 1000,10000,100000] [--allowed 0,5] [--cases short-nohit,...]
               [--reps 15] [--min-rep-ms 20] [--boundary occurrence|upstream]
  ref_bench.py DATA --build-only N    # automaton build time and memory for N strings
"""
import argparse
import gc
import json
import os
import shlex
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import cryptnono_kill_if_needed as ref  # noqa: E402


def rss_kib(field="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def load_list(path, key):
    with open(path) as f:
        return json.load(f).get(key, [])


def load_case(data, name):
    with open(os.path.join(data, "cases", name + ".argv"), "rb") as f:
        area = f.read()
    if area.endswith(b"\0"):
        area = area[:-1]
    return [a.decode("utf-8", "surrogateescape") for a in area.split(b"\0")]


def timer_overhead_ns():
    pc = time.perf_counter_ns
    d = []
    for _ in range(10000):
        a = pc()
        b = pc()
        d.append(b - a)
    return statistics.median(d)


def percentile(values, q):
    v = sorted(values)
    if not v:
        return 0.0
    k = min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))
    return float(v[k])


def bench_case(fn, reps, min_rep_ms, overhead):
    """As matcher_bench's bench(): each repetition times calls_per_rep calls one by one
    (perf_counter_ns, its median overhead subtracted); reported: the median of the
    repetitions' median call, their min-max, and the p99 of every call."""
    pc = time.perf_counter_ns
    fn()
    n = 1
    while True:
        t0 = pc()
        for _ in range(n):
            fn()
        if pc() - t0 >= min_rep_ms * 1e6 or n >= 1 << 17:
            break
        n *= 2
    medians = []
    every = []
    for _ in range(reps):
        rep = []
        for _ in range(n):
            t0 = pc()
            fn()
            rep.append(max(0.0, pc() - t0 - overhead))
        medians.append(statistics.median(rep))
        every.extend(rep)
    return {
        "median_ns": statistics.median(medians),
        "min_ns": min(medians),
        "max_ns": max(medians),
        "p99_ns": percentile(every, 0.99),
        "calls_per_rep": n,
        "reps": reps,
        "samples": len(every),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--banned", default="1000,10000,100000")
    ap.add_argument("--allowed", default="0,5")
    ap.add_argument("--cases", default="")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--min-rep-ms", type=float, default=20)
    ap.add_argument("--boundary", default="occurrence", choices=["occurrence", "upstream"])
    ap.add_argument("--build-only", type=int, default=0)
    args = ap.parse_args()

    if args.build_only:
        banned = load_list(os.path.join(args.data, f"banned-{args.build_only}.json"), "bannedCommandStrings")
        gc.collect()
        before = rss_kib()
        t0 = time.perf_counter()
        automaton = ref.build_automaton(banned)
        build_s = time.perf_counter() - t0
        gc.collect()
        print(json.dumps({"impl": "python-ref", "what": "build", "banned": args.build_only, "build_s": build_s,
                          "rss_before_kib": before, "rss_after_kib": rss_kib(), "hwm_kib": rss_kib("VmHWM"),
                          "automaton_kib": automaton.get_stats()["total_size"] // 1024}), flush=True)
        return

    with open(os.path.join(args.data, "manifest.json")) as f:
        manifest = json.load(f)
    cases = [c for c in manifest["cases"] if not args.cases or c["name"] in args.cases.split(",")]
    overhead = timer_overhead_ns()
    allowed_all = load_list(os.path.join(args.data, "allowed-5.json"), "allowedCommandPatterns")
    for n_banned in [int(x) for x in args.banned.split(",") if x]:
        banned = load_list(os.path.join(args.data, f"banned-{n_banned}.json"), "bannedCommandStrings")
        automaton = ref.build_automaton(banned)
        for n_allowed in [int(x) for x in args.allowed.split(",") if x]:
            allowed = allowed_all[:n_allowed]
            for case in cases:
                argv = load_case(args.data, case["name"])
                join = shlex.join
                boundary = args.boundary

                def call(argv=argv, allowed=allowed):
                    return ref.kill_if_needed(automaton, allowed, join(argv), 4242, boundary=boundary)

                verdict = call()[0]
                r = bench_case(call, args.reps, args.min_rep_ms, overhead)
                r.update({"impl": "python-ref" if boundary == "occurrence" else "python-upstream",
                          "banned": n_banned, "allowed": n_allowed, "case": case["name"], "size": case["size"],
                          "kind": case["kind"], "bytes": len(join(argv).encode("utf-8", "surrogateescape")),
                          "verdict": verdict, "expect": case["expect"], "timer_overhead_ns": overhead})
                print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
