#!/usr/bin/env python3
"""Runtime tier: the exporter asks a REAL container runtime who a killed process was.

A private containerd (Debian's package: its own root, state and socket in a temp dir,
cgroupfs driver) runs a pod made through the CRI API the way the kubelet makes one
(sandbox with the pod's metadata and cgroup parent /kubepods/besteffort/pod<uid>, host
network so no CNI is needed, a container with the kubelet's io.kubernetes.* labels).
No registry is reachable: the image is built here from Debian's busybox-static binary as
an OCI archive and imported with `ctr`; it is the sandbox ("pause") image too.

The real collector, an execwhacker enforcer banning a random string and the exporter
(--cri-socket at that containerd) run as in the integration tier; the container runs a
command holding the banned string, and the exporter's JSON line must name that pod, its
namespace, container, uid and image. Then containerd is killed: lines must still come,
with the container id and "container-lookup-failed"; once it is back, they are enriched again.

Docker-in-Docker as BinderHub runs it: a real dockerd (Debian's docker.io, private paths,
on the same containerd) whose --cgroup-parent is the cgroup of a CRI pod's container, so
its containers sit at /kubepods/besteffort/pod<uid>/<pod container>/docker/<id> exactly as
a dind pod's builds do. (dockerd itself runs on the host here, not inside the pod: only
the cgroup nesting and the two lookups are what the exporter sees, and both are real.)

Run by CTest (label ``runtime``). Needs root, containerd, ctr and runc (exits 77 otherwise);
the Docker case also dockerd (skipped without it).
"""
import hashlib
import http.client
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from test_pipeline import BIN, Pipeline, wait_for, write_config  # noqa: E402

CRI_TOOL = os.environ.get("CRYPTNONO_CRI_TOOL", "")
IMAGE = "docker.io/cryptnono/busybox-test:1"
DOCKER_IMAGE = "cryptnono/dind-build:1"


def build_image(path):
    """An OCI image archive: one layer with busybox (static) and a few applet links."""
    def add(t, name, data, mode=0o644):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, 0
        t.addfile(info, io.BytesIO(data))

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
        for d in ("bin", "etc", "proc", "sys", "dev", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        with open("/bin/busybox", "rb") as f:
            add(t, "bin/busybox", f.read(), 0o755)
        for applet in ("sh", "sleep", "echo"):
            info = tarfile.TarInfo("bin/" + applet)
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(info)
    layer = layer.getvalue()

    def digest(data):
        return "sha256:" + hashlib.sha256(data).hexdigest()

    # As a sandbox image it must just stay up: sleep is our "pause".
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": ["/bin/sleep"], "Cmd": ["2147483"], "Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [digest(layer)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer),
                    "size": len(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest),
        "size": len(manifest),
        "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "1"}}]}).encode()
    # manifest.json too: Docker 20.10's image load reads only its own archive format.
    docker_manifest = json.dumps([{"Config": "blobs/sha256/" + digest(config)[7:], "RepoTags": [DOCKER_IMAGE],
                                   "Layers": ["blobs/sha256/" + digest(layer)[7:]]}]).encode()
    with tarfile.open(path, "w") as t:
        add(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(t, "index.json", index)
        add(t, "manifest.json", docker_manifest)
        for blob in (layer, config, manifest):
            add(t, "blobs/sha256/" + digest(blob)[7:], blob)


class Containerd:
    """A private containerd: config from `containerd config default`, paths in `dir`."""

    def __init__(self, dir):
        self.dir = dir
        self.socket = os.path.join(dir, "containerd.sock")
        self.config = os.path.join(dir, "config.toml")
        default = subprocess.run(["containerd", "config", "default"], check=True, capture_output=True,
                                 text=True).stdout
        out = []
        for line in default.splitlines():
            s = line.strip()
            if line.startswith("root = "):
                line = f'root = "{dir}/root"'
            elif line.startswith("state = "):
                line = f'state = "{dir}/state"'
            elif s.startswith('address = "/run/containerd/containerd.sock"'):
                line = f'  address = "{self.socket}"'
            elif s.startswith("sandbox_image = "):
                line = f'    sandbox_image = "{IMAGE}"'
            elif s.startswith("restrict_oom_score_adj = "):
                # root here has no CAP_SYS_RESOURCE: it cannot lower oom_score_adj.
                line = "    restrict_oom_score_adj = true"
            elif s.startswith("SystemdCgroup = "):
                line = line.split("=")[0] + "= false"
            out.append(line)
        assert f'address = "{self.socket}"' in "\n".join(out), "containerd's default config changed shape"
        with open(self.config, "w") as f:
            f.write("\n".join(out) + "\n")
        self.proc = None
        self.log = open(os.path.join(dir, "containerd.log"), "ab")

    def start(self):
        self.proc = subprocess.Popen(["containerd", "--config", self.config], stdout=self.log, stderr=self.log)
        wait_for(lambda: os.path.exists(self.socket) and self.ctr("version").returncode == 0, 30,
                 "containerd to answer")

    def kill(self):
        """SIGKILL, as a crash: the shims (and so the containers) keep running."""
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def ctr(self, *args):
        return subprocess.run(["ctr", "--address", self.socket, "-n", "k8s.io", *args], capture_output=True,
                              text=True, timeout=60)

    def cri(self, *args, check=True, privileged=False):
        flags = ["--privileged"] if privileged else []
        r = subprocess.run([CRI_TOOL, *flags, "unix://" + self.socket, *args], capture_output=True, text=True,
                           timeout=90)
        if check and r.returncode != 0:
            raise AssertionError(f"cri_tool {args[0]} failed: {r.stderr}\n{self.tail_log()}")
        return r

    def tail_log(self):
        with open(os.path.join(self.dir, "containerd.log"), "rb") as f:
            return f.read()[-3000:].decode(errors="replace")

    def shim_pids(self):
        """Shims started for this containerd (their command line names our socket)."""
        pids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and self.socket.encode() in argv:
                pids.append(int(pid))
        return pids


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("docker", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class Dockerd:
    """A private dockerd on the private containerd; its containers go under `cgroup_parent`."""

    def __init__(self, dir, containerd_socket, cgroup_parent):
        self.dir = dir
        self.socket = os.path.join(dir, "docker.sock")
        with open(os.path.join(dir, "daemon.json"), "w") as f:
            f.write("{}")
        self.log = open(os.path.join(dir, "dockerd.log"), "ab")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", f"{dir}/data", "--exec-root", f"{dir}/exec", "--pidfile", f"{dir}/docker.pid",
             "-H", "unix://" + self.socket, "--containerd", containerd_socket, "--config-file", f"{dir}/daemon.json",
             "--iptables=false", "--ip6tables=false", "--bridge=none", "--exec-opt", "native.cgroupdriver=cgroupfs",
             "--cgroup-parent", cgroup_parent], stdout=self.log, stderr=self.log)
        wait_for(lambda: os.path.exists(self.socket) and self.api("GET", "/_ping")[0] == 200, 60, "dockerd")

    def api(self, method, path, body=None, raw=None):
        try:
            c = UnixHTTPConnection(self.socket)
            headers = {}
            if body is not None:
                raw, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
            elif raw is not None:
                headers = {"Content-Type": "application/x-tar"}
            c.request(method, path, body=raw, headers=headers)
            r = c.getresponse()
            return r.status, r.read()
        except OSError:
            return 0, b""

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class RuntimePipeline(Pipeline):
    """The integration tier's pipeline, with extra exporter flags."""

    def __init__(self, configs, exporter_args):
        self.exporter_args = list(exporter_args)
        try:
            super().__init__(configs)
        except BaseException:
            # Not ready (a stage exited): stop the stages that did start before failing.
            if getattr(self, "procs", None):
                codes = self.stop()
                sys.stderr.write("".join(f"--- {n} ({c}) ---\n{self.log(n)[-2000:]}\n" for n, c in codes.items()))
            if getattr(self, "dir", None):
                self.cleanup()
            raise

    def _start(self, name, argv):
        if name == "exporter":
            argv = [*argv, *self.exporter_args]
        super()._start(name, argv)


def split_command(banned):
    """A shell loop that execs `sleep 30 <banned>` every second, without the banned
    string in the shell's own command line (the shell must survive to repeat it)."""
    half = len(banned) // 2
    return ["/bin/sh", "-c",
            f'A={banned[:half]}; B={banned[half:]}; while true; do /bin/sleep 30 "$A$B"; /bin/sleep 1; done']


class RuntimeTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (BPF, containerd)")
        for tool in ("containerd", "ctr", "runc"):
            if not shutil.which(tool):
                self.skipTest(f"{tool} not installed (scripts/install-deps.sh)")
        if not os.path.exists("/bin/busybox"):
            self.skipTest("busybox-static not installed")
        self.dir = tempfile.mkdtemp(prefix="cryptnono-rt-")
        self.containerd = Containerd(self.dir)
        self.containerd.start()
        image = os.path.join(self.dir, "image.tar")
        build_image(image)
        imported = self.containerd.ctr("images", "import", image)
        self.assertEqual(imported.returncode, 0, imported.stderr)
        self.pods = []  # (sandbox id, pod uid)
        self.pipeline = None
        self.dockerd = None

    def tearDown(self):
        if getattr(self, "containerd", None) is None:
            return
        if self.pipeline:
            codes = self.pipeline.stop()
            if self._outcome_failed():
                for n in codes:
                    sys.stderr.write(f"--- {n} stderr ---\n{self.pipeline.log(n)[-3000:]}\n")
                sys.stderr.write(f"--- containerd ---\n{self.containerd.tail_log()}\n")
            self.pipeline.cleanup()
        if self.dockerd:
            status, body = self.dockerd.api("GET", "/containers/json?all=1")
            for c in json.loads(body) if status == 200 else []:
                self.dockerd.api("DELETE", f"/containers/{c['Id']}?force=1")
            self.dockerd.stop()
        if self.containerd.proc is None:
            self.containerd.start()
        for sandbox, _ in self.pods:
            self.containerd.cri("remove-pod", sandbox, check=False)
        self.containerd.stop()
        for pid in self.containerd.shim_pids():  # only if removing the pods failed
            os.kill(pid, signal.SIGKILL)
        # The kubelet removes pod cgroups; here that is ours to do.
        for _, uid in self.pods:
            for top in os.listdir("/sys/fs/cgroup"):
                pod = os.path.join("/sys/fs/cgroup", top, "kubepods/besteffort", f"pod{uid}")
                # Deepest first: Docker's nested cgroups, the pod's containers, the pod.
                for root, _dirs, _files in sorted(os.walk(pod), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(root)
                    except OSError:
                        pass
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[1].startswith(self.dir)]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _outcome_failed(self):
        # In tearDown, unittest (3.11+) reports outcome.success for tearDown's own part,
        # True so far: whether the test failed is in the result's lists.
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        result = outcome.result
        bad = getattr(result, "failures", []) + getattr(result, "errors", [])
        return not outcome.success or any(test is self for test, _ in bad)

    def start_pipeline(self, banned, *exporter_args, docker_socket=""):
        cfg = os.path.join(self.dir, "config.json")
        write_config(cfg, [banned])
        self.pipeline = RuntimePipeline([cfg], ["--cri-socket", "unix://" + self.containerd.socket,
                                                "--docker-socket", docker_socket, *exporter_args])
        return self.pipeline

    def run_pod(self, name, namespace, container, command, privileged=False):
        uid = str(uuid.uuid4())
        sandbox = self.containerd.cri("run-pod", name, namespace, uid, privileged=privileged).stdout.strip()
        self.pods.append((sandbox, uid))
        cid = self.containerd.cri("create", sandbox, name, namespace, uid, container, IMAGE, "--",
                                  *command, privileged=privileged).stdout.strip()
        self.assertRegex(cid, r"^[0-9a-f]{64}$")
        self.containerd.cri("start", cid)
        return uid, cid

    def kill_lines(self, banned):
        return [l for l in self.pipeline.json_lines() if l.get("matched") == banned and l.get("action") == "killed"]

    def test_kill_in_a_pod_names_the_pod_namespace_container_and_image(self):
        banned = "rtest" + secrets.token_hex(16)
        p = self.start_pipeline(banned)
        uid, cid = self.run_pod("jupyter-rt-user", "hub-rt", "notebook", split_command(banned))

        line = wait_for(lambda: next(iter(self.kill_lines(banned)), None), 30, "a kill line for the pod")
        print(f"\nkill line: {json.dumps(line)}")
        self.assertIn(f"/bin/sleep 30 {banned}", line["cmdline"])
        # Who it was: from the cgroup captured at exec ...
        self.assertEqual(line["container_id"], cid)
        self.assertEqual(line["pod_uid"], uid)
        self.assertEqual(line["container_type"], "cri")
        # ... and from containerd, through the CRI.
        self.assertEqual(line["labels"], {
            "io.kubernetes.container.name": "notebook",
            "io.kubernetes.pod.name": "jupyter-rt-user",
            "io.kubernetes.pod.namespace": "hub-rt",
            "io.kubernetes.pod.uid": uid,
        })
        self.assertEqual(line["image"], IMAGE)
        self.assertNotIn("container-lookup-failed", line["reason"])

        # Further kills in that container come from the cache.
        wait_for(lambda: len(self.kill_lines(banned)) >= 3, 30, "three kill lines")
        self.assertTrue(all(l["labels"].get("io.kubernetes.pod.name") == "jupyter-rt-user"
                            for l in self.kill_lines(banned)))
        lookups = p.metric("cryptnono_exporter_container_lookups_total", runtime="cri")
        hits = p.metric("cryptnono_exporter_container_cache_hits_total")
        misses = p.metric("cryptnono_exporter_container_cache_misses_total")
        count = p.metric("cryptnono_exporter_container_lookup_seconds_count", runtime="cri")
        total = p.metric("cryptnono_exporter_container_lookup_seconds_sum", runtime="cri")
        print(f"cri lookups {lookups:.0f}, mean lookup {1000 * total / max(count, 1):.2f} ms, "
              f"cache hits {hits:.0f}, misses {misses:.0f}")
        self.assertEqual(lookups, 1)
        self.assertGreaterEqual(hits, 2)

    def test_containerd_gone_lines_still_logged_with_lookup_failed(self):
        banned = "rtest" + secrets.token_hex(16)
        # Cache entries expire after 1 s, so each kill asks containerd again.
        self.start_pipeline(banned, "--cache-ttl", "1", "--lookup-timeout-ms", "500", "--lookup-wait-ms", "1500")
        uid, cid = self.run_pod("jupyter-rt-crash", "hub-rt", "notebook", split_command(banned))
        # A few lookups on a warm channel (each kill is > 1 s after the previous: cache expired).
        wait_for(lambda: sum(l["labels"].get("io.kubernetes.pod.name") == "jupyter-rt-crash"
                             for l in self.kill_lines(banned)) >= 4, 30, "four enriched kill lines")
        p = self.pipeline
        count = p.metric("cryptnono_exporter_container_lookup_seconds_count", runtime="cri")
        total = p.metric("cryptnono_exporter_container_lookup_seconds_sum", runtime="cri")
        fast = p.metric("cryptnono_exporter_container_lookup_seconds_bucket", runtime="cri", le="0.005")
        print(f"\ncri lookups with containerd up: {count:.0f}, mean {1000 * total / max(count, 1):.2f} ms, "
              f"{fast:.0f} under 5 ms")
        self.assertGreaterEqual(count, 2)

        self.containerd.kill()
        killed_at = len(self.kill_lines(banned))
        failed = wait_for(lambda: next((l for l in self.kill_lines(banned)[killed_at:]
                                        if "container-lookup-failed" in l["reason"]), None),
                          30, "a kill line with container-lookup-failed while containerd is down")
        print(f"\nline while containerd is down: reason={failed['reason']!r}")
        self.assertEqual(failed["container_id"], cid)
        self.assertEqual(failed["pod_uid"], uid)
        self.assertEqual(failed["container_type"], "cri")
        self.assertEqual(failed["labels"], {})
        self.assertTrue(failed["reason"].startswith("container-lookup-failed: cri ContainerStatus"), failed["reason"])
        self.pipeline.check_alive()

        # Back: the exporter reconnects by itself.
        self.containerd.start()
        down_lines = len(self.kill_lines(banned))
        wait_for(lambda: any(l["labels"].get("io.kubernetes.pod.name") == "jupyter-rt-crash"
                             for l in self.kill_lines(banned)[down_lines:]), 30,
                 "an enriched kill line after containerd restarted")

    def test_docker_in_docker_build_names_the_dind_pod_and_the_build(self):
        if not shutil.which("dockerd"):
            self.skipTest("dockerd not installed (Debian docker.io)")
        banned = "rtest" + secrets.token_hex(16)
        # The dind pod (privileged, as BinderHub's is): its container's cgroup is where dockerd puts the builds.
        uid, dind_cid = self.run_pod("binderhub-dind-rt", "binder", "dind", ["/bin/sleep", "3600"], privileged=True)
        docker_dir = os.path.join(self.dir, "docker")
        os.makedirs(docker_dir)
        self.dockerd = Dockerd(docker_dir, self.containerd.socket, f"/kubepods/besteffort/pod{uid}/{dind_cid}/docker")
        with open(os.path.join(self.dir, "image.tar"), "rb") as f:
            status, body = self.dockerd.api("POST", "/images/load?quiet=1", raw=f.read())
        self.assertEqual(status, 200, body)
        p = self.start_pipeline(banned, docker_socket="unix://" + self.dockerd.socket)
        # The build's image may carry any LABEL, io.kubernetes.* included: it must not name the pod.
        status, body = self.dockerd.api("POST", "/containers/create?name=r2d-build-rt", body={
            "Image": DOCKER_IMAGE, "Entrypoint": ["/bin/sh"], "Cmd": split_command(banned)[1:],
            "Labels": {"repo2docker.repo": "https://github.com/example/repo",
                       "io.kubernetes.pod.namespace": "kube-system"},
            "HostConfig": {"NetworkMode": "none"}})
        self.assertEqual(status, 201, body)
        build_id = json.loads(body)["Id"]
        status, body = self.dockerd.api("POST", f"/containers/{build_id}/start")
        self.assertEqual(status, 204, body)

        line = wait_for(lambda: next(iter(self.kill_lines(banned)), None), 30, "a kill line for the build")
        print(f"\nDinD kill line: {json.dumps(line)}")
        self.assertEqual(line["container_type"], "docker")
        self.assertEqual(line["container_id"], build_id)
        self.assertEqual(line["pod_uid"], uid)
        self.assertEqual(line["image"], DOCKER_IMAGE)
        self.assertEqual(line["labels"], {
            "repo2docker.repo": "https://github.com/example/repo",
            "io.kubernetes.container.name": "dind",
            "io.kubernetes.pod.name": "binderhub-dind-rt",
            "io.kubernetes.pod.namespace": "binder",
            "io.kubernetes.pod.uid": uid,
        })
        self.assertNotIn("container-lookup-failed", line["reason"])
        self.assertEqual(p.metric("cryptnono_exporter_container_lookups_total", runtime="docker"), 1)
        self.assertEqual(p.metric("cryptnono_exporter_container_lookups_total", runtime="cri"), 1)


if __name__ == "__main__":
    if not CRI_TOOL:
        sys.exit("CRYPTNONO_CRI_TOOL must name the cri_tool binary")
    if os.geteuid() != 0:
        print("runtime tier needs root: skipped")
        sys.exit(77)
    unittest.main()
