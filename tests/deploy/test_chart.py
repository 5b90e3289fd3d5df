#!/usr/bin/env python3
"""Deploy tier, chart part: the Helm chart in deploy/helm/cryptnono.

Renders the chart with its defaults, with values written for cryptnono's own chart
(execwhacker only, and every detector), as a dependency of a support chart configured
the way the operator document says, with every combination of detectors, with
container-runtime enrichment on and off and with remote (CurveZMQ) access; lints it;
checks every rendered object against the Kubernetes schema for its kind
(deploy/tools/validate-k8s.mjs, unknown fields included); asserts the security
settings, volumes and probes; and runs each built program with exactly the args the
chart renders plus --check (with real key files for the CurveZMQ flags).

Needs helm and the schema packages from scripts/install-deploy-deps.sh, and the built
programs (CRYPTNONO_BIN). Exits 77 (skip) without them when not root; as root (CI) a
missing tool is a failure.
"""
import itertools
import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_common import (BIN, CHART, SEED_TEST_STRING, VALUES_DIR, by_kind, containers,  # noqa: E402
                           daemonset, expand_env, helm_template, mounts, render, require_tools, run,
                           validate, volumes)

EXPECTED_CAPS = {"collector": ["BPF", "PERFMON"], "execwhacker": ["KILL"], "monero": ["KILL"],
                 "tcpflowkiller": ["KILL"], "exporter": []}
# Container name -> the enforcer's --detector, in the chart's container order.
DETECTORS = {"execwhacker": "execwhacker", "monero": "monero", "tcpflowkiller": "flowkiller"}
COLLECTOR_SOCKET = "ipc:///run/cryptnono/collector.sock"
# The runtime sockets the exporter may mount from the node, and where it sees them.
RUNTIME_SOCKETS = {"cri-socket": "/run/cryptnono-runtime/cri.sock",
                   "docker-socket": "/run/cryptnono-runtime/docker.sock"}


def enforcer_socket(container):
    return f"ipc:///run/cryptnono/{DETECTORS[container]}.sock"


def detectors_values(enabled):
    """Values enabling exactly the given detectors (container names)."""
    return {"detectors": {name: {"enabled": name in enabled} for name in DETECTORS}}


def values_file(name):
    return os.path.join(VALUES_DIR, name)


class ChartTest(unittest.TestCase):
    maxDiff = None

    # ---- helpers -------------------------------------------------------------------

    def assert_secure_pod(self, ds, enforcers=("execwhacker", "monero"), extra_caps=()):
        """The security settings the issue asks for, on every container; `enforcers`
        are the enforcer containers expected (the defaults: execwhacker and monero);
        `extra_caps` are added to the collector's and the enforcers' (SYS_NICE with
        scheduling.rtPriority)."""
        pod = ds["spec"]["template"]["spec"]
        self.assertTrue(pod["hostPID"])
        self.assertFalse(pod.get("hostNetwork", False))
        self.assertFalse(pod.get("hostIPC", False))
        self.assertFalse(pod["automountServiceAccountToken"])
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertEqual(pod["securityContext"]["fsGroup"], 65532)
        cs = containers(ds)
        self.assertEqual(list(cs), ["collector", *enforcers, "exporter"])
        for name, c in cs.items():
            sc = c["securityContext"]
            with self.subTest(container=name):
                self.assertIs(sc["privileged"], False)
                self.assertIs(sc["allowPrivilegeEscalation"], False)
                self.assertIs(sc["readOnlyRootFilesystem"], True)
                self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
                self.assertEqual(sc["capabilities"].get("add", []),
                                 EXPECTED_CAPS[name] + (list(extra_caps) if name != "exporter" else []))
                for kind in ("requests", "limits"):
                    self.assertIn("cpu" if kind == "requests" else "memory", c["resources"][kind])
                self.assertIn("readinessProbe", c)
                self.assertIn("livenessProbe", c)
                env = {e["name"]: e for e in c["env"]}
                self.assertEqual(env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName")
                sock = mounts(c)["sockets"]
                self.assertEqual(sock["mountPath"], "/run/cryptnono")
                self.assertNotIn("subPath", sock)
                # Root uid only where a capability is needed: Kubernetes gives added
                # capabilities to uid 0 only (no ambient set).
                self.assertEqual(sc["runAsUser"], 65532 if name == "exporter" else 0)
                if name in DETECTORS:
                    self.assertEqual(self.arg_pairs(c["args"], "--detector"), [DETECTORS[name]])
                    self.assertEqual(self.arg_pairs(c["args"], "--bind"), [enforcer_socket(name)])
                    self.assertEqual(self.arg_pairs(c["args"], "--connect"), [COLLECTOR_SOCKET])
                    for probe in ("readinessProbe", "livenessProbe"):
                        self.assertEqual(c[probe]["exec"]["command"][:3],
                                         ["/usr/bin/cryptnono", "tail", enforcer_socket(name)])
        self.assertTrue(cs["exporter"]["securityContext"]["runAsNonRoot"])
        # The exporter reads every enabled enforcer's decisions and the collector's stats.
        self.assertEqual(self.arg_pairs(cs["exporter"]["args"], "--connect"),
                         [enforcer_socket(n) for n in enforcers] + [COLLECTOR_SOCKET])
        sockets = volumes(ds)["sockets"]
        self.assertIn("emptyDir", sockets)
        # The only host paths: the container runtime's sockets, type Socket (never a
        # directory the kubelet would create), in the exporter only, read-only.
        for v in volumes(ds).values():
            if "hostPath" in v:
                self.assertIn(v["name"], RUNTIME_SOCKETS, f"volume {v['name']} mounts the host")
                self.assertEqual(v["hostPath"]["type"], "Socket")
        for name, c in cs.items():
            for m in c.get("volumeMounts", []):
                if m["name"] in RUNTIME_SOCKETS:
                    self.assertEqual(name, "exporter")
                    self.assertEqual(m["mountPath"], RUNTIME_SOCKETS[m["name"]])
                    self.assertTrue(m["readOnly"])

    def arg_pairs(self, args, flag):
        return [args[i + 1] for i, a in enumerate(args) if a == flag]

    def check_args_accepted(self, objects, files=None):
        """Runs each program with the args the chart renders plus --check. Paths under
        a mounted ConfigMap or Secret are pointed at a temp dir laid out the way the
        kubelet does it: the rendered ConfigMaps' data, and `files` ({ConfigMap or
        Secret name: {key: text}}) for the ones that exist in the cluster already."""
        ds = daemonset(objects)
        maps = {cm["metadata"]["name"]: cm["data"] for cm in by_kind(objects, "ConfigMap")}
        with tempfile.TemporaryDirectory() as tmp:
            path_map = {}
            for vol in volumes(ds).values():
                source = vol.get("configMap", {}).get("name") or vol.get("secret", {}).get("secretName")
                if not source:
                    continue
                data = maps.get(source) if "configMap" in vol else None
                if data is None:
                    data = (files or {}).get(source, {})
                d = os.path.join(tmp, vol["name"])
                os.makedirs(d)
                for key, text in data.items():
                    with open(os.path.join(d, key), "w") as f:
                        f.write(text)
                path_map[vol["name"]] = d
            for name, c in containers(ds).items():
                mount_map = {m["mountPath"]: path_map[m["name"]] for m in c.get("volumeMounts", [])
                             if m["name"] in path_map}
                cmd = [expand_env(a, {"NODE_NAME": "node-under-test"}) for a in c["command"] + c["args"]]
                for i, a in enumerate(cmd):
                    for mount_path, local in mount_map.items():
                        if a == mount_path or a.startswith(mount_path + "/"):
                            cmd[i] = local + a[len(mount_path):]
                program = os.path.join(BIN, os.path.basename(cmd[0]))
                with self.subTest(container=name):
                    proc = run([program] + cmd[1:] + ["--check"], check=False)
                    self.assertEqual(proc.returncode, 0,
                                     f"{name}: {' '.join(cmd)} --check rejected:\n{proc.stdout}{proc.stderr}")
                # Probe commands parse too: against an endpoint nobody serves, `cryptnono
                # tail` must time out (3), not reject its command line (2).
                for probe in ("readinessProbe", "livenessProbe"):
                    if "exec" not in c[probe]:
                        continue
                    pcmd = list(c[probe]["exec"]["command"])
                    self.assertEqual(pcmd[:2], ["/usr/bin/cryptnono", "tail"])
                    pcmd[0] = os.path.join(BIN, "cryptnono")
                    pcmd[2] = f"ipc://{tmp}/nobody.sock"
                    pcmd[pcmd.index("--timeout") + 1] = "0.2"
                    with self.subTest(container=name, probe=probe):
                        proc = run(pcmd, check=False)
                        self.assertEqual(proc.returncode, 3, f"{pcmd}: {proc.stderr}")

    def keygen(self, tmp, name):
        """A CurveZMQ key pair made by the CLI the operator uses: (PATH.key, PATH.pub) texts."""
        path = os.path.join(tmp, name)
        run([os.path.join(BIN, "cryptnono"), "keygen", path])
        with open(path + ".key") as k, open(path + ".pub") as p:
            return k.read(), p.read()

    # ---- tests ---------------------------------------------------------------------

    def test_lint_passes_with_every_values_file(self):
        for files in ([], [values_file("cryptnono-style.yaml")], [values_file("cryptnono-every-detector.yaml")]):
            with self.subTest(values=files):
                cmd = ["helm", "lint", "--strict", CHART]
                for f in files:
                    cmd += ["--values", f]
                proc = run(cmd, check=False)
                self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
                self.assertIn("0 chart(s) failed", proc.stdout)

    def test_default_values_render_secure_daemonset(self):
        objects = render()
        self.assertEqual(sorted(o["kind"] for o in objects), ["DaemonSet"])
        ds = daemonset(objects)
        self.assertEqual(ds["metadata"]["name"], "support-cryptnono")
        self.assertEqual(ds["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], "cryptnono")
        self.assert_secure_pod(ds)
        pod = ds["spec"]["template"]["spec"]
        self.assertEqual(pod["tolerations"], [{"operator": "Exists"}])  # run everywhere
        cs = containers(ds)
        # execwhacker and monero by default, as in cryptnono's chart.
        args = cs["execwhacker"]["args"]
        self.assertEqual(self.arg_pairs(args, "--config"), [])  # built-in config: the seed's test string
        self.assertNotIn("--dry-run", args)
        self.assertEqual(self.arg_pairs(cs["exporter"]["args"], "--connect"),
                         ["ipc:///run/cryptnono/execwhacker.sock", "ipc:///run/cryptnono/monero.sock",
                          "ipc:///run/cryptnono/collector.sock"])
        self.assertEqual(self.arg_pairs(cs["collector"]["args"], "--bind"), ["ipc:///run/cryptnono/collector.sock"])
        self.assertEqual(self.arg_pairs(cs["collector"]["args"], "--probes"), ["exec,fpu"])
        self.assertEqual(self.arg_pairs(cs["collector"]["args"], "--fpu-threshold"), ["64"])
        self.assertNotIn("--also-bind", cs["collector"]["args"])
        # CRI enrichment on: containerd's socket, for the exporter only.
        self.assertEqual(volumes(ds)["cri-socket"]["hostPath"],
                         {"path": "/run/containerd/containerd.sock", "type": "Socket"})
        self.assertEqual(self.arg_pairs(cs["exporter"]["args"], "--cri-socket"),
                         ["unix:///run/cryptnono-runtime/cri.sock"])
        self.assertEqual(cs["exporter"]["ports"], [{"name": "metrics", "containerPort": 12121, "protocol": "TCP"}])
        self.assertEqual(cs["exporter"]["readinessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"})
        ann = ds["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(ann, {"prometheus.io/scrape": "true", "prometheus.io/port": "12121",
                               "prometheus.io/path": "/metrics"})
        self.check_args_accepted(objects)

    def test_cryptnono_style_values_keep_their_meaning(self):
        objects = render(values_files=[values_file("cryptnono-style.yaml")])
        ds = daemonset(objects)
        self.assert_secure_pod(ds, enforcers=["execwhacker"])  # the file turns monero off
        pod = ds["spec"]["template"]["spec"]
        cs = containers(ds)
        self.assertEqual({c["image"] for c in cs.values()}, {"registry.example.org/cryptnono:2024.01.1"})
        self.assertEqual({c["imagePullPolicy"] for c in cs.values()}, {"Always"})
        self.assertEqual(pod["imagePullSecrets"], [{"name": "registry-credentials"}])
        self.assertEqual(pod["nodeSelector"], {"kubernetes.io/os": "linux"})
        self.assertEqual(pod["tolerations"], [{"operator": "Exists", "effect": "NoSchedule"}])
        self.assertIn("nodeAffinity", pod["affinity"])
        self.assertEqual(pod["priorityClassName"], "system-node-critical")
        ann = ds["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(ann["cluster-autoscaler.kubernetes.io/safe-to-evict"], "false")
        self.assertEqual(ann["prometheus.io/port"], "9898")
        # execwhacker: resources, env, debug, metrics port, configs as files.
        ew = cs["execwhacker"]
        # Helm merges maps: the chart's default cpu limit stays unless set to null.
        self.assertEqual(ew["resources"], {"requests": {"cpu": "20m", "memory": "64Mi"},
                                           "limits": {"cpu": "1", "memory": "512Mi"}})
        env = {e["name"]: e.get("value") for e in ew["env"]}
        self.assertEqual(env["EXAMPLE_FLAG"], "1")
        self.assertEqual(env["EXAMPLE_NUMBER"], "42")
        self.assertEqual(self.arg_pairs(ew["args"], "--log-level"), ["debug"])
        self.assertIn("--log-no-match", cs["exporter"]["args"])  # debug: every process checked is logged
        self.assertEqual(self.arg_pairs(cs["exporter"]["args"], "--metrics-address"), ["0.0.0.0:9898"])
        self.assertEqual(cs["exporter"]["ports"][0]["containerPort"], 9898)
        self.assertEqual(self.arg_pairs(ew["args"], "--config"),
                         ["/etc/cryptnono/execwhacker/execwhacker-config-name-1.json",
                          "/etc/cryptnono/execwhacker/execwhacker-config-name-2.json"])
        (cm,) = by_kind(objects, "ConfigMap")
        self.assertEqual(json.loads(cm["data"]["execwhacker-config-name-2.json"]),
                         {"bannedCommandStrings": ["string-3", "string-4"],
                          "allowedCommandPatterns": ["^(/usr/bin/)?ls.*$"]})
        # The config is a whole directory (never subPath), so the kubelet's in-place
        # updates reach the enforcer; no checksum annotation restarts the pods.
        m = mounts(ew)["execwhacker-config"]
        self.assertEqual(m["mountPath"], "/etc/cryptnono/execwhacker")
        self.assertNotIn("subPath", m)
        self.assertTrue(m["readOnly"])
        self.assertEqual(volumes(ds)["execwhacker-config"]["configMap"]["name"], cm["metadata"]["name"])
        self.assertFalse([k for k in ann if k.startswith("checksum/")])
        # cryptnono's containerdHostPath (k3s) says where the CRI socket is.
        self.assertEqual(volumes(ds)["cri-socket"]["hostPath"]["path"], "/run/k3s/containerd/containerd.sock")
        self.assertEqual(self.arg_pairs(cs["collector"]["args"], "--probes"), ["exec"])
        self.check_args_accepted(objects)

    def test_support_chart_dependency_as_in_the_operator_document(self):
        """cryptnono as a dependency of a `support` chart in namespace `support`, with
        the document's enabling snippet, the support chart's unencrypted test config
        and a secret values file: the names the document's commands use must exist."""
        with tempfile.TemporaryDirectory() as tmp:
            parent = os.path.join(tmp, "support")
            os.makedirs(os.path.join(parent, "charts"))
            with open(os.path.join(parent, "Chart.yaml"), "w") as f:
                f.write("apiVersion: v2\nname: support\nversion: 0.0.1\n"
                        "dependencies:\n  - name: cryptnono\n    version: 0.1.0\n"
                        "    condition: cryptnono.enabled\n")
            shutil.copytree(CHART, os.path.join(parent, "charts", "cryptnono"))
            # Without the document's snippet, execwhacker is off in the support chart.
            off = helm_template(chart=parent, values_files=[values_file("support-values.yaml")])
            self.assertEqual(validate(off.stdout), [])
            objects = validate(helm_template(chart=parent, values_files=[
                values_file("support-values.yaml"), values_file("support-secret-values.yaml"),
                values_file("seed-enable.yaml")]).stdout)
        ds = daemonset(objects)
        # `kubectl -n support get daemonset support-cryptnono -o yaml` shows a container named execwhacker.
        self.assertEqual(ds["metadata"]["name"], "support-cryptnono")
        self.assertIn("execwhacker", containers(ds))
        # `kubectl -n support get pod -l app.kubernetes.io/name=cryptnono` finds the pods.
        self.assertEqual(ds["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], "cryptnono")
        self.assert_secure_pod(ds, enforcers=["execwhacker"])  # the support chart turns monero off
        (cm,) = by_kind(objects, "ConfigMap")
        merged = {k: json.loads(v) for k, v in cm["data"].items()}
        self.assertEqual(merged["execwhacker-unencrypted-test-config.json"]["bannedCommandStrings"],
                         [SEED_TEST_STRING])
        self.assertEqual(merged["execwhacker-secret-config.json"]["allowedCommandPatterns"],
                         ["^/usr/bin/jupyter-lab .*"])
        self.check_args_accepted(objects)

    def test_each_detector_is_its_own_enforcer_container_iff_enabled(self):
        """Every combination of detectors: one enforcer container per enabled detector
        (KILL only, probes on its own socket), the collector loads only the probes they
        need, the exporter reads every enabled enforcer's socket."""
        probes_for = {"execwhacker": set(), "monero": {"fpu"}, "tcpflowkiller": {"connect"}}
        for n in range(1, len(DETECTORS) + 1):
            for enabled in itertools.combinations(DETECTORS, n):
                with self.subTest(enabled=enabled):
                    objects = render(values=detectors_values(enabled))
                    ds = daemonset(objects)
                    self.assert_secure_pod(ds, enforcers=enabled)
                    collector = containers(ds)["collector"]["args"]
                    (probes,) = self.arg_pairs(collector, "--probes")
                    self.assertEqual(probes.split(",")[0], "exec")
                    self.assertEqual(set(probes.split(",")[1:]), set().union(*(probes_for[d] for d in enabled)))
                    self.assertEqual(bool(self.arg_pairs(collector, "--fpu-threshold")), "monero" in enabled)
                    if enabled in (("monero",), tuple(DETECTORS)):
                        self.check_args_accepted(objects)
        # The monero and flowkiller settings reach their programs.
        values = detectors_values(["monero", "tcpflowkiller"])
        values["detectors"]["monero"]["fpuThreshold"] = 200
        values["detectors"]["tcpflowkiller"]["config"] = {"FlowKiller": {"unique_destinations_threshold": 7,
                                                                         "lookback_duration_seconds": 2.5}}
        values["dryRun"] = True
        cs = containers(daemonset(render(values=values)))
        self.assertEqual(self.arg_pairs(cs["collector"]["args"], "--fpu-threshold"), ["200"])
        fk = cs["tcpflowkiller"]["args"]
        self.assertEqual(self.arg_pairs(fk, "--unique-destinations-threshold"), ["7"])
        self.assertEqual(self.arg_pairs(fk, "--lookback-duration-seconds"), ["2.5"])
        for name in ("monero", "tcpflowkiller"):
            self.assertIn("--dry-run", cs[name]["args"])
        # A threshold above what the enforcer remembers per process by default (256)
        # raises that too, or the enforcer would refuse to start.
        values["detectors"]["tcpflowkiller"]["config"]["FlowKiller"]["unique_destinations_threshold"] = 1000
        objects = render(values=values)
        fk = containers(daemonset(objects))["tcpflowkiller"]["args"]
        self.assertEqual(self.arg_pairs(fk, "--unique-destinations-threshold"), ["1000"])
        self.assertEqual(self.arg_pairs(fk, "--max-destinations-per-process"), ["1001"])
        self.check_args_accepted(objects)
        # Defaults: cryptnono's FlowKiller defaults.
        fk = containers(daemonset(render(values=detectors_values(["tcpflowkiller"]))))["tcpflowkiller"]["args"]
        self.assertEqual(self.arg_pairs(fk, "--unique-destinations-threshold"), ["15"])
        self.assertEqual(self.arg_pairs(fk, "--lookback-duration-seconds"), ["30"])
        self.assertEqual(self.arg_pairs(fk, "--banned-ips"), [])
        self.assertEqual(self.arg_pairs(fk, "--max-destinations-per-process"), [])

    def test_cryptnono_values_with_every_detector(self):
        """A values file written for cryptnono's chart with monero and tcpflowkiller on:
        renders, with the banned-IP ConfigMaps as directories and cryptnono's FlowKiller
        settings as the flowkiller's flags."""
        objects = render(values_files=[values_file("cryptnono-every-detector.yaml")])
        ds = daemonset(objects)
        self.assert_secure_pod(ds, enforcers=list(DETECTORS))
        cs = containers(ds)
        fk = cs["tcpflowkiller"]
        self.assertEqual(self.arg_pairs(fk["args"], "--banned-ips"),
                         ["/etc/cryptnono/flowkiller/flowkiller-banned-ips-1/banned_ipv4-1.txt",
                          "/etc/cryptnono/flowkiller/flowkiller-banned-ips-2/banned_ipv4-2.txt"])
        self.assertEqual(self.arg_pairs(fk["args"], "--unique-destinations-threshold"), ["10"])
        self.assertEqual(self.arg_pairs(fk["args"], "--lookback-duration-seconds"), ["4"])
        self.assertEqual(self.arg_pairs(fk["args"], "--log-level"), ["debug"])  # tcpflowkiller.debug
        self.assertEqual({e["name"]: e.get("value") for e in fk["env"]}["FLOWKILLER_EXAMPLE"], "yes")
        self.assertEqual(fk["resources"]["limits"]["memory"], "200Mi")
        self.assertEqual(cs["monero"]["resources"]["limits"]["memory"], "96Mi")
        # Whole ConfigMaps as directories (never subPath): the kubelet's updates reach
        # the running enforcer, which reloads on the ..data swap.
        for i, cm in enumerate(["flowkiller-banned-ips-1", "flowkiller-banned-ips-2"]):
            m = mounts(fk)[f"flowkiller-banned-{i}"]
            self.assertEqual(m["mountPath"], f"/etc/cryptnono/flowkiller/{cm}")
            self.assertNotIn("subPath", m)
            self.assertTrue(m["readOnly"])
            self.assertEqual(volumes(ds)[f"flowkiller-banned-{i}"]["configMap"], {"name": cm})
        self.assertEqual(self.arg_pairs(cs["collector"]["args"], "--probes"), ["exec,fpu,connect"])
        self.assertIn("--log-no-match", cs["exporter"]["args"])  # FlowKiller.log_connects
        self.check_args_accepted(objects, files={
            "flowkiller-banned-ips-1": {"banned_ipv4-1.txt": "192.0.2.1\n# a comment\n"},
            "flowkiller-banned-ips-2": {"banned_ipv4-2.txt": "198.51.100.0/24\n"}})

    def test_runtime_socket_only_when_enrichment_is_on(self):
        # Off: nothing from the host, the exporter keeps its own group, lookups off.
        for values in ({"enrichment": {"cri": {"enabled": False}}},
                       {"enrichment": {"cri": {"enabled": False}, "docker": {"enabled": False}}}):
            ds = daemonset(render(values=values))
            self.assert_secure_pod(ds)
            exporter = containers(ds)["exporter"]
            self.assertFalse([v for v in volumes(ds).values() if "hostPath" in v])
            self.assertNotIn("cri-socket", mounts(exporter))
            self.assertEqual(exporter["securityContext"]["runAsGroup"], 65532)
            self.assertEqual(self.arg_pairs(exporter["args"], "--cri-socket"), [""])
            self.assertEqual(self.arg_pairs(exporter["args"], "--docker-socket"), [""])
        # On (default): the socket, group 0 to open it (root:root 0660), still uid 65532
        # with no capability; CRI-O's socket where asked.
        ds = daemonset(render(values={"enrichment": {"cri": {"socket": "/run/crio/crio.sock"}}}))
        self.assert_secure_pod(ds)
        exporter = containers(ds)["exporter"]
        sc = exporter["securityContext"]
        self.assertEqual((sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]), (65532, 0, True))
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertEqual(volumes(ds)["cri-socket"]["hostPath"], {"path": "/run/crio/crio.sock", "type": "Socket"})
        self.assertNotIn("supplementalGroups", ds["spec"]["template"]["spec"]["securityContext"])
        # Docker (BinderHub's dind) with the socket's own group: supplementalGroups, and
        # without CRI the exporter needs no group 0.
        objects = render(values={"enrichment": {"cri": {"enabled": False},
                                                "docker": {"enabled": True, "group": 2375}},
                                 "metrics": {"namespaceLabel": True}})
        ds = daemonset(objects)
        self.assert_secure_pod(ds)
        exporter = containers(ds)["exporter"]
        self.assertEqual(volumes(ds)["docker-socket"]["hostPath"],
                         {"path": "/var/run/dind/docker.sock", "type": "Socket"})
        self.assertEqual(ds["spec"]["template"]["spec"]["securityContext"]["supplementalGroups"], [2375])
        self.assertEqual(exporter["securityContext"]["runAsGroup"], 65532)
        self.assertEqual(self.arg_pairs(exporter["args"], "--docker-socket"),
                         ["unix:///run/cryptnono-runtime/docker.sock"])
        self.assertEqual(self.arg_pairs(exporter["args"], "--cri-socket"), [""])
        self.assertIn("--metrics-namespace-label", exporter["args"])
        self.check_args_accepted(objects)
        # Docker without a group: group 0, as for CRI.
        ds = daemonset(render(values={"enrichment": {"cri": {"enabled": False}, "docker": {"enabled": True}}}))
        self.assertEqual(containers(ds)["exporter"]["securityContext"]["runAsGroup"], 0)

    def test_remote_access_only_when_enabled_and_with_its_secrets(self):
        # Off (default): no tcp:// endpoint, no port but the metrics, no key mounts.
        ds = daemonset(render(values=detectors_values(DETECTORS)))
        for name, c in containers(ds).items():
            self.assertNotIn("--also-bind", c["args"], name)
            self.assertEqual([p["name"] for p in c.get("ports", [])], ["metrics"] if name == "exporter" else [])
        self.assertFalse({"curve-keys", "curve-authorized"} & set(volumes(ds)))
        # The schema refuses it without the Secrets.
        for what, ra in {"no secrets": {"enabled": True},
                         "no authorized keys": {"enabled": True, "keysSecret": "cryptnono-curve"},
                         "empty key secret": {"enabled": True, "keysSecret": "", "authorizedKeysSecret": "c"}}.items():
            with self.subTest(what):
                proc = helm_template(values={"remoteAccess": ra}, check=False)
                self.assertNotEqual(proc.returncode, 0, f"{what} was accepted")
                self.assertIn("values don't meet the specifications of the schema", proc.stderr)
                self.assertIn("remoteAccess", proc.stderr)
        # Ports that would collide in the pod's network namespace are refused.
        proc = helm_template(values={"remoteAccess": {"enabled": True, "keysSecret": "k", "authorizedKeysSecret": "a",
                                                      "execwhackerPort": 12121}}, check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("remoteAccess.execwhackerPort=12121 is also the metrics port", proc.stderr)
        # On: every stage with a port gets a tcp:// endpoint, the key pair and the
        # authorized clients; a port of 0 leaves that stage ipc-only.
        values = detectors_values(DETECTORS)
        values["remoteAccess"] = {"enabled": True, "keysSecret": "cryptnono-curve",
                                  "authorizedKeysSecret": "cryptnono-forensics", "moneroPort": 0}
        objects = render(values=values)
        ds = daemonset(objects)
        self.assert_secure_pod(ds, enforcers=list(DETECTORS))
        self.assertFalse(ds["spec"]["template"]["spec"].get("hostNetwork", False))
        expected = {"collector": 5556, "execwhacker": 5557, "tcpflowkiller": 5559}
        for name, c in containers(ds).items():
            with self.subTest(container=name):
                if name in expected:
                    port = expected[name]
                    self.assertEqual(self.arg_pairs(c["args"], "--also-bind"), [f"tcp://0.0.0.0:{port}"])
                    self.assertEqual(self.arg_pairs(c["args"], "--curve-keys"),
                                     ["/etc/cryptnono/curve/server/server.key"])
                    self.assertEqual(self.arg_pairs(c["args"], "--curve-authorized"), ["/etc/cryptnono/curve/authorized"])
                    self.assertEqual([(p["containerPort"], p["protocol"]) for p in c["ports"]], [(port, "TCP")])
                    self.assertEqual(mounts(c)["curve-keys"]["mountPath"], "/etc/cryptnono/curve/server")
                    self.assertEqual(mounts(c)["curve-authorized"]["mountPath"], "/etc/cryptnono/curve/authorized")
                    for m in ("curve-keys", "curve-authorized"):
                        self.assertTrue(mounts(c)[m]["readOnly"])
                        self.assertNotIn("subPath", mounts(c)[m])
                else:  # monero (port 0) and the exporter
                    self.assertNotIn("--also-bind", c["args"])
                    self.assertFalse({"curve-keys", "curve-authorized"} & set(mounts(c)))
        keys = volumes(ds)["curve-keys"]["secret"]
        self.assertEqual(keys["secretName"], "cryptnono-curve")
        self.assertEqual(keys["items"], [{"key": "server.key", "path": "server.key"}])
        self.assertEqual(keys["defaultMode"], 0o400)
        self.assertEqual(volumes(ds)["curve-authorized"]["secret"]["secretName"], "cryptnono-forensics")
        self.assertNotIn("items", volumes(ds)["curve-authorized"]["secret"])  # every client key file
        with tempfile.TemporaryDirectory() as tmp:
            server_key, _ = self.keygen(tmp, "server")
            _, alice = self.keygen(tmp, "alice")
            _, bob = self.keygen(tmp, "bob")
        self.check_args_accepted(objects, files={"cryptnono-curve": {"server.key": server_key},
                                                 "cryptnono-forensics": {"alice.pub": alice, "bob.pub": bob}})

    def test_no_detector_enabled_renders_nothing(self):
        self.assertEqual(render(values=detectors_values([])), [])

    def test_schema_rejects_unknown_and_mistyped_values(self):
        bad = {
            "misspelt key": {"detectors": {"execwhacker": {"enabeld": True}}},
            "unknown top-level key": {"containerSecurityContext": {"privileged": True}},
            "string for a boolean": {"detectors": {"execwhacker": {"enabled": "yes"}}},
            "banned strings not a list": {"detectors": {"execwhacker": {"configs": {"a": {"bannedCommandStrings": "x"}}}}},
            "unknown config field": {"detectors": {"execwhacker": {"configs": {"a": {"bannedStrings": ["x"]}}}}},
            "port out of range": {"detectors": {"execwhacker": {"metrics": {"port": 70000}}}},
            "tolerations not a list": {"tolerations": {"operator": "Exists"}},
            "bad pull policy": {"image": {"pullPolicy": "Sometimes"}},
            "bad resources key": {"detectors": {"execwhacker": {"resources": {"limit": {"cpu": 1}}}}},
            "unknown monero key": {"detectors": {"monero": {"enable": True}}},
            "fpu threshold 0": {"detectors": {"monero": {"fpuThreshold": 0}}},
            "misspelt FlowKiller key": {"detectors": {"tcpflowkiller": {"config": {"FlowKiller": {
                "unique_destination_threshold": 3}}}}},
            "banned IPs not a map of keys": {"detectors": {"tcpflowkiller": {"bannedIpv4ConfigMaps": ["ips"]}}},
            "relative CRI socket": {"enrichment": {"cri": {"socket": "run/containerd/containerd.sock"}}},
            "docker group as a name": {"enrichment": {"docker": {"group": "docker"}}},
            "remote access without secrets": {"remoteAccess": {"enabled": True}},
            "remote port out of range": {"remoteAccess": {"collectorPort": 70000}},
            "dryRun as string": {"dryRun": "true"},
            "secret without keys": {"detectors": {"execwhacker": {"configSecrets": [{"name": "s"}]}}},
            "rt priority above 99": {"scheduling": {"rtPriority": 100}},
            "negative rt priority": {"scheduling": {"rtPriority": -1}},
            "rt priority as string": {"scheduling": {"rtPriority": "50"}},
            "cpus open range": {"scheduling": {"cpus": "1-"}},
            "cpus not a list": {"scheduling": {"cpus": "all"}},
            "cpus negative": {"scheduling": {"cpus": -1}},
            "unknown scheduling key": {"scheduling": {"policy": "fifo"}},
        }
        for what, values in bad.items():
            with self.subTest(what):
                proc = helm_template(values=values, check=False)
                self.assertNotEqual(proc.returncode, 0, f"{what} was accepted")
                self.assertIn("values don't meet the specifications of the schema", proc.stderr)

    def test_existing_secret_configs_dry_run_and_service_monitor(self):
        values = {"dryRun": True,
                  "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
                  "detectors": {"execwhacker": {"configSecrets": [
                      {"name": "cryptnono-banned", "keys": ["banned.json", "more.json"]}]}}}
        objects = render(values=values)
        self.assertEqual(sorted(o["kind"] for o in objects), ["DaemonSet", "Service", "ServiceMonitor"])
        ds = daemonset(objects)
        self.assert_secure_pod(ds)
        ew = containers(ds)["execwhacker"]
        self.assertIn("--dry-run", ew["args"])
        self.assertIn("--dry-run", containers(ds)["monero"]["args"])
        self.assertEqual(self.arg_pairs(ew["args"], "--config"),
                         ["/etc/cryptnono/execwhacker-secrets/cryptnono-banned/banned.json",
                          "/etc/cryptnono/execwhacker-secrets/cryptnono-banned/more.json"])
        vol = volumes(ds)["execwhacker-secret-0"]
        self.assertEqual(vol["secret"], {"secretName": "cryptnono-banned"})
        m = mounts(ew)["execwhacker-secret-0"]
        self.assertEqual(m["mountPath"], "/etc/cryptnono/execwhacker-secrets/cryptnono-banned")
        self.assertNotIn("subPath", m)
        (svc,) = by_kind(objects, "Service")
        (sm,) = by_kind(objects, "ServiceMonitor")
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        self.assertEqual(sm["metadata"]["labels"]["release"], "prometheus")
        for k, v in sm["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(svc["metadata"]["labels"][k], v)
        for k, v in svc["spec"]["selector"].items():
            self.assertEqual(ds["spec"]["template"]["metadata"]["labels"][k], v)
        self.assertEqual(sm["spec"]["endpoints"][0]["port"], svc["spec"]["ports"][0]["name"])
        config = json.dumps({"bannedCommandStrings": ["x-secret-string"], "allowedCommandPatterns": []})
        self.check_args_accepted(objects, files={"cryptnono-banned": {"banned.json": config,
                                                                        "more.json": config}})

    def test_scheduling_flags_and_sys_nice_only_when_asked(self):
        """scheduling.rtPriority / cpus reach the collector and every enforcer (not the
        exporter) as --rt-priority / --cpus; SYS_NICE is added to exactly those
        containers, and only when rtPriority > 0."""
        every = detectors_values(list(DETECTORS))
        sched_flags = ("--rt-priority", "--cpus")
        default = containers(daemonset(render(values=every)))
        for name, c in default.items():
            with self.subTest(values="default", container=name):
                for flag in sched_flags:
                    self.assertNotIn(flag, c["args"])
                self.assertNotIn("SYS_NICE", c["securityContext"]["capabilities"].get("add", []))
        cases = [
            # (scheduling values, --rt-priority wanted, --cpus wanted, SYS_NICE added)
            ({"rtPriority": 50, "cpus": "1"}, ["50"], ["1"], True),
            ({"rtPriority": 1}, ["1"], [], True),
            ({"rtPriority": 0, "cpus": "0-1,3"}, [], ["0-1,3"], False),
            ({"cpus": 0}, [], ["0"], False),  # a bare number in YAML is one CPU
            ({"rtPriority": 99, "cpus": ""}, ["99"], [], True),
        ]
        for sched, prio, cpus, nice in cases:
            values = dict(every, scheduling=sched)
            with self.subTest(scheduling=sched):
                objects = render(values=values)
                ds = daemonset(objects)
                self.assert_secure_pod(ds, enforcers=list(DETECTORS), extra_caps=["SYS_NICE"] if nice else [])
                for name, c in containers(ds).items():
                    args = c["args"]
                    if name == "exporter":
                        for flag in sched_flags:
                            self.assertNotIn(flag, args)
                        continue
                    self.assertEqual(self.arg_pairs(args, "--rt-priority"), prio, name)
                    self.assertEqual(self.arg_pairs(args, "--cpus"), cpus, name)
                # The programs accept the rendered flags (--check validates both).
                self.check_args_accepted(objects)

    def test_metrics_off_drops_annotations_and_service_monitor(self):
        objects = render(values={"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})
        self.assertEqual([o["kind"] for o in objects], ["DaemonSet"])
        self.assertNotIn("annotations", daemonset(objects)["spec"]["template"]["metadata"])
        # cryptnono <= 0.3 kept the switch under detectors.execwhacker.metrics.
        legacy = render(values={"metrics": {"enabled": False},
                                "detectors": {"execwhacker": {"metrics": {"enabled": True}}}})
        self.assertEqual(daemonset(legacy)["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"],
                         "true")

    def test_validator_rejects_what_the_api_server_would(self):
        """The schema check itself: a misspelt field, a wrong type, a missing required
        field and an unknown kind are all caught."""
        good = helm_template().stdout
        broken = {
            "misspelt field": good.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem", 1),
            "wrong type": good.replace("containerPort: 12121", 'containerPort: "12121"'),
            "missing required": good.replace("- name: exporter", "- nameless: exporter"),
            "unknown kind": good + "\n---\napiVersion: v1\nkind: NoSuchKind\nmetadata:\n  name: x\n",
        }
        for what, text in broken.items():
            with self.subTest(what):
                self.assertNotEqual(text, good)
                with self.assertRaises(AssertionError):
                    validate(text)


if __name__ == "__main__":
    require_tools(["helm", "node", "k8s-schemas"])
    if not os.path.isfile(os.path.join(BIN, "cryptnono-enforcer")):
        print(f"FAIL: no built programs in {BIN} (set CRYPTNONO_BIN)", file=sys.stderr)
        sys.exit(1)
    unittest.main()
