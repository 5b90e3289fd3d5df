#!/usr/bin/python3
"""Turns the JSON lines the benchmark drivers wrote into Markdown tables (stdout).

  report.py OUT
"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import read_jsonl  # noqa: E402

SIZE_ORDER = {"short": 0, "4k": 1, "64k": 2}
KIND_ORDER = {"nohit": 0, "hit": 1, "glued": 2}


def ns(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.1f} µs"
    return f"{v:.0f} ns"


def us(v_ns):
    return f"{v_ns / 1e3:.0f}" if v_ns >= 10e3 else f"{v_ns / 1e3:.1f}"


def matcher(out):
    rows = read_jsonl(os.path.join(out, "matcher.jsonl"))
    if not rows:
        return
    # Several rounds of each side: combine them. Median: median of the rounds' medians;
    # p99: median of the rounds' p99; min-max: over every repetition median of every round
    # (run-to-run spread); speed-up: median over rounds of the round's ratio.
    groups = {}
    for r in rows:
        groups.setdefault((r["impl"], int(r["banned"]), r["allowed"], r["case"]), []).append(r)

    def combine(rs):
        c = dict(rs[0])
        c["median_ns"] = statistics.median(r["median_ns"] for r in rs)
        c["p99_ns"] = statistics.median(r["p99_ns"] for r in rs)
        c["min_ns"] = min(r["min_ns"] for r in rs)
        c["max_ns"] = max(r["max_ns"] for r in rs)
        c["verdicts"] = {r["verdict"] for r in rs}
        c["rounds"] = len(rs)
        return c

    by = {k: combine(v) for k, v in groups.items()}

    def ratio(k):
        c = {r.get("round", 0): r for r in groups.get(("cryptnono-cpp",) + k, [])}
        p = {r.get("round", 0): r for r in groups.get(("python-ref",) + k, [])}
        rs = [p[i]["median_ns"] / c[i]["median_ns"] for i in c if i in p]
        return (statistics.median(rs), min(rs), max(rs)) if rs else None

    keys = sorted({k[1:] for k in groups if k[0] == "cryptnono-cpp"},
                  key=lambda k: (k[0], k[1], SIZE_ORDER[k[2].split("-")[0]], KIND_ORDER[k[2].split("-")[1]]))
    nrounds = max(len(v) for v in groups.values())
    print(f"### Matcher: time per command line ({nrounds} alternating rounds per side; median of the rounds' "
          "medians, p99 of all calls, min–max of every repetition's median; speed-up = median of the per-round "
          "ratios, min–max in brackets)\n")
    print("| banned | allowed | case | bytes | cryptnono (C++) | GB/s | reference (Python) | speed-up |")
    print("|---:|---:|---|---:|---|---:|---|---:|")
    bad = []
    for k in keys:
        c = by.get(("cryptnono-cpp",) + k)
        p = by.get(("python-ref",) + k)
        if c["verdicts"] != {c["expect"]}:
            bad.append(("cryptnono-cpp",) + k)
        if p and p["verdicts"] != {p["expect"]}:
            bad.append(("python-ref",) + k)
        cs = f"{ns(c['median_ns'])} (p99 {ns(c['p99_ns'])}; {ns(c['min_ns'])}–{ns(c['max_ns'])})"
        gbs = c["bytes"] / c["median_ns"]
        ps = f"{ns(p['median_ns'])} (p99 {ns(p['p99_ns'])}; {ns(p['min_ns'])}–{ns(p['max_ns'])})" if p else "–"
        rt = ratio(k)
        rs = f"**{rt[0]:.1f}×** ({rt[1]:.1f}–{rt[2]:.1f})" if rt else "–"
        print(f"| {k[0]:,} | {k[1]} | {k[2]} | {c['bytes']:,} | {cs} | {gbs:.2f} | {ps} | {rs} |")
    print()
    up = [r for r in rows if r["impl"] == "python-upstream"]
    if up:
        print("Released cryptnono's word rule (two `re.search` over the whole line for each occurrence, "
              "stop at the first glued one), same inputs:\n")
        print("| banned | allowed | case | reference, upstream word rule | vs C++ |")
        print("|---:|---:|---|---|---:|")
        for r in sorted(up, key=lambda r: (SIZE_ORDER[r["size"]], KIND_ORDER[r["kind"]])):
            c = by.get(("cryptnono-cpp", int(r["banned"]), r["allowed"], r["case"]))
            print(f"| {int(r['banned']):,} | {r['allowed']} | {r['case']} | {ns(r['median_ns'])} (p99 {ns(r['p99_ns'])}) "
                  f"| {r['median_ns'] / c['median_ns']:.1f}× |")
        print()
    if bad:
        print("**Verdict mismatches:** " + ", ".join(map(str, bad)) + "\n")
    else:
        print("Every verdict matched the expected one on both sides (hit → killed, nohit/glued → no kill).\n")
    loads = sorted({tuple(r.get("loadavg", [])) for r in rows})
    if loads:
        print(f"Load average while these ran: {min(l[0] for l in loads if l):.2f}–{max(l[0] for l in loads if l):.2f} "
              "(1-minute).\n")

    bd = read_jsonl(os.path.join(out, "matcher-breakdown.jsonl"))
    if bd:
        print("### Matcher: where the C++ time goes (each step timed alone, median ns)\n")
        print("| banned | allowed | case | whole decide() | shlex join | casefold | Vectorscan scan | 5 RE2 allowed |")
        print("|---:|---:|---|---:|---:|---:|---:|---:|")
        for r in sorted(bd, key=lambda r: (SIZE_ORDER[r["size"]], KIND_ORDER[r["kind"]])):
            print(f"| {int(r['banned']):,} | {r['allowed']} | {r['case']} | {ns(r['median_ns'])} | {ns(r['join_ns'])} | "
                  f"{ns(r['casefold_ns'])} | {ns(r['scan_ns'])} | {ns(r['allowed_ns'])} |")
        print()

    b = read_jsonl(os.path.join(out, "matcher-build.jsonl"))
    if b:
        print("### Database build (fresh process each; median of runs, min–max)\n")
        print("| banned | cryptnono: parse | cryptnono: build (casefold, dedupe, Vectorscan, RE2) | database | RSS after "
              "| peak RSS during build | reference: automaton build | reference: RSS after |")
        print("|---:|---:|---|---:|---:|---:|---|---:|")
        for n in sorted({int(r["banned"]) for r in b}):
            c = [r for r in b if r["impl"] == "cryptnono-cpp" and int(r["banned"]) == n]
            p = [r for r in b if r["impl"] == "python-ref" and int(r["banned"]) == n]

            def med(xs, k):
                v = sorted(x[k] for x in xs)
                return v[len(v) // 2]

            def rng(xs, k):
                v = sorted(x[k] for x in xs)
                return f"{med(xs, k):.2f} s ({v[0]:.2f}–{v[-1]:.2f})"

            print(f"| {n:,} | {med(c, 'parse_s'):.2f} s | {rng(c, 'build_s')} | {med(c, 'database_kib') / 1024:.1f} MiB | "
                  f"{med(c, 'rss_after_kib') / 1024:.0f} MiB | {med(c, 'hwm_kib') / 1024:.0f} MiB | {rng(p, 'build_s')} | "
                  f"{med(p, 'rss_after_kib') / 1024:.0f} MiB |")
        print()



def enforcer_memory(out):
    e = read_jsonl(os.path.join(out, "enforcer-rss.jsonl"))
    for r in e:
        print("### cryptnono-enforcer with 100,000 banned strings + 5 allowed patterns (real binary, idle)\n")
        kinds = r.get("reload_kind_all", [])
        n = sum(1 for k in kinds if k == "one added")
        print(f"Live reloads: {n} adding one string each, then one replacing every string. *In force* is the "
              "enforcer's time from reading the changed file to handing the new matcher to the event thread; "
              "*whole rebuild* is the compile of the whole database (in the background when the reload was "
              "layered or compiled in two halves); RSS after reload is the largest over the reloads, 1 s after "
              "each rebuild.\n")
        print("| start-up compile | steady RSS | peak RSS (start-up) | one added: in force (median) | "
              "one added: whole rebuild (median) | all replaced: in force | all replaced: whole rebuild | "
              "RSS after reload (max) | peak RSS (whole run) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

        def sec(key):
            return f"{r[key] / 1000:.2f} s" if r.get(key) is not None else "–"
        start = sec('startup_compile_ms')
        if r.get("startup_rebuild_ms") is not None:
            start += f" (two halves; rebuilt whole in {sec('startup_rebuild_ms')})"
        print(f"| {start} | {r['rss_kib'] / 1024:.1f} MiB | "
              f"{r['hwm_start_kib'] / 1024:.0f} MiB | {sec('reload_in_force_ms')} | {sec('reload_compile_ms')} | "
              f"{sec('replace_in_force_ms')} | {sec('replace_compile_ms')} | "
              f"{r['rss_after_reload_kib'] / 1024:.1f} MiB | {r['hwm_kib'] / 1024:.0f} MiB |")
        print()


def main():
    out = sys.argv[1]
    with open(os.path.join(out, "machine.json")) if os.path.exists(os.path.join(out, "machine.json")) else open(
            os.devnull) as f:
        text = f.read()
    if text:
        m = json.loads(text)
        print(f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem_gib']} GiB, Linux {m['kernel']}, clocksource "
              f"{m['clocksource']}; run started {m['date']} (load average then {m['loadavg'][0]:.2f}).\n")
    matcher(out)
    enforcer_memory(out)
    try:
        import report_pipeline  # noqa: F401  (parts 2-4, when present)
        report_pipeline.report(out)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
