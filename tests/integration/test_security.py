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
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, Pipeline, finish, free_port, wait_for, write_config  # noqa: E402


def keygen(path):
    subprocess.run([f"{BIN}/cryptnono", "keygen", path], check=True, stdout=subprocess.DEVNULL)


class SecurityTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        self.tmp = tempfile.mkdtemp(prefix="cryptnono-sec-")
        self.banned = "sec" + secrets.token_hex(16)
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
        finish(self, self.pipeline, self.tmp)

    def tail(self, key):
        return subprocess.Popen([f"{BIN}/cryptnono", "tail", self.tcp, "--topic", "decision", "--timeout", "6",
                                 "--curve-keys", os.path.join(self.tmp, f"{key}.key"),
                                 "--curve-server-key", os.path.join(self.tmp, "server.pub")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def test_only_the_authorized_key_receives_decisions_over_tcp(self):
        good, bad = self.tail("client"), self.tail("stranger")
        plain = socket.create_connection(("127.0.0.1", self.port))  # no CurveZMQ at all: garbage
        plain.sendall(b"\xff" + os.urandom(4096))
        time.sleep(1.0)  # the subscriptions reach the enforcer
        victim = subprocess.Popen(["sh", "-c", f"sleep 30; : {self.banned}"], start_new_session=True)
        wait_for(lambda: victim.poll() is not None, 10, "the banned process to be killed")
        self.assertEqual(victim.returncode, -signal.SIGKILL)
        time.sleep(1.0)  # the decision reaches the tail, which otherwise keeps printing
        good.send_signal(signal.SIGTERM)
        good_out, _ = good.communicate(timeout=30)
        bad_out, bad_err = bad.communicate(timeout=30)
        plain.close()
        decisions = [json.loads(l)["body"]["decision"] for l in good_out.decode().splitlines()]
        self.assertTrue(any(d["action"] == "killed" and d["event"]["pid"] == victim.pid for d in decisions),
                        "the authorized subscriber sees the kill")
        self.assertEqual(bad_out, b"", "an unknown key receives nothing")
        self.assertEqual(bad.returncode, 3, bad_err.decode())  # tail: timeout without a message
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
