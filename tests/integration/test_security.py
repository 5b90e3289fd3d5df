#!/usr/bin/env python3
"""Who may connect, end to end: a remote forensics subscriber on the enforcer's tcp://
endpoint with CurveZMQ. The authorized key receives the decisions; an unknown key and a
client without CurveZMQ receive nothing; garbage bytes on the port change nothing; a
tcp:// endpoint without keys is refused at start.

Safety: the banned string is random (``sec`` + 32 hex digits).
Needs root (the collector loads BPF); exits 77 (CTest's skip code) otherwise.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, Pipeline, finish, free_port, wait_for, write_config  # noqa: E402


def keygen(path):
    subprocess.run([f"{BIN}/cryptnono", "keygen", path], check=True, stdout=subprocess.DEVNULL)


def read_lines(stream):
    """Reads `stream` line by line in a thread; returns (the list it appends to, the thread)."""
    lines = []

    def pump():
        for line in iter(stream.readline, b""):
            lines.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return lines, reader


class SecurityTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        self.tmp = tempfile.mkdtemp(prefix="cryptnono-sec-")
        self.banned = "sec" + secrets.token_hex(16)
        self.children, self.tails = [], []  # killed and reaped at tearDown
        cfg = os.path.join(self.tmp, "config.json")
        write_config(cfg, [self.banned])
        for name in ("server", "client", "stranger"):
            keygen(os.path.join(self.tmp, name))
        os.makedirs(os.path.join(self.tmp, "authorized"))
        shutil.copy(os.path.join(self.tmp, "client.pub"), os.path.join(self.tmp, "authorized", "client.pub"))
        self.port = free_port()
        self.tcp = f"tcp://127.0.0.1:{self.port}"
        self.pipeline = Pipeline([cfg], enforcer_args=(
            "--also-bind", self.tcp, "--curve-keys", os.path.join(self.tmp, "server.key"),
            "--curve-authorized", os.path.join(self.tmp, "authorized")))

    def tearDown(self):
        for c in self.children:
            try:
                os.killpg(c.pid, signal.SIGKILL)  # a banned process's leftover `sleep` too
            except ProcessLookupError:
                pass
            c.wait()
        for t in self.tails:
            if t.poll() is None:
                t.kill()
            t.wait()
            t.stdout.close()
            t.stderr.close()
        finish(self, self.pipeline, self.tmp)

    def tail(self, key, timeout):
        p = subprocess.Popen([f"{BIN}/cryptnono", "tail", self.tcp, "--topic", "decision", "--timeout", str(timeout),
                              "--curve-keys", os.path.join(self.tmp, f"{key}.key"),
                              "--curve-server-key", os.path.join(self.tmp, "server.pub")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.tails.append(p)
        return p

    def spawn_banned(self):
        c = subprocess.Popen(["sh", "-c", f"sleep 30; : {self.banned}"], start_new_session=True)
        self.children.append(c)
        return c

    def test_only_the_authorized_key_receives_decisions_over_tcp(self):
        # A decision published before a tail's CurveZMQ handshake and subscription have reached
        # the enforcer (no telling how long that takes on a loaded machine) is lost to it: banned
        # processes one after another, for up to `search` seconds, until the authorized tail
        # prints one's kill. Both tails' --timeout (with no message) outlasts the whole search,
        # so the stranger is still there when that decision is published; it is stopped then.
        search, kill_wait, decision_wait = 30.0, 10.0, 3.0
        window = search + kill_wait + decision_wait + 5.0
        start = time.monotonic()
        good, bad = self.tail("client", window), self.tail("stranger", window)
        good_lines, good_reader = read_lines(good.stdout)
        good_errs, good_err_reader = read_lines(good.stderr)
        plain = socket.create_connection(("127.0.0.1", self.port))  # no CurveZMQ at all: garbage
        self.addCleanup(plain.close)
        plain.sendall(b"\xff" + os.urandom(4096))

        def killed_pids():
            decisions = [json.loads(l)["body"]["decision"] for l in list(good_lines)]
            return {d["event"]["pid"] for d in decisions if d["action"] == "killed"}

        victims, seen = [], set()
        while not seen and time.monotonic() < start + search:
            victim = self.spawn_banned()
            victims.append(victim.pid)
            wait_for(lambda: victim.poll() is not None, kill_wait, f"the banned process {victim.pid} to be killed")
            self.assertEqual(victim.returncode, -signal.SIGKILL)
            until = time.monotonic() + decision_wait
            while not seen and time.monotonic() < until:
                seen = killed_pids() & set(victims)
                time.sleep(0.05)
        stranger_listening = bad.poll() is None  # when the decision seen was published
        good.send_signal(signal.SIGTERM)
        good.wait(timeout=30)
        good_reader.join(timeout=30)
        good_err_reader.join(timeout=30)
        good.stdout.close()
        good.stderr.close()
        # The stranger has been listening all along: stopped now, it must have printed nothing
        # (SIGTERM ends a tail with 0; 3 would be its own --timeout without a message).
        bad.send_signal(signal.SIGTERM)
        bad_out, bad_err = bad.communicate(timeout=30)
        plain.close()
        self.assertTrue(killed_pids() & set(victims),
                        f"the authorized subscriber sees a kill (banned pids {victims}); its stderr: "
                        f"{b''.join(good_errs).decode(errors='replace')}")
        self.assertTrue(stranger_listening, "the stranger was still listening when the kill was published")
        self.assertEqual(bad_out, b"", "an unknown key receives nothing")
        self.assertEqual(bad.returncode, 0, bad_err.decode())  # stopped by SIGTERM, not by anything received
        self.pipeline.check_alive()

    def test_tcp_without_keys_is_refused_at_start(self):
        for argv in ([f"{BIN}/cryptnono-enforcer", "--bind", f"ipc://{self.tmp}/x.sock", "--connect",
                      f"ipc://{self.tmp}/none.sock"],
                     [f"{BIN}/cryptnono-collector", "--bind", f"ipc://{self.tmp}/y.sock"]):
            for extra in ([], ["--check"]):
                r = subprocess.run(argv + ["--also-bind", "tcp://127.0.0.1:0"] + extra, capture_output=True,
                                   timeout=30)
                self.assertNotEqual(r.returncode, 0, argv + extra)
                self.assertIn(b"needs CurveZMQ", r.stderr, r.stderr)


if __name__ == "__main__":
    unittest.main()
