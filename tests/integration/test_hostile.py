#!/usr/bin/env python3
"""Hostile input, end to end: the real collector, enforcer and exporter, and real
processes whose argv is what an attacker controls (huge, many, binary, invalid UTF-8,
quotes and newlines), started every way Linux can start a program (execve, execveat,
a memfd with no file at all, a shebang script, a static binary).

For each: the right decision (killed when a banned string is anywhere in argv, left alone
otherwise), no stage crashes (tearDown requires every stage to exit 0 on SIGTERM), and the
exporter's output stays one valid JSON object per line.

Safety: the banned strings are random (``hostile`` + 32 hex digits) and generated per run,
so the enforcer can match nothing but the processes these tests start.
Needs root (the collector loads BPF); exits 77 (CTest's skip code) otherwise.
"""
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import Pipeline, wait_for, write_config  # noqa: E402

STATIC_SLEEPER = os.environ.get("CRYPTNONO_STATIC_SLEEPER", "")
MAX_ARG_STRLEN = 32 * 4096  # the kernel's limit on one argument, NUL included


def banned_string():
    return "hostile" + secrets.token_hex(16)


def big_stack():
    # The kernel allows argv+envp up to a quarter of the stack limit (2 MiB with the
    # usual 8 MiB). Raising the soft limit up to the hard one needs no privilege.
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    want = 64 << 20
    if hard == resource.RLIM_INFINITY or hard >= want:
        resource.setrlimit(resource.RLIMIT_STACK, (want, hard))


class HostileInputTest(unittest.TestCase):
    pipeline = None

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root")
        cls.tmp = tempfile.mkdtemp(prefix="cryptnono-hostile-")
        cls.banned = banned_string()
        cls.config = os.path.join(cls.tmp, "config.json")
        write_config(cls.config, [cls.banned])
        cls.pipeline = Pipeline([cls.config])

    @classmethod
    def tearDownClass(cls):
        if cls.pipeline:
            codes = cls.pipeline.stop()
            ok = codes == {"collector": 0, "enforcer": 0, "exporter": 0}
            logs = "\n".join(f"--- {n} ---\n{cls.pipeline.log(n)[-3000:]}" for n in codes)
            cls.pipeline.cleanup()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            if not ok:
                raise AssertionError(f"a stage did not exit cleanly: {codes}\n{logs}")

    def setUp(self):
        self.children = []

    def tearDown(self):
        for c in self.children:
            c.poll()
            try:  # the whole session: a killed sh leaves its `sleep` behind
                os.killpg(c.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            c.wait()
        # Whatever happened, every stage is alive and every output line is one JSON object.
        self.pipeline.check_alive()
        self.pipeline.json_lines()

    def spawn(self, argv, **kw):
        c = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        self.children.append(c)
        return c

    def assert_killed(self, child, what):
        wait_for(lambda: child.poll() is not None, 10, f"{what} to be killed")
        self.assertEqual(child.returncode, -signal.SIGKILL, f"{what} must die by SIGKILL")
        return self.pipeline.find_line(pid=child.pid, action="killed")

    def assert_left_alone(self, child, what, seconds=1.5):
        # Long enough for the decision on its exec to be made and published many times over.
        time.sleep(seconds)
        self.assertIsNone(child.poll(), f"{what} must not be killed")
        checked = [l for l in self.pipeline.json_lines() if l.get("pid") == child.pid]
        self.assertEqual(checked, [], f"no kill/spare line for {what}")

    # ---- argv shapes -------------------------------------------------------------

    def test_two_mebibytes_of_argv_banned_string_at_the_very_end(self):
        chunk = "a" * (MAX_ARG_STRLEN - 1)
        args = [chunk] * 17  # 2.2 MiB: beyond the probe's bound, read back from /proc
        child = self.spawn(["sh", "-c", "sleep 10", "sh", *args, self.banned], preexec_fn=big_stack)
        line = self.assert_killed(child, "a process with 2 MiB of argv")
        self.assertTrue(line["cmdline_from_proc"], "the event was truncated; the full cmdline comes from /proc")
        self.assertEqual(line["matched"], self.banned)
        self.assertGreater(len(line["cmdline"]), 17 * (MAX_ARG_STRLEN - 1))

    def test_one_hundred_thousand_arguments_banned_string_last(self):
        child = self.spawn(["sh", "-c", "sleep 10", "sh", *(["x"] * 100_000), self.banned])
        line = self.assert_killed(child, "a process with 100,000 arguments")
        self.assertTrue(line["cmdline"].endswith(self.banned), line["cmdline"][-200:])

    def test_one_argument_of_128_kib_with_the_banned_string_at_its_end(self):
        arg = "b" * (MAX_ARG_STRLEN - len(self.banned) - 2) + " " + self.banned
        self.assertEqual(len(arg), MAX_ARG_STRLEN - 1)
        child = self.spawn(["sh", "-c", "sleep 10", "sh", arg])
        line = self.assert_killed(child, "a process with one 128 KiB argument")
        self.assertEqual(line["matched"], self.banned)

    def test_banned_string_past_the_128th_argument_and_past_byte_128(self):
        # Upstream cryptnono reads at most 128 arguments of 128 bytes: both evasions.
        many = self.spawn(["sh", "-c", "sleep 10", "sh", *(["pad"] * 200), self.banned])
        self.assert_killed(many, "a banned string in argument 202")
        deep = self.spawn(["sh", "-c", "sleep 10", "sh", "p" * 300 + " " + self.banned])
        self.assert_killed(deep, "a banned string at byte 301 of an argument")

    def test_binary_invalid_utf8_quotes_backslashes_and_newlines(self):
        nasty = [b"", b"", b"\xff\xfe\xfd", b"\xc3\x28", b"\xed\xa0\x80", b"it's \"quoted\"", b"back\\slash\\",
                 b"new\nline\r\n", b"\x01\x02\x1b[31m", b"tab\there", b"", "żółw 🐢".encode()]
        killed = self.spawn([b"sh", b"-c", b"sleep 10", b"sh", *nasty, b"\n" + self.banned.encode() + b"\n"])
        line = self.assert_killed(killed, "a process with binary and invalid UTF-8 arguments")
        self.assertEqual(line["matched"], self.banned)
        self.assertIn("\n", line["cmdline"], "newlines survive as data inside one JSON line")
        self.assertIn("\ufffd", line["cmdline"], "invalid UTF-8 shows as U+FFFD")
        benign = self.spawn([b"sh", b"-c", b"sleep 10", b"sh", *nasty])
        self.assert_left_alone(benign, "the same arguments without a banned string")

    def test_glued_banned_string_is_not_a_match_but_a_separated_one_is(self):
        glued = self.spawn(["sh", "-c", "sleep 10", "sh", "x" + self.banned + "y"])
        self.assert_left_alone(glued, "a banned string glued inside a longer word")
        upper = self.spawn(["sh", "-c", "sleep 10", "sh", "--opt=" + self.banned.upper()])
        self.assert_killed(upper, "the banned string in upper case after '='")

    # ---- ways to start a program -------------------------------------------------

    def test_execveat_of_an_open_file(self):
        # os.execve with an fd is fexecve(): glibc calls execveat(fd, "", AT_EMPTY_PATH).
        code = ("import os, sys; fd = os.open('/bin/sh', os.O_RDONLY); "
                "os.execve(fd, ['sh', '-c', 'sleep 10', 'sh', sys.argv[1]], {})")
        child = self.spawn([sys.executable, "-c", code, self.banned])
        self.assert_killed(child, "a program started with execveat")

    def test_fileless_exec_from_a_memfd(self):
        code = ("import os, sys; fd = os.memfd_create('x', 0); "
                "os.write(fd, open('/bin/sh', 'rb').read()); "
                "os.execve(fd, ['sh', '-c', 'sleep 10', 'sh', sys.argv[1]], {})")
        child = self.spawn([sys.executable, "-c", code, self.banned])
        line = self.assert_killed(child, "a program exec'd from a memfd (no file on disk)")
        self.assertEqual(line["matched"], self.banned)

    def test_shebang_script(self):
        script = os.path.join(self.tmp, f"script-{secrets.token_hex(4)}.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nsleep 10\n")
        os.chmod(script, 0o755)
        child = self.spawn([script, self.banned])
        line = self.assert_killed(child, "a shebang script")
        self.assertIn(script, line["cmdline"], "the interpreter's argv names the script")

    def test_statically_linked_binary(self):
        self.assertTrue(STATIC_SLEEPER, "CRYPTNONO_STATIC_SLEEPER not set")
        child = self.spawn([STATIC_SLEEPER, "10", self.banned])
        self.assert_killed(child, "a statically linked binary")
        benign = self.spawn([STATIC_SLEEPER, "10", "harmless"])
        self.assert_left_alone(benign, "a statically linked binary without a banned string")


if __name__ == "__main__":
    unittest.main()
