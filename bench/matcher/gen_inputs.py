#!/usr/bin/env python3
"""Writes the matcher benchmark's inputs: realistic banned-string lists and command lines.

Deterministic (fixed seed), so every run and both implementations see the same bytes:

  OUT/banned-1000.json, banned-10000.json, banned-100000.json
      cryptnono configs {"bannedCommandStrings": [...]}; each list is a prefix of the next.
      A mix of miner-like tokens (xmrig-6.21.0-linux-static-x64, --donate-level=1 style),
      pool host names (xmr-eu2.nanopoolz.org, with and without stratum+tcp:// and :port),
      wallet-like strings (Monero-style base58 of 95 characters, Bitcoin-style of 34,
      Ethereum-style 0x + 40 hex) and random pronounceable words like the seed's
      test string, in mixed case (matching is case-insensitive).
  OUT/allowed-5.json
      {"allowedCommandPatterns": [...]}: five patterns in the style operators write
      (anchored at the start, as re.match is); none matches a benchmark command line,
      so every hit pays for all five.
  OUT/cases/<size>-<kind>.argv
      One exec's argument area: NUL-separated argv, argv[0] is the exec'd file name.
      size: short (~100 B joined), 4k (~4 KiB), 64k (~64 KiB); kind: nohit, hit (a
      banned pool host name standing alone, as `-o stratum+tcp://HOST:PORT`, in the last
      argument: the whole line is scanned before it is found) and glued (the same string
      glued to a word character, `.../HOSTx/...`: found, then spared by the word rule).
  OUT/manifest.json
      What was generated, the hit string, and the expected verdict of each case.

No banned string occurs in any benign text: candidates that do are dropped and replaced,
so "nohit" really has no occurrence and "hit" exactly one.

Usage: gen_inputs.py OUT [--seed N] [--counts 1000,10000,100000]
"""
import argparse
import json
import os
import random
import shlex
import sys

SIZES = {"short": 100, "4k": 4096, "64k": 65536}
KINDS = ("nohit", "hit", "glued")
COUNTS = (1000, 10000, 100000)

MINERS = [
    "xmrig", "xmr-stak", "xmr-stak-rx", "cpuminer", "cpuminer-opt", "cpuminer-multi", "minerd",
    "t-rex", "nbminer", "phoenixminer", "lolminer", "gminer", "teamredminer", "srbminer-multi",
    "ccminer", "bminer", "nanominer", "ethminer", "kawpowminer", "wildrig-multi", "xmrigcc",
    "cryptodredge", "z-enemy", "miniz", "rigel", "bzminer", "onezerominer", "xmrig-proxy",
    "hellminer", "verus-cli", "cpuminer-gr", "sgminer", "bfgminer", "cgminer", "claymore",
]
PLATFORMS = ["linux-x64", "linux-static-x64", "focal-x64", "bionic-x64", "jammy-x64", "linux-arm64",
             "cuda11", "cuda12", "opencl", "linux", "amd64", "x86_64", "static", "musl"]
MINER_FLAGS = ["--donate-level={}", "--cpu-max-threads-hint={}", "--max-cpu-usage={}", "--threads={}",
               "--randomx-1gb-pages={}", "--cpu-priority={}", "--algo=rx/{}", "--coin=xmr{}",
               "--nicehash{}", "--tls-fingerprint={}", "--rig-id=rig{}", "--pass=x{}"]
REGIONS = ["eu", "us", "asia", "de", "fr", "ca", "sg", "hk", "jp", "au", "br", "ru", "us-east", "us-west",
           "eu-west", "eu-central", "xmr", "etc", "rvn", "erg", "kas", "zeph", "pool", "stratum", "mine"]
TLDS = ["org", "com", "net", "io", "pro", "xyz", "cc", "me", "info", "fr", "de", "ru", "to", "top"]
PORTS = [3333, 4444, 5555, 7777, 9000, 10128, 10300, 14433, 14444, 1111, 443, 80, 8080, 20128]
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
CONSONANTS = "bcdfghjklmnpqrstvwxz"
VOWELS = "aeiouy"

# Benign vocabulary for command lines (what notebook servers really run).
WORDS = [
    "usr", "bin", "lib", "local", "share", "opt", "conda", "envs", "notebook", "site-packages",
    "python3", "python3.11", "jupyter", "runtime", "kernel", "home", "jovyan", "work", "data",
    "models", "checkpoints", "config", "cache", "tmp", "var", "log", "src", "build", "dist",
    "tests", "examples", "scripts", "node_modules", "webpack", "babel", "tensorflow", "torch",
    "numpy", "pandas", "matplotlib", "sklearn", "scipy", "dask", "distributed", "worker",
    "scheduler", "ipykernel", "ipython", "traitlets", "tornado", "zmq", "asyncio", "requests",
    "urllib3", "certifi", "setuptools", "wheel", "pip", "git", "main", "origin", "master",
    "release", "output", "results", "figures", "report", "analysis", "dataset", "train",
    "validate", "evaluate", "predict", "epoch", "batch", "learning", "rate", "optimizer",
    "adam", "resnet50", "bert", "tokenizer", "vocab", "weights", "index", "module", "package",
]
EXTS = ["py", "json", "csv", "txt", "ipynb", "yaml", "h5", "pt", "npz", "parquet", "log", "so", "js", "jar"]
FLAGS = ["--verbose", "--quiet", "--debug", "--no-cache-dir", "--user", "--upgrade", "--force",
         "--recursive", "--output", "--input", "--config", "--log-level", "--workers", "--port",
         "--host", "--ip", "--timeout", "--batch-size", "--epochs", "--lr", "--seed", "--device",
         "-v", "-q", "-f", "-o", "-m", "-c", "-n", "-p", "-j", "-x"]


def pseudo_word(rng, syllables):
    return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(syllables))


def mixed_case(rng, s):
    # Operators paste strings in whatever case; matching folds it.
    if rng.random() < 0.3:
        return "".join(c.upper() if rng.random() < 0.5 else c for c in s)
    return s


def miner_token(rng):
    r = rng.random()
    base = rng.choice(MINERS)
    if r < 0.5:
        return f"{base}-{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}-{rng.choice(PLATFORMS)}"
    if r < 0.75:
        return rng.choice(MINER_FLAGS).format(rng.randint(0, 99999))
    return f"{base}{rng.choice(['', '-', '_'])}{pseudo_word(rng, 2)}{rng.randint(0, 999)}"


def pool_host(rng):
    host = f"{rng.choice(REGIONS)}{rng.randint(1, 9)}.{pseudo_word(rng, rng.randint(2, 4))}pool.{rng.choice(TLDS)}"
    r = rng.random()
    if r < 0.5:
        return host
    if r < 0.75:
        return f"{host}:{rng.choice(PORTS)}"
    return f"stratum+{rng.choice(['tcp', 'ssl', 'tls'])}://{host}:{rng.choice(PORTS)}"


def wallet(rng):
    r = rng.random()
    if r < 0.5:
        return "4" + rng.choice("0123456789AB") + "".join(rng.choice(BASE58) for _ in range(93))
    if r < 0.75:
        return rng.choice("13") + "".join(rng.choice(BASE58) for _ in range(33))
    return "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(40))


def seed_like(rng):
    # Like the seed's test string: pronounceable, mixed case, digits, 12-64 characters.
    n = rng.randint(6, 32)
    out = []
    for _ in range(n):
        syl = rng.choice(CONSONANTS) + rng.choice(VOWELS)
        if rng.random() < 0.2:
            syl = syl.capitalize()
        if rng.random() < 0.1:
            syl += str(rng.randint(0, 9))
        out.append(syl)
    return "".join(out)


def banned_candidate(rng):
    r = rng.random()
    if r < 0.2:
        s = miner_token(rng)
    elif r < 0.5:
        s = pool_host(rng)
    elif r < 0.8:
        s = wallet(rng)
    else:
        s = seed_like(rng)
    return mixed_case(rng, s)


def benign_token(rng):
    r = rng.random()
    if r < 0.35:
        parts = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
        return "/" + "/".join(parts) + (f".{rng.choice(EXTS)}" if rng.random() < 0.5 else "")
    if r < 0.55:
        return rng.choice(FLAGS)
    if r < 0.65:
        return f"--{rng.choice(WORDS)}={rng.choice(WORDS)}"
    if r < 0.75:
        return str(rng.randint(0, 100000))
    if r < 0.82:
        h = "".join(rng.choice("0123456789abcdef") for _ in range(32))
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if r < 0.9:
        # A shell snippet: spaces and quotes, so shlex.join has to quote it.
        return f"cd /{rng.choice(WORDS)} && {rng.choice(WORDS)} --{rng.choice(WORDS)} '{rng.choice(WORDS)}'"
    return mixed_case(rng, rng.choice(WORDS).capitalize())


def benign_argv(rng, target, reserve):
    """argv for a command line of about `target` joined bytes, leaving `reserve` bytes."""
    if target <= 200:
        uid = "".join(rng.choice("0123456789abcdef") for _ in range(8))
        argv = ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", f"/tmp/kernel-{uid}.json"]
    elif target <= 8192:
        argv = ["/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "-Xmx4g", "-cp"]
        cp = []
        while len(":".join(cp)) < target // 2:
            cp.append("/opt/" + "/".join(rng.choice(WORDS) for _ in range(3)) + ".jar")
        argv.append(":".join(cp))
        argv.append("org.example.Main")
    else:
        argv = ["/opt/conda/bin/python3", "/home/jovyan/work/train.py"]
    while len(shlex.join(argv)) < target - reserve:
        argv.append(benign_token(rng))
    # Trim the last argument so the joined length lands close to the target.
    while len(shlex.join(argv)) > target - reserve and len(argv) > 5:
        argv.pop()
    return argv


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=20240501)
    ap.add_argument("--counts", default=",".join(map(str, COUNTS)),
                    help="list sizes to write (a smoke run needs only 1000)")
    args = ap.parse_args()
    counts = [int(x) for x in args.counts.split(",")]
    rng = random.Random(args.seed)
    os.makedirs(os.path.join(args.out, "cases"), exist_ok=True)

    # Command lines first, so banned candidates can be checked against their text.
    hit_host = None  # chosen below from the banned list
    bases = {}
    for size, target in SIZES.items():
        bases[size] = benign_argv(rng, target, reserve=60)
    benign_text = "\n".join(shlex.join(a) for a in bases.values())
    benign_text += " --log-dir /home/jovyan/work/logs/latest/output -o stratum+tcp:// x/logs :14433"
    benign_text = benign_text.casefold()

    seen = set()
    banned = []
    while len(banned) < max(counts):
        s = banned_candidate(rng)
        f = s.casefold()
        if f in seen or f in benign_text:
            continue
        seen.add(f)
        banned.append(s)
    # The hit: a plain pool host name from the first 1,000 (so it is in every list).
    for s in banned[:1000]:
        if "pool." in s and "://" not in s and ":" not in s:
            hit_host = s
            break
    assert hit_host is not None
    hit = hit_host.casefold()

    for n in counts:
        with open(os.path.join(args.out, f"banned-{n}.json"), "w") as f:
            json.dump({"bannedCommandStrings": banned[:n]}, f, indent=0)
    allowed = [
        r"^/srv/conda/envs/notebook/bin/python3? -m (jupyterhub|notebook|jupyter_server)\b",
        r"^/usr/local/bin/dask-(worker|scheduler) tcp://[a-z0-9.-]+:\d+",
        r"^(/usr/bin/)?(sudo|apt-get|dpkg) ",
        r"^code-server --bind-addr \S+ --auth none",
        r"^/opt/conda/bin/python3? -m pip (install|download) .*--index-url https://pypi\.example\.org",
    ]
    with open(os.path.join(args.out, "allowed-5.json"), "w") as f:
        json.dump({"allowedCommandPatterns": allowed}, f, indent=0)

    manifest = {"seed": args.seed, "counts": counts, "hit": hit, "cases": []}
    port = 14433
    for size, base in bases.items():
        for kind in KINDS:
            argv = list(base)
            if kind == "hit":
                argv += ["-o", f"stratum+tcp://{hit_host}:{port}"]
            elif kind == "glued":
                argv += ["--log-dir", f"/home/jovyan/work/{hit_host}x/logs"]
            else:
                argv += ["--log-dir", "/home/jovyan/work/logs/latest/output"]
            area = b"\0".join(a.encode() for a in argv) + b"\0"
            name = f"{size}-{kind}"
            with open(os.path.join(args.out, "cases", name + ".argv"), "wb") as f:
                f.write(area)
            joined = shlex.join(argv).casefold()
            expect = "killed" if kind == "hit" else "noMatch"
            assert joined.count(hit) == (0 if kind == "nohit" else 1), name
            manifest["cases"].append({"name": name, "size": size, "kind": kind, "joined_bytes": len(joined.encode()),
                                      "args": len(argv), "expect": expect})
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {len(banned)} banned strings, {len(manifest['cases'])} cases to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
