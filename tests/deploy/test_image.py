#!/usr/bin/env python3
"""Deploy tier, image part: the container image from deploy/Dockerfile, built with
podman, and the privilege test.

- ImageBuildTest: builds the image (deploy/build-image.sh; CTest fixture for the rest).
- ImageTest: the runtime root holds the four programs, their shared libraries and
  nothing else (no shell, no package manager); every program runs in it; the default
  user is unprivileged.
- PrivilegeTest: runs the chart's containers (collector, execwhacker, monero,
  tcpflowkiller, exporter) from that image with exactly the security settings the chart renders (the
  DaemonSet's own securityContext, capabilities, host pid namespace, read-only root,
  fsGroup-owned shared socket emptyDir, the CRI socket from the host, command and args,
  env, probes), in one shared network namespace like a pod's. The operator document's
  test command, with a banned string this test makes up at random (never anything
  else), run on the host dies at once; the exporter logs why; /metrics counts it; a
  process switching the FPU rounding mode (cryptnono-test-rounding, started by this
  test) is killed by the monero container; a process connecting to a loopback address
  this test made up and listed in the banned-IP ConfigMap is killed by the
  tcpflowkiller container, and so is one connecting to a new address after the
  kubelet-style update of that list; the running processes hold only the
  capabilities the design says; the exporter can open the root:root 0660 runtime
  socket the chart mounts, and could not without the group the chart gives it; a
  killed process made to look like a pod's container (kubelet cgroup layout) makes
  the exporter (gRPC, in the image) dial that socket; with
  remoteAccess on (key Secrets made by `cryptnono keygen`), an authorized subscriber
  reads every stage over tcp:// with CurveZMQ and an unknown key gets nothing; the
  probes pass; a config update through the kubelet's ..data symlink swap is enforced
  without a restart.
- MissingCapabilityTest: the collector started with one capability fewer than the
  chart gives it stops with a non-zero status and a message naming what is missing.

Root only (podman, BPF, killing): exits 77 (skip) otherwise.
"""
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import stat
import struct
import sys
import tempfile
import time
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_common import (BIN, CONTAINERS_CONF, REPO, by_kind, containers, daemonset, expand_env,  # noqa: E402
                           mounts, render, require_tools, run, volumes)

IMAGE = os.environ.get("CRYPTNONO_TEST_IMAGE", "localhost/cryptnono:ctest")
PROGRAMS = ["cryptnono-collector", "cryptnono-enforcer", "cryptnono-exporter", "cryptnono"]
CAP_BITS = {"KILL": 5, "PERFMON": 38, "BPF": 39}
# The enforcers PrivilegeTest runs (the chart's defaults plus tcpflowkiller), and their sockets.
ENFORCERS = {"execwhacker": "execwhacker.sock", "monero": "monero.sock", "tcpflowkiller": "flowkiller.sock"}
BANNED_IPS_CONFIGMAP = ("cryptnono-test-banned-ips", "banned.txt")
os.environ["CONTAINERS_CONF"] = CONTAINERS_CONF


def podman(*args, check=True, **kwargs):
    return run(["podman", *args], check=check, **kwargs)


def random_banned():
    return "deploytest" + secrets.token_hex(16)


def wait_for(predicate, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def cap_mask(names):
    return sum(1 << CAP_BITS[n] for n in names)


def runtime_default_seccomp(path):
    """Writes the seccomp profile that `seccompProfile: RuntimeDefault` means on
    containerd (>= 1.5, what GKE, EKS and AKS nodes run) and moby: podman's default
    profile, plus what containerd's generator adds for the capabilities a container
    holds: `bpf` with CAP_BPF, `perf_event_open` with CAP_PERFMON. The podman 4.3 of
    Debian 12 predates those two rules and allows both syscalls only with CAP_SYS_ADMIN,
    so with its own profile the collector would be refused (EPERM) even holding
    CAP_BPF + CAP_PERFMON."""
    with open("/usr/share/containers/seccomp.json") as f:
        profile = json.load(f)
    added = {"bpf": "CAP_BPF", "perf_event_open": "CAP_PERFMON"}
    rules = []
    for rule in profile["syscalls"]:
        names = [n for n in rule["names"] if n not in added]
        if rule["action"] == "SCMP_ACT_ERRNO" and len(names) != len(rule["names"]):
            # The EPERM fallback for these two: skipped when the container holds the
            # capability that now allows the syscall.
            for name, cap in added.items():
                if name in rule["names"]:
                    rules.append(dict(rule, names=[name], excludes={
                        "caps": sorted(set(rule.get("excludes", {}).get("caps", [])) | {cap})}))
            rule = dict(rule, names=names)
        if rule["names"]:
            rules.append(rule)
    for name, cap in added.items():
        rules.append({"names": [name], "action": "SCMP_ACT_ALLOW", "args": [], "comment": f"with {cap}",
                      "includes": {"caps": [cap]}, "excludes": {}})
    profile["syscalls"] = rules
    with open(path, "w") as f:
        json.dump(profile, f)
    return path


class KubeletVolume:
    """A ConfigMap/Secret volume laid out the way the kubelet's atomic writer does
    it: files are symlinks into ..data, itself a symlink to a timestamped directory
    that an update replaces with one rename."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path, mode=0o755)
        self.version = 0

    def write(self, files, mode=0o644, group=None):
        self.version += 1
        old = os.path.realpath(os.path.join(self.path, "..data")) if self.version > 1 else None
        ts = os.path.join(self.path, f"..2025_01_01_00_00_00.{self.version:09d}")
        os.makedirs(ts, mode=0o755)
        for key, text in files.items():
            with open(os.path.join(ts, key), "w") as f:
                f.write(text)
            os.chmod(os.path.join(ts, key), mode)
            if group is not None:
                os.chown(os.path.join(ts, key), -1, group)
        tmp = os.path.join(self.path, "..data_tmp")
        os.symlink(os.path.basename(ts), tmp)
        os.rename(tmp, os.path.join(self.path, "..data"))
        for key in files:
            link = os.path.join(self.path, key)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", key), link)
        if old:
            shutil.rmtree(old)


class Pod:
    """Runs a rendered DaemonSet pod's containers with podman, translating each
    setting of the pod spec into the podman option that does the same."""

    def __init__(self, objects, workdir, node_name, cluster_data=None):
        self.ds = daemonset(objects)
        # ConfigMaps and Secrets the cluster holds already: {name: {key: text}}.
        self.cluster_data = cluster_data or {}
        self.spec = self.ds["spec"]["template"]["spec"]
        self.config_maps = {cm["metadata"]["name"]: cm for cm in by_kind(objects, "ConfigMap")}
        self.workdir = workdir
        self.node_name = node_name
        self.tag = secrets.token_hex(4)
        self.netns = f"cryptnono-test-{self.tag}"
        self.names = {}
        self.host_dirs = {}
        self.kubelet_volumes = {}
        self.seccomp = runtime_default_seccomp(os.path.join(workdir, "runtime-default-seccomp.json"))

    def start(self, only=None, drop_caps=(), detach=True, timeout=None):
        """Starts the containers (all, or `only` one). Returns the podman run result
        for a foreground run (detach=False)."""
        if not os.path.exists(f"/run/netns/{self.netns}"):
            run(["ip", "netns", "add", self.netns])
            run(["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"])
            self._make_volumes()
        result = None
        for name, c in containers(self.ds).items():
            if only and name != only:
                continue
            args = self.podman_args(name, c, drop_caps)
            if detach:
                podman("run", "-d", *args)
                self.names[name] = args[args.index("--name") + 1]
            else:
                result = podman("run", "--rm", *args, check=False, timeout=timeout)
        return result

    def _make_volumes(self):
        fs_group = self.spec["securityContext"]["fsGroup"]
        for vol in self.spec["volumes"]:
            path = os.path.join(self.workdir, vol["name"])
            if "emptyDir" in vol:
                # The kubelet: mode 0777, then fsGroup ownership with the setgid bit.
                os.makedirs(path)
                os.chown(path, -1, fs_group)
                os.chmod(path, 0o2777)
                self.host_dirs[vol["name"]] = path
            elif "configMap" in vol:
                kv = KubeletVolume(path)
                name = vol["configMap"]["name"]
                kv.write(self.config_maps[name]["data"] if name in self.config_maps else self.cluster_data[name])
                self.kubelet_volumes[vol["name"]] = kv
                self.host_dirs[vol["name"]] = path
            elif "secret" in vol:
                # The kubelet: only the listed items (else every key), defaultMode, and
                # with an fsGroup the group's ownership plus group read (read-only volume).
                secret = vol["secret"]
                data = self.cluster_data[secret["secretName"]]
                if "items" in secret:
                    data = {item["path"]: data[item["key"]] for item in secret["items"]}
                kv = KubeletVolume(path)
                kv.write(data, mode=secret.get("defaultMode", 0o644) | 0o440, group=fs_group)
                self.host_dirs[vol["name"]] = path
            elif vol.get("hostPath", {}).get("type") == "Socket":
                # The kubelet checks the type before it starts the pod.
                host = vol["hostPath"]["path"]
                if not stat.S_ISSOCK(os.stat(host).st_mode):
                    raise AssertionError(f"hostPath {host} is not a socket: the kubelet would not start the pod")
                self.host_dirs[vol["name"]] = host
            else:
                raise AssertionError(f"volume type not emulated: {vol}")

    def podman_args(self, name, c, drop_caps=()):
        sc = c["securityContext"]
        pod_sc = self.spec["securityContext"]
        args = ["--name", f"cryptnono-{self.tag}-{name}", "--network", f"ns:/run/netns/{self.netns}"]
        if self.spec.get("hostPID"):
            args.append("--pid=host")
        assert not sc.get("privileged"), "the chart must not render privileged containers"
        if sc.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]  # Kubernetes adds no tmpfs
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile")
        assert seccomp == {"type": "RuntimeDefault"}, seccomp
        args += ["--security-opt", f"seccomp={self.seccomp}"]
        caps = sc["capabilities"]
        if caps.get("drop") == ["ALL"]:
            args.append("--cap-drop=ALL")
        add = [cap for cap in caps.get("add", []) if cap not in drop_caps]
        if add:
            args.append("--cap-add=" + ",".join(add))
        args += ["--user", f"{sc['runAsUser']}:{sc['runAsGroup']}", "--group-add", str(pod_sc["fsGroup"])]
        if sc.get("runAsNonRoot"):
            assert sc["runAsUser"] != 0
        limits = c["resources"]["limits"]
        if "memory" in limits:
            args += ["--memory", limits["memory"].replace("Mi", "m").replace("Gi", "g")]
        env = {}
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif e["valueFrom"].get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                env[e["name"]] = self.node_name
            else:
                raise AssertionError(f"env not emulated: {e}")
        for k, v in env.items():
            args += ["--env", f"{k}={v}"]
        for m in c.get("volumeMounts", []):
            assert "subPath" not in m
            opts = "ro" if m.get("readOnly") else "rw"
            args += ["--volume", f"{self.host_dirs[m['name']]}:{m['mountPath']}:{opts}"]
        command = [expand_env(a, env) for a in c["command"] + c.get("args", [])]
        args += ["--entrypoint", command[0], c["image"], *command[1:]]
        return args

    def container_pid(self, name):
        return int(podman("inspect", "--format", "{{.State.Pid}}", self.names[name]).stdout.strip())

    def logs(self, name):
        return podman("logs", self.names[name]).stdout

    def stderr_logs(self, name):
        p = podman("logs", self.names[name])
        return p.stdout + p.stderr

    def http_get(self, port, path):
        """GET inside the pod's network namespace (where the exporter listens)."""
        p = run(["ip", "netns", "exec", self.netns, "curl", "-s", "-o", "-", "-w", "\n%{http_code}",
                 f"http://127.0.0.1:{port}{path}"], check=False)
        body, _, code = p.stdout.rpartition("\n")
        return int(code or 0), body

    def stop(self):
        """Stops every container with SIGTERM, as the kubelet does; returns exit codes."""
        codes = {}
        for name, ctr in self.names.items():
            podman("stop", "-t", "10", ctr, check=False)
            out = podman("inspect", "--format", "{{.State.ExitCode}}", ctr, check=False).stdout.strip()
            codes[name] = int(out) if out.isdigit() else None
        return codes

    def remove(self):
        for ctr in self.names.values():
            podman("rm", "-f", ctr, check=False)
        self.names = {}
        run(["ip", "netns", "del", self.netns], check=False)


def render_for_image(banned, cri_socket=None, remote=False, flowkiller=False):
    """The chart with its defaults (execwhacker, monero, CRI enrichment), this test's
    image and banned string, and the CRI socket at `cri_socket` on the host (off when
    None: no containerd runs on the test machine); with `remote`, remoteAccess on with
    the Secrets REMOTE_SECRETS names; with `flowkiller`, the tcpflowkiller container
    with the banned list BANNED_IPS_CONFIGMAP, and a fan-out threshold no process can
    reach (the collector sees every process of this shared machine: only the banned
    addresses this test makes up may kill)."""
    repo, _, tag = IMAGE.rpartition(":")
    cri = {"enabled": True, "socket": cri_socket} if cri_socket else {"enabled": False}
    values = {"image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
              "enrichment": {"cri": cri},
              "detectors": {"execwhacker": {"configs": {"deploy-test": {
                  "bannedCommandStrings": [banned] if isinstance(banned, str) else list(banned)}}}}}
    if remote:
        values["remoteAccess"] = {"enabled": True, **REMOTE_SECRETS}
    if flowkiller:
        values["detectors"]["tcpflowkiller"] = {
            "enabled": True, "bannedIpv4ConfigMaps": dict([BANNED_IPS_CONFIGMAP]),
            "config": {"FlowKiller": {"unique_destinations_threshold": 1000000}}}
    return render(values=values)


def random_loopback():
    """An address in 127.0.0.0/8 nobody else uses: the whole /8 reaches lo on Linux."""
    return f"127.{secrets.randbelow(254) + 1}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


REMOTE_SECRETS = {"keysSecret": "cryptnono-curve", "authorizedKeysSecret": "cryptnono-forensics"}


def keygen(directory, name):
    """`cryptnono keygen` (the host build's CLI, as an operator runs it): paths of the
    key pair file and the public key file."""
    path = os.path.join(directory, name)
    run([os.path.join(BIN, "cryptnono"), "keygen", path])
    return path + ".key", path + ".pub"


def read(path):
    with open(path) as f:
        return f.read()


class FakeRuntimeSocket:
    """A unix socket where the CRI socket would be, root:root 0660 like containerd's:
    it only counts the connections it accepts (whoever gets through the permissions)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chown(path, 0, 0)
        os.chmod(path, 0o660)
        self.sock.listen(16)
        self.sock.settimeout(0.1)

    def accepted(self, timeout):
        """The command lines of the processes whose connections were accepted within
        `timeout` seconds (SO_PEERCRED: who connected, not only that someone did)."""
        peers, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            pid, _, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    peers.append(f.read().replace(b"\0", b" ").decode(errors="replace").strip())
            except OSError:
                peers.append(f"pid {pid} (gone)")
            conn.close()
        return peers

    def close(self):
        self.sock.close()
        os.unlink(self.path)


class ImageBuildTest(unittest.TestCase):
    def test_image_builds_with_podman(self):
        start = time.monotonic()
        proc = run([os.path.join(REPO, "deploy", "build-image.sh"), IMAGE], check=False)
        took = time.monotonic() - start
        self.assertEqual(proc.returncode, 0, proc.stdout[-5000:] + proc.stderr[-5000:])
        size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
        print(f"\nimage {IMAGE} built in {took:.0f} s, {size / 1e6:.1f} MB", file=sys.stderr)


class ImageTest(unittest.TestCase):
    def test_runtime_root_holds_only_the_programs_and_their_libraries(self):
        ctr = podman("create", IMAGE).stdout.strip()
        try:
            listing = run(["sh", "-c", f"podman export {ctr} | tar -t"]).stdout.split()
        finally:
            podman("rm", ctr, check=False)
        files = {p.rstrip("/") for p in listing}
        for prog in PROGRAMS:
            self.assertIn(f"usr/bin/{prog}", files)
        executables = {f for f in files if f.startswith(("bin/", "sbin/", "usr/bin/", "usr/sbin/"))}
        self.assertEqual(executables, {f"usr/bin/{p}" for p in PROGRAMS})
        for banned in ("bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/apt", "usr/bin/dpkg", "usr/bin/gcc"):
            self.assertNotIn(banned, files)
        allowed = re.compile(r"^(\.|usr|usr/bin(/.*)?|etc|etc/(passwd|group|ld\.so\.cache)|run|run/cryptnono|"
                             r"lib|lib64|usr/lib|usr/lib64|(usr/)?lib(64)?/.*\.so[.0-9]*|(usr/)?lib(/x86_64-linux-gnu)?|"
                             r"usr/share|usr/share/doc(/[^/]+(/copyright)?)?|dev|proc|sys)$")
        unexpected = sorted(f for f in files if not allowed.match(f.removeprefix("./")))
        self.assertEqual(unexpected, [], "files other than programs, libraries, passwd/group, copyrights")
        libs = sorted(f for f in files if ".so" in f)
        print(f"\n{len(files)} paths, {len(libs)} shared libraries: "
              f"{' '.join(os.path.basename(l) for l in libs)}", file=sys.stderr)

    def test_every_program_runs_in_the_image(self):
        for prog in PROGRAMS[:3]:
            with self.subTest(prog=prog):
                p = podman("run", "--rm", "--network=none", "--entrypoint", f"/usr/bin/{prog}", IMAGE, "--check",
                           check=False)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = podman("run", "--rm", "--network=none", IMAGE, "--help", check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("tail", p.stdout)
        # No shell to fall back on.
        p = podman("run", "--rm", "--network=none", "--entrypoint", "/bin/sh", IMAGE, "-c", "true", check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_default_user_is_unprivileged(self):
        user = podman("image", "inspect", "--format", "{{.Config.User}}", IMAGE).stdout.strip()
        self.assertEqual(user, "65532:65532")


class PrivilegeTest(unittest.TestCase):
    """One pod for the whole class: started once, checked from several angles."""

    @classmethod
    def setUpClass(cls):
        cls.banned = random_banned()
        cls.banned_in_container = random_banned()  # for the fake pod's container
        cls.workdir = tempfile.mkdtemp(prefix="cryptnono-deploy-")
        os.chmod(cls.workdir, 0o755)
        cls.runtime = FakeRuntimeSocket(os.path.join(cls.workdir, "containerd.sock"))
        cls.keys = os.path.join(cls.workdir, "keys")
        os.makedirs(cls.keys)
        server_key, cls.server_pub = keygen(cls.keys, "server")
        cls.client_key, client_pub = keygen(cls.keys, "forensics")
        cls.banned_ip = random_loopback()
        cls.objects = render_for_image([cls.banned, cls.banned_in_container], cri_socket=cls.runtime.path,
                                       remote=True, flowkiller=True)
        cls.pod = Pod(cls.objects, cls.workdir, node_name=f"node-{secrets.token_hex(3)}", cluster_data={
            REMOTE_SECRETS["keysSecret"]: {"server.key": read(server_key), "server.pub": read(cls.server_pub)},
            REMOTE_SECRETS["authorizedKeysSecret"]: {"forensics.pub": read(client_pub)},
            BANNED_IPS_CONFIGMAP[0]: {BANNED_IPS_CONFIGMAP[1]: f"# made up by the test\n{cls.banned_ip}\n"}})
        cls.exporter = containers(cls.pod.ds)["exporter"]
        cls.port = cls.exporter["ports"][0]["containerPort"]
        try:
            cls.pod.start()
            cls.wait_ready()
        except BaseException:
            cls.dump_logs()
            cls.pod.remove()
            cls.runtime.close()
            shutil.rmtree(cls.workdir, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            codes = cls.pod.stop()
            cls.stop_codes = codes
        finally:
            cls.pod.remove()
            cls.runtime.close()
            shutil.rmtree(cls.workdir, ignore_errors=True)
        # Every program exits 0 on SIGTERM (the kubelet's stop); checked here because
        # it can only be seen at the end.
        bad = {k: v for k, v in codes.items() if v != 0}
        if bad:
            raise AssertionError(f"containers did not exit 0 on SIGTERM: {bad}")

    @classmethod
    def dump_logs(cls):
        for name in cls.pod.names:
            print(f"--- {name} ---\n{cls.pod.stderr_logs(name)[-4000:]}", file=sys.stderr)

    @classmethod
    def probe_ok(cls, name, probe):
        c = containers(cls.pod.ds)[name]
        spec = c[probe]
        if "exec" in spec:
            p = podman("exec", cls.pod.names[name], *spec["exec"]["command"], check=False,
                       timeout=spec.get("timeoutSeconds", 1) + 5)
            return p.returncode == 0
        get = spec["httpGet"]
        assert get["port"] == "metrics"
        code, _ = cls.pod.http_get(cls.port, get["path"])
        return code == 200

    @classmethod
    def wait_ready(cls):
        for name in ("collector", *ENFORCERS, "exporter"):
            wait_for(lambda n=name: cls.probe_ok(n, "readinessProbe"), 60, f"{name} readiness probe")

    def metrics(self):
        code, body = self.pod.http_get(self.port, "/metrics")
        self.assertEqual(code, 200)
        out = {}
        for line in body.splitlines():
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$', line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def killed_total(self):
        return self.metrics().get('cryptnono_execwhacker_processes_killed_total{source="execwhacker.bpf"}', 0.0)

    def decisions(self):
        lines = []
        for line in self.pod.logs("exporter").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def run_seed_command(self, banned):
        """The operator document's test, with this test's own string, on the host."""
        start = time.monotonic()
        proc = subprocess.Popen(["sh", "-c", f"sleep 1 && echo {banned}"], stdout=subprocess.PIPE, text=True)
        proc.wait(timeout=30)
        took = time.monotonic() - start
        # When the kill lands after sh has already forked `sleep` (sh starts in about as
        # long as the kill takes), the orphaned sleep keeps the pipe open for its second.
        out, _ = proc.communicate(timeout=30)
        return proc.pid, proc.returncode, out, took

    def assert_killed_logged_counted(self, banned):
        before = self.killed_total()
        pid, returncode, out, took = self.run_seed_command(banned)
        if returncode != -9:
            time.sleep(1)  # what the stages say about it, for the failure's report
            said = [d for d in self.decisions() if d.get("pid") == pid or d.get("matched") == banned]
            self.dump_logs()
            self.fail(f"not killed: rc={returncode} out={out!r}; decisions about it: {said}; "
                      f"enforcer counters: { {k: v for k, v in self.metrics().items() if 'execwhacker' in k} }")
        self.assertEqual(out, "")  # killed before `echo` could run
        line = wait_for(lambda: [d for d in self.decisions() if d.get("matched") == banned], 10,
                        "the exporter's JSON line")[0]
        self.assertLess(took, 1.0, f"killed only after the sleep: {line}")
        self.assertLess(line["exec_to_kill_us"], 1e6, line)
        self.assertEqual(line["action"], "killed")
        self.assertEqual(line["pid"], pid)
        self.assertEqual(line["source"], "execwhacker.bpf")
        self.assertEqual(line["cmdline"], f"/usr/bin/sh -c 'sleep 1 && echo {banned}'")
        self.assertEqual(line["node"], self.pod.node_name)  # NODE_NAME from the downward API
        for field in ("pid", "cmdline", "matched", "source", "container_type", "labels", "image", "action",
                      "event", "level", "timestamp"):
            self.assertIn(field, line)
        wait_for(lambda: self.killed_total() >= before + 1, 10, "/metrics to count the kill")
        self.assertEqual(self.killed_total(), before + 1)
        return line

    def test_seed_command_is_killed_logged_and_counted(self):
        line = self.assert_killed_logged_counted(self.banned)
        print(f"\nkilled in {line.get('exec_to_kill_us', 0):.0f} us after exec", file=sys.stderr)

    def test_processes_hold_only_their_capabilities(self):
        pod = self.pod
        status = {name: proc_status(pod.container_pid(name)) for name in ("collector", *ENFORCERS, "exporter")}
        collector, enforcer, exporter = status["collector"], status["execwhacker"], status["exporter"]
        # The collector dropped BPF and PERFMON after attaching; all have no_new_privs.
        self.assertEqual(int(collector["CapEff"], 16), 0)
        self.assertEqual(int(collector["CapPrm"], 16), 0)
        for name in ENFORCERS:
            self.assertEqual(int(status[name]["CapEff"], 16), cap_mask(["KILL"]), name)
            self.assertEqual(status[name]["Uid"].split()[0], "0", name)
        self.assertEqual(int(exporter["CapEff"], 16), 0)
        self.assertEqual(int(exporter["CapPrm"], 16), 0)
        for name, st in status.items():
            with self.subTest(container=name):
                self.assertEqual(st["NoNewPrivs"].strip(), "1")
                self.assertEqual(int(st["CapBnd"], 16) & ~cap_mask(["BPF", "PERFMON", "KILL"]), 0)
                self.assertEqual(st["Seccomp"].strip(), "2")  # filtered: the runtime's default profile
        print("\nresident memory (peak): " + ", ".join(
            f"{n} {st['VmRSS'].strip()} ({st['VmHWM'].strip()})" for n, st in status.items()), file=sys.stderr)
        self.assertEqual(exporter["Uid"].split()[0], "65532")
        # Group 0 for the runtime socket (the runtime lists the primary group among the
        # supplementary ones too), the fsGroup for the pod's sockets, nothing else.
        self.assertEqual(exporter["Gid"].split()[0], "0")
        self.assertIn("65532", exporter["Groups"].split())
        self.assertLessEqual(set(exporter["Groups"].split()), {"0", "65532"})
        self.assertEqual(enforcer["Uid"].split()[0], "0")
        # The sockets: owner and the fsGroup may connect, nobody else.
        sockets = pod.host_dirs["sockets"]
        for sock in ("collector.sock", *ENFORCERS.values()):
            st = os.stat(os.path.join(sockets, sock))
            self.assertEqual(st.st_mode & 0o777, 0o660, sock)
            self.assertEqual(st.st_gid, 65532, sock)

    def test_probes_pass(self):
        for name in ("collector", *ENFORCERS, "exporter"):
            for probe in ("readinessProbe", "livenessProbe"):
                with self.subTest(container=name, probe=probe):
                    self.assertTrue(self.probe_ok(name, probe))

    def test_monero_container_kills_a_rounding_mode_switcher(self):
        """cryptnono-test-rounding (a host process switching the FPU rounding mode the way
        RandomX does, started here: nothing else is targeted) is reported by the
        collector's fpu probe and killed by the monero container."""
        program = os.path.join(BIN, "cryptnono-test-rounding")
        if not os.path.isfile(program):
            self.fail(f"{program} is missing: build the cryptnono-test-rounding target")
        counted = 'cryptnono_monero_processes_killed_total'
        before = sum(v for k, v in self.metrics().items() if k.startswith(counted))
        start = time.monotonic()
        proc = subprocess.Popen([program, "0"], stdout=subprocess.DEVNULL)
        try:
            returncode = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.fail("the rounding-mode switcher was not killed within 60 s")
        took = time.monotonic() - start
        self.assertEqual(returncode, -9, f"not killed by SIGKILL: {returncode}")
        line = wait_for(lambda: [d for d in self.decisions() if d.get("pid") == proc.pid and
                                 d.get("detector") == "monero"], 10, "the exporter's monero JSON line")[0]
        self.assertEqual(line["action"], "killed", line)
        self.assertEqual(line["node"], self.pod.node_name)
        self.assertIn("fpu_switches", line)
        wait_for(lambda: sum(v for k, v in self.metrics().items() if k.startswith(counted)) >= before + 1, 10,
                 "/metrics to count the monero kill")
        print(f"\nmonero: rounding-mode switcher killed {took:.2f} s after start "
              f"({line['fpu_switches']} switches, rule {line.get('rule')})", file=sys.stderr)

    def connect_killed(self, address, wait):
        """A host process connecting to `address` (a listener of this test's): whether
        it is SIGKILLed within `wait` seconds (it is killed by this test otherwise)."""
        listener = socket.socket()
        listener.bind((address, 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-c", "import socket, sys, time\n"
                                 "s = socket.create_connection((sys.argv[1], int(sys.argv[2])))\ntime.sleep(60)",
                                 address, str(port)])
        try:
            return proc.wait(timeout=wait) == -9, proc.pid
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return False, proc.pid
        finally:
            listener.close()

    def test_tcpflowkiller_kills_a_banned_destination_and_follows_list_updates(self):
        """The banned-IP ConfigMap, mounted as a directory: a connect to the listed
        address is killed; after the kubelet-style update of the list (..data swap), a
        connect to the new address is killed too, without a restart."""
        pid_before = self.pod.container_pid("tcpflowkiller")
        killed, pid = self.connect_killed(self.banned_ip, 15)
        self.assertTrue(killed, f"a connect to the banned {self.banned_ip} was not killed")
        line = wait_for(lambda: [d for d in self.decisions() if d.get("pid") == pid and
                                 d.get("detector") == "flowkiller"], 10, "the exporter's flowkiller JSON line")[0]
        self.assertEqual(line["action"], "killed", line)
        self.assertTrue(line["destination"].startswith(self.banned_ip + ":"), line)
        second = random_loopback()
        (vol,) = [v for v in volumes(self.pod.ds).values() if v.get("configMap", {}).get("name") ==
                  BANNED_IPS_CONFIGMAP[0]]
        self.pod.kubelet_volumes[vol["name"]].write({BANNED_IPS_CONFIGMAP[1]: f"{self.banned_ip}\n{second}\n"})
        start = time.monotonic()
        wait_for(lambda: self.connect_killed(second, 2)[0], 30, f"a connect to the newly banned {second} to be killed",
                 interval=0)
        print(f"\nflowkiller: banned connect killed ({line.get('rule')}); list update enforced within "
              f"{time.monotonic() - start:.1f} s", file=sys.stderr)
        self.assertEqual(self.pod.container_pid("tcpflowkiller"), pid_before)

    def test_exporter_can_open_the_runtime_socket_and_only_with_its_group(self):
        """The CRI socket the chart mounts from the host is root:root 0660 (as
        containerd's): the exporter, uid 65532 with the chart's group 0, gets through;
        the same container without that group does not. (`cryptnono tail ipc://` is a
        plain unix-socket connect, run with the container's own settings.)"""
        exporter = containers(self.pod.ds)["exporter"]
        target = mounts(exporter)["cri-socket"]["mountPath"]
        self.runtime.accepted(0.2)  # nothing pending from earlier
        tail = ["/usr/bin/cryptnono", "tail", f"ipc://{target}", "--count", "1", "--timeout", "1"]

        def tail_connected():
            return [p for p in self.runtime.accepted(1.5) if "cryptnono tail" in p]

        podman("exec", "-d", self.pod.names["exporter"], *tail)
        self.assertTrue(tail_connected(), "the exporter's settings could not connect to the CRI socket")
        podman("exec", "-d", "--user", "65532:65532", self.pod.names["exporter"], *tail)
        self.assertEqual(tail_connected(), [], "connected without group 0: the check proves nothing")

    def test_remote_subscriber_needs_an_authorized_curve_key(self):
        """remoteAccess: from the pod's network (where a cluster peer would connect to
        the pod IP), the operator's `cryptnono tail tcp://... --curve-keys me.key
        --curve-server-key server.pub` reads every stage's stats; a key that is not in
        the authorized Secret gets nothing."""
        ports = {}
        for name, c in containers(self.pod.ds).items():
            for p in c.get("ports", []):
                if p["name"].startswith("zmq-"):
                    ports[name] = p["containerPort"]
        self.assertEqual(set(ports), {"collector", *ENFORCERS})

        def tail(port, key, timeout):
            return run(["ip", "netns", "exec", self.pod.netns, os.path.join(BIN, "cryptnono"), "tail",
                        f"tcp://127.0.0.1:{port}", "--curve-keys", key, "--curve-server-key", self.server_pub,
                        "--topic", "stats", "--count", "1", "--timeout", str(timeout)], check=False, timeout=60)

        for name, port in ports.items():
            with self.subTest(stage=name):
                p = tail(port, self.client_key, 15)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(len(p.stdout.splitlines()), 1, p.stdout)
                self.assertIn("stats", p.stdout)
        stranger_key, _ = keygen(self.keys, "stranger")
        p = tail(ports["execwhacker"], stranger_key, 3)
        self.assertEqual(p.returncode, 3, f"an unauthorized key got something: {p.stdout}{p.stderr}")
        self.assertEqual(p.stdout, "")

    def test_exporter_asks_the_mounted_cri_socket_about_a_killed_container(self):
        """A process made to look like a pod's container (its cgroup v2 path is the
        kubelet's cgroupfs layout: kubepods/besteffort/pod<uid>/<container id>) runs
        the seed command with this test's string: it is killed, and the exporter in the
        image (gRPC) dials the CRI socket mounted from the host to name it; its JSON
        line carries the container id and pod uid from the cgroup."""
        root = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
        pod_uid, container_id = str(uuid.uuid4()), secrets.token_hex(32)
        pod_dir = os.path.join(root, "kubepods", "besteffort", f"pod{pod_uid}")
        cgroup = os.path.join(pod_dir, container_id)
        os.makedirs(cgroup)
        try:
            self.runtime.accepted(0.2)  # nothing pending from earlier
            # Joins the cgroup, then execs the seed command: the string is only in the
            # environment until then, so only that exec can match.
            code = ("import os, sys\nopen(sys.argv[1], 'w').write(str(os.getpid()))\n"
                    "os.execv('/bin/sh', ['sh', '-c', 'sleep 1 && echo ' + os.environ['CRYPTNONO_TEST_BANNED']])")
            proc = subprocess.Popen([sys.executable, "-c", code, os.path.join(cgroup, "cgroup.procs")],
                                    env={**os.environ, "CRYPTNONO_TEST_BANNED": self.banned_in_container})
            self.assertEqual(proc.wait(timeout=30), -9)
            peers = self.runtime.accepted(5)
            self.assertTrue([p for p in peers if "cryptnono-exporter" in p],
                            f"the exporter did not dial the CRI socket (connections from: {peers})")
            line = wait_for(lambda: [d for d in self.decisions() if d.get("pid") == proc.pid], 10,
                            "the exporter's JSON line")[0]
            self.assertEqual(line["action"], "killed", line)
            self.assertEqual(line["container_id"], container_id, line)
            self.assertEqual(line["pod_uid"], pod_uid, line)
            print(f"\nCRI lookup through the mounted socket: {len(peers)} connection(s) from the exporter; "
                  f"line without labels as expected from a fake runtime: {line.get('labels')}", file=sys.stderr)
        finally:
            for d in (cgroup, pod_dir):
                try:
                    os.rmdir(d)
                except OSError:
                    pass

    def test_config_update_applies_in_place(self):
        """The kubelet's in-place update of a mounted ConfigMap reaches the enforcer
        without a restart."""
        pid_before = self.pod.container_pid("execwhacker")
        second = random_banned()
        generation = 'cryptnono_enforcer_config_generation_total{name="execwhacker"}'
        before = self.metrics().get(generation, 0)
        self.assertGreaterEqual(before, 1)
        vol = volumes(self.pod.ds)["execwhacker-config"]
        key = next(iter(self.pod.config_maps[vol["configMap"]["name"]]["data"]))
        self.pod.kubelet_volumes[vol["name"]].write(
            {key: json.dumps({"bannedCommandStrings": [self.banned, self.banned_in_container, second],
                              "allowedCommandPatterns": []})})
        wait_for(lambda: self.metrics().get(generation, 0) > before, 30, "the enforcer to reload its config")
        self.assert_killed_logged_counted(second)
        self.assertEqual(self.pod.container_pid("execwhacker"), pid_before)


class MissingCapabilityTest(unittest.TestCase):
    def test_collector_without_one_capability_fails_clearly(self):
        objects = render_for_image(random_banned())
        collector = containers(daemonset(objects))["collector"]
        for cap in collector["securityContext"]["capabilities"]["add"]:
            with self.subTest(missing=cap):
                workdir = tempfile.mkdtemp(prefix="cryptnono-deploy-")
                pod = Pod(objects, workdir, node_name="node-missing-cap")
                try:
                    start = time.monotonic()
                    p = pod.start(only="collector", drop_caps=[cap], detach=False, timeout=60)
                    took = time.monotonic() - start
                finally:
                    pod.remove()
                    shutil.rmtree(workdir, ignore_errors=True)
                out = p.stdout + p.stderr
                self.assertNotEqual(p.returncode, 0, f"collector without CAP_{cap} did not fail:\n{out}")
                self.assertLess(took, 30)
                # Clear = says which capability is missing, not only which are needed.
                self.assertRegex(out, re.compile(rf"missing[^\n]*\bCAP_{cap}\b", re.I),
                                 f"the error does not name the missing capability:\n{out}")
                print(f"\nwithout CAP_{cap}: exit {p.returncode}: {out.strip().splitlines()[-1]}",
                      file=sys.stderr)


if __name__ == "__main__":
    require_tools(["podman", "runc", "helm", "node", "k8s-schemas", "ip", "curl"], need_root=True)
    unittest.main()
