"""Markdown tables for parts 2-4 (imported by report.py)."""
import os
import statistics

from benchutil import read_jsonl


VARIANTS = ["plain", "sock", "now", "nowait", "zmq", "pin", "rt", "pin+rt", "flags"]
LABELS = {"plain": "normal", "sock": "normal, direct socket without the kernel ring (--kernel-ring false)",
          "now": "normal, killed decisions at once (--kill-decision-delay-ms 0)",
          "nowait": "normal, no wait for a killed process to exit (--exit-wait-us 0)",
          "zmq": "normal, ZeroMQ only (--direct off)", "pin": "pinned to 1 CPU",
          "rt": "SCHED_FIFO 50", "pin+rt": "pinned + SCHED_FIFO 50",
          "flags": "pinned + SCHED_FIFO 50 (--cpus, --rt-priority)"}


def _label(v):
    return LABELS.get(v, str(v))


def _vkey(v):
    return VARIANTS.index(v) if v in VARIANTS else len(VARIANTS)


def _us(v):
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def latency(out):
    rows = read_jsonl(os.path.join(out, "latency.jsonl"))
    if not rows:
        return
    print("### Exec → SIGKILL latency (µs from the exec tracepoint's timestamp)\n")
    print("`dead`: the victim's parent, blocked on a pidfd, sees it dead (victim side, the headline). "
          "`exit`: the victim begins to die (kernel, see below). "
          "`sent`: the killer's kill()/pidfd_send_signal returned (floor: its own clock; pipeline: the "
          "decision's killedBootNs). `read`: the killer has the event in user space (floor: record read; "
          "pipeline: the enforcer's receivedBootNs). One line per round: p50/p99/max over "
          "that round's victims.\n")
    print("| scheduling | load | killer | round | victims killed | read p50 | sent p50 | exit p50 | dead p50 | dead p99 | "
          "dead max | storm execs/s |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    keyf = lambda r: (_vkey(r["rt"]), r["storm"], r["killer"] != "floor")  # noqa: E731
    for key in sorted({keyf(r) for r in rows}):
        group = [r for r in rows if keyf(r) == key]
        for r in sorted(group, key=lambda r: r["round"]):
            d = r["dead_us"]
            if not d.get("n"):
                continue
            print(f"| {_label(r['rt'])} | {'storm' if r['storm'] else 'idle'} | {r['killer']} | "
                  f"{r['round']} | {r['killed']}/{r['victims']} | {_us(r['read_us']['p50'])} | {_us(r['sent_us']['p50'])} | "
                  f"{_us(r.get('exit_us', {}).get('p50', 0))} | {_us(d['p50'])} | {_us(d['p99'])} | {_us(d['max'])} | {r['storm_rate']:.0f} |")
    print()
    side_by_side(rows, "dead_us", "Side by side, `dead` (median over rounds of each round's figure; min–max over rounds):")
    side_by_side(rows, "exit_us", "Side by side, `exit`: the victim begins to die (the kernel's sched_process_exit "
                 "tracepoint, noted by exec_latency --exit-probe), before its memory is torn down and before its "
                 "parent wakes. A killer that stays busy on the victim's CPU after the kill delays both; only `dead` "
                 "also counts the parent's own wake-up:")


def side_by_side(rows, key, title):
    with_key = [r for r in rows if r.get(key, {}).get("n")]
    if not with_key:
        return
    print(title + "\n")
    print("| scheduling | load | floor p50 | pipeline p50 | ratio (target ≤ 1.5) | floor p99 | "
          "pipeline p99 | ratio (target ≤ 2) | floor sent p50 / p99 | pipeline sent p50 / p99 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rt in sorted({r["rt"] for r in with_key}, key=_vkey):
        for storm in (False, True):
            f = [r for r in with_key if r["rt"] == rt and r["storm"] == storm and r["killer"] == "floor"]
            p = [r for r in with_key if r["rt"] == rt and r["storm"] == storm and r["killer"] == "pipeline"]
            if not f or not p:
                continue

            def med(rs, k, q):
                v = [r[k][q] for r in rs]
                return statistics.median(v), min(v), max(v)

            f50, p50, f99, p99 = med(f, key, "p50"), med(p, key, "p50"), med(f, key, "p99"), med(p, key, "p99")
            r50 = p50[0] / f50[0]
            r99 = p99[0] / f99[0]
            print(f"| {_label(rt)} | {'storm' if storm else 'idle'} | "
                  f"{_us(f50[0])} ({_us(f50[1])}–{_us(f50[2])}) | {_us(p50[0])} ({_us(p50[1])}–{_us(p50[2])}) | "
                  f"**{r50:.2f}** | {_us(f99[0])} ({_us(f99[1])}–{_us(f99[2])}) | {_us(p99[0])} ({_us(p99[1])}–{_us(p99[2])}) | "
                  f"**{r99:.2f}** | {_us(med(f, 'sent_us', 'p50')[0])} / {_us(med(f, 'sent_us', 'p99')[0])} | "
                  f"{_us(med(p, 'sent_us', 'p50')[0])} / {_us(med(p, 'sent_us', 'p99')[0])} |")
    print()


def hops(out):
    rows = read_jsonl(os.path.join(out, "latency.jsonl"))
    pipe = [r for r in rows if r["killer"] == "pipeline" and not r["storm"] and r.get("read_us", {}).get("n")]
    floor = [r for r in rows if r["killer"] == "floor" and not r["storm"] and r["dead_us"].get("n")]
    if not pipe:
        return
    print("### Where the pipeline's time goes, idle (µs; median over rounds of each round's p50 / p99)\n")
    print("| scheduling | hop | pipeline p50 | pipeline p99 | floor equivalent p50 |")
    print("|---|---|---:|---:|---:|")
    for rt in sorted({r["rt"] for r in pipe}, key=_vkey):
        p = [r for r in pipe if r["rt"] == rt]
        f = [r for r in floor if r["rt"] == rt]

        def m(rs, k, q):
            v = [r[k][q] for r in rs if r[k].get("n")]
            return statistics.median(v) if v else float("nan")

        def dm(rs, a, b, q):
            # per-round difference of two cumulative figures (approximate for p99)
            v = [r[a][q] - r[b][q] for r in rs if r[a].get("n") and r[b].get("n")]
            return statistics.median(v) if v else float("nan")

        sched = _label(rt)
        if any(r.get("collector_us", {}).get("n") for r in p):
            print(f"| {sched} | exec → collector published (BPF, ring-buffer wake-up, read, Cap'n Proto, ZeroMQ send) | "
                  f"{_us(m(p, 'collector_us', 'p50'))} | {_us(m(p, 'collector_us', 'p99'))} | "
                  f"{_us(m(f, 'read_us', 'p50'))} (event read) |")
            print(f"| {sched} | collector published → enforcer received (direct path, or ZeroMQ: 2 I/O threads, ipc socket, "
                  f"app thread wake-up) | {_us(m(p, 'transport_us', 'p50'))} | {_us(m(p, 'transport_us', 'p99'))} | – |")
        else:  # the kernel ring: the enforcer reads the probe's record itself
            print(f"| {sched} | exec → enforcer read it from the kernel ring (BPF, ring-buffer wake-up) | "
                  f"{_us(m(p, 'read_us', 'p50'))} | {_us(m(p, 'read_us', 'p99'))} | "
                  f"{_us(m(f, 'read_us', 'p50'))} (event read) |")
        print(f"| {sched} | received → decided (decode, join, casefold, match) | {_us(m(p, 'decide_us', 'p50'))} | "
              f"{_us(m(p, 'decide_us', 'p99'))} | – |")
        print(f"| {sched} | decided → SIGKILL sent (pidfd_open, /proc start-time check, pidfd_send_signal) | "
              f"{_us(m(p, 'kill_syscalls_us', 'p50'))} | {_us(m(p, 'kill_syscalls_us', 'p99'))} | "
              f"{_us(dm(f, 'sent_us', 'read_us', 'p50'))} (kill) |")
        print(f"| {sched} | SIGKILL sent → parent sees the victim dead (victim exit, parent wake-up) | "
              f"{_us(dm(p, 'dead_us', 'sent_us', 'p50'))} | – | {_us(dm(f, 'dead_us', 'sent_us', 'p50'))} |")
        print(f"| {sched} | **exec → dead** | **{_us(m(p, 'dead_us', 'p50'))}** | **{_us(m(p, 'dead_us', 'p99'))}** | "
              f"**{_us(m(f, 'dead_us', 'p50'))}** |")
    print()


def killpath(out):
    rows = read_jsonl(os.path.join(out, "killpath.jsonl"))
    if not rows:
        return
    names = {
        "bare_kill": "kill(pid, SIGKILL) (the floor)",
        "pidfs_open": "PidfdKiller::open by pidfs inode (pidfd_open + fstat + poll), exec events",
        "pidfs_total": "enforcer total by pidfs inode (open + kill)",
        "enforcer_open": "PidfdKiller::open by start time (pidfd_open + /proc/<pid>/stat + liveness check), scans",
        "enforcer_kill": "Target::kill (pidfd_send_signal SIGKILL)",
        "enforcer_total": "enforcer total by start time (open + kill)",
        "part_pidfd_open": "  of which pidfd_open",
        "part_proc_stat": "  of which ProcReader::stat (/proc/<pid>/stat)",
        "part_alive_check": "  of which pidfd_send_signal(0)",
    }
    print("### The kill path alone (kill_path; µs)\n")
    print("`settled`: a victim asleep in pause() (5 ms after its start), the enforcer's killer as the tests "
          "build it. `fresh + protect`: 400 µs after its start (when the pipeline reaches a victim) and with the "
          "protection of the agent's own programs the real enforcer has (a stat of /proc/<pid>/exe).\n")
    print("| victim | step | n | p50 | p99 |")
    print("|---|---|---:|---:|---:|")
    for mode in ("settled", "fresh+protect"):
        for k in names:
            for r in rows:
                if r["step"] == k and r.get("mode", "settled") == mode:
                    print(f"| {mode} | {names[k]} | {r['n']} | {r['p50_ns'] / 1000:.1f} | {r['p99_ns'] / 1000:.1f} |")
    print()


def hop(out):
    rows = read_jsonl(os.path.join(out, "hop.jsonl"))
    if not rows:
        return
    print("### One process hop alone (hop_bench: a message every 20 ms, sender → blocked receiver; µs)\n")
    print("| scheduling | transport | n | p50 | p99 | max |")
    print("|---|---|---:|---:|---:|---:|")
    names = {"zmq": "cryptnono transport (ZeroMQ PUB/SUB over ipc, Cap'n Proto envelope)",
             "direct": "cryptnono transport with its direct path (first of the two copies)",
             "seqpacket": "bare AF_UNIX SOCK_SEQPACKET, epoll in the receiver"}
    order = ["zmq", "direct", "seqpacket"]
    for r in sorted(rows, key=lambda r: (_vkey(r["variant"]), order.index(r["mode"]) if r["mode"] in order else 9)):
        print(f"| {_label(r['variant'])} | {names.get(r['mode'], r['mode'])} | {r['n']} | {r['p50_ns'] / 1000:.0f} | "
              f"{r['p99_ns'] / 1000:.0f} | {r['max_ns'] / 1000:.0f} |")
    print()


def throughput(out):
    rows = read_jsonl(os.path.join(out, "throughput.jsonl"))
    for r in rows:
        if r.get("what") == "storm-calibration":
            rates = ", ".join(f"{w} worker(s) {v:.0f}/s" for w, v in r["rates"].items())
            print(f"Storm calibration (no agent): {rates}; the storms of parts 3 and 4 use {r['workers']}.\n")
    for r in (r for r in rows if r.get("what") == "throughput"):
        c, e = r["collector"], r["enforcer"]
        print("### Throughput and loss (collector + enforcer with the big list + exporter + a decision tap)\n")
        print(f"{r['execs']:,} execs in {r['seconds']:.1f} s = **{r['rate']:.0f} execs/s** (exec_storm, "
              f"{r.get('workers', 2)} worker(s), exec'ing {r.get('exe', '/bin/true')}).\n")
        print("| stage | counter | value |")
        print("|---|---|---:|")
        for k in ("events_bpf", "kernel_ringbuf_drops", "kernel_argv_read_errors", "truncated", "send_drops",
                  "direct_sent", "direct_drops", "kernel_ring_drops", "kernel_ring_follow_laps"):
            print(f"| collector | {k} | {c.get(k, '–')} |")
        for k in ("events_received", "events_lost", "decisions", "malformed", "send_drops", "errors", "direct_events",
                  "duplicates", "ring_events"):
            print(f"| enforcer | {k} | {e.get(k, '–')} |")
        print(f"| exporter | messages_lost_total (sum) | {r['exporter_messages_lost']:.0f} |")
        lost = r["tap"].get("lost", {})
        print(f"| decision tap | sequence gaps | {sum(lost.values()) if lost else 0} |")
        print()
        print("CPU seconds during the run: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["cpu_s"].items()) + "; peak RSS: "
              + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in r["hwm_kib"].items()) + ".\n")


def cost(out):
    rows = read_jsonl(os.path.join(out, "cost.jsonl"))
    if not rows:
        return
    base = [r for r in rows if r["what"] == "storm" and not r["agent"]]
    withs = [r for r in rows if r["what"] == "storm" and r["agent"]]
    floors = {r["rep"]: r for r in rows if r["what"] == "storm-floor"}
    print("### Cost\n")
    print("Each rep runs the storm three times in a row: without anything, with the floor consumer (its probe "
          "wakes it for every exec: the least a user-space killer costs), and with the agent.\n")
    print("| rep | execs/s without | with the floor | floor slowdown | with the agent | agent slowdown |")
    print("|---:|---:|---:|---:|---:|---:|")
    for b, w in zip(base, withs):
        f = floors.get(b["rep"])
        fr = f"{f['rate']:.0f} | {100 * (1 - f['rate'] / b['rate']):.1f}%" if f else "– | –"
        print(f"| {b['rep']} | {b['rate']:.0f} | {fr} | {w['rate']:.0f} | {100 * (1 - w['rate'] / b['rate']):.1f}% |")
    if base and withs:
        mb, mw = statistics.median(r["rate"] for r in base), statistics.median(r["rate"] for r in withs)
        slow = [100 * (1 - w["rate"] / b["rate"]) for b, w in zip(base, withs)]
        fslow = [100 * (1 - floors[b["rep"]]["rate"] / b["rate"]) for b in base if b["rep"] in floors]
        fcol = f"{statistics.median(f['rate'] for f in floors.values()):.0f} | {statistics.median(fslow):.1f}%" if fslow else "– | –"
        print(f"| median | {mb:.0f} | {fcol} | {mw:.0f} | **{statistics.median(slow):.1f}%** |")
    print()
    if withs:
        print("Per stage, per 10,000 execs at the storm's pace (median over reps):\n")
        print("| stage | CPU seconds / 10k execs | peak RSS | RSS at end |")
        print("|---|---:|---:|---:|")
        for stage in withs[0]["stages"]:
            cpu = statistics.median(r["stages"][stage]["cpu_s"] / r["execs"] * 10000 for r in withs)
            hwm = max(r["stages"][stage]["hwm_kib"] for r in withs)
            rss = statistics.median(r["stages"][stage]["rss_kib"] for r in withs)
            print(f"| {stage} | {cpu:.3f} | {hwm / 1024:.0f} MiB | {rss / 1024:.0f} MiB |")
        print()
        print("BPF program run time per exec (kernel.bpf_stats_enabled):\n")
        print("| program | load | runs | ns per run |")
        print("|---|---|---:|---:|")
        for r in withs:
            for b in r["bpf"]:
                print(f"| {b['name']} | storm (rep {r['rep']}) | {b['runs']:,} | {b['ns_per_run']:.0f} |")
        for r in rows:
            if r["what"] == "bpf-paced":
                who = "the floor consumer" if r["name"].startswith("floor") else "the collector"
                how = (f"200 execs/s, every exec wakes {who}" if r["mode"] == "wakeup"
                       else f"200 execs/s, {who} stopped (no wake-up)")
                print(f"| {r['name']} | {how} | {r['runs']:,} | {r['ns_per_run']:.0f} |")
        print()
    parts = [r for r in rows if r["what"] == "probe-parts"]
    if parts:
        full = next((r["ns_per_run"] for r in parts if r["build"] == "full"), None)
        print("The exec probe with parts left out, all attached at once to the same execs (probe_parts: no "
              "reader, so no wake-up; median over rounds that rotate the attach order, min–max):\n")
        print("| build | ns per exec | min–max | part's cost (full − build) |")
        print("|---|---:|---:|---:|")
        for r in parts:
            diff = f"{full - r['ns_per_run']:+.0f}" if full is not None and r["build"] != "full" else "–"
            print(f"| {r['build']} | {r['ns_per_run']:.0f} | {r['min']:.0f}–{r['max']:.0f} | {diff} |")
        print()


def report(out):
    latency(out)
    hops(out)
    killpath(out)
    hop(out)
    throughput(out)
    cost(out)
