"""Small helpers shared by the benchmark drivers (standard library only)."""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(BENCH_DIR)


def log(*args):
    print("[bench]", *args, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    clocksource = ""
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            clocksource = f.read().strip()
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kib / 1048576, 1),
        "clocksource": clocksource,
        "loadavg": loadavg(),
    }


def append_jsonl(path, obj):
    with open(path, "a") as f:
        f.write(json.dumps(obj) + "\n")


def read_jsonl(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
    return out


def run_jsonl(cmd, out_path, tag=None, **kw):
    """Runs cmd, appends every JSON line it prints to out_path (with `tag` merged in)."""
    log("$", " ".join(cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, **kw)
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            obj = json.loads(line)
            if tag:
                obj.update(tag)
            append_jsonl(out_path, obj)
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}")


def percentiles(values, qs=(0.5, 0.99)):
    v = sorted(values)
    if not v:
        return [0.0 for _ in qs]
    return [v[min(len(v) - 1, int(round(q * (len(v) - 1))))] for q in qs]


def summary(values):
    if not values:
        return {"n": 0}
    p50, p99 = percentiles(values)
    return {"n": len(values), "p50": p50, "p99": p99, "min": min(values), "max": max(values),
            "mean": statistics.fmean(values)}


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid):
    """utime + stime of a live process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / hz
