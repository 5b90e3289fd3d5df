#!/usr/bin/env python3
"""Deploy tier, chart part: the Helm chart in deploy/helm/cryptnono.

Renders the chart with its defaults, with values written for cryptnono's own chart,
as a dependency of a support chart configured the way the operator document says,
and with every detector enabled; lints it; checks every rendered object against the
Kubernetes schema for its kind (deploy/tools/validate-k8s.mjs, unknown fields
included); asserts the security settings, volumes and probes; and runs each built
program with exactly the args the chart renders plus --check.

Needs helm and the schema packages from scripts/install-deploy-deps.sh, and the built
programs (CRYPTNONO_BIN). Exits 77 (skip) without them when not root; as root (CI) a
missing tool is a failure.
"""
import copy
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

EXPECTED_CAPS = {"collector": ["BPF", "PERFMON"], "execwhacker": ["KILL"], "exporter": []}


def values_file(name):
    return os.path.join(VALUES_DIR, name)


class ChartTest(unittest.TestCase):
    maxDiff = None

    # ---- helpers -------------------------------------------------------------------

    def assert_secure_pod(self, ds):
        """The security settings the issue asks for, on every container."""
        pod = ds["spec"]["template"]["spec"]
        self.assertTrue(pod["hostPID"])
        self.assertFalse(pod.get("hostNetwork", False))
        self.assertFalse(pod.get("hostIPC", False))
        self.assertFalse(pod["automountServiceAccountToken"])
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertEqual(pod["securityContext"]["fsGroup"], 65532)
        cs = containers(ds)
        self.assertEqual(list(cs), ["collector", "execwhacker", "exporter"])
        for name, c in cs.items():
            sc = c["securityContext"]
            with self.subTest(container=name):
                self.assertIs(sc["privileged"], False)
                self.assertIs(sc["allowPrivilegeEscalation"], False)
                self.assertIs(sc["readOnlyRootFilesystem"], True)
                self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
                self.assertEqual(sc["capabilities"].get("add", []), EXPECTED_CAPS[name])
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
        self.assertEqual(cs["collector"]["securityContext"]["runAsUser"], 0)
        self.assertEqual(cs["execwhacker"]["securityContext"]["runAsUser"], 0)
        self.assertEqual(cs["exporter"]["securityContext"]["runAsUser"], 65532)
        self.assertTrue(cs["exporter"]["securityContext"]["runAsNonRoot"])
        sockets = volumes(ds)["sockets"]
        self.assertIn("emptyDir", sockets)
        for v in volumes(ds).values():
            self.assertNotIn("hostPath", v, f"volume {v['name']} mounts the host")

    def arg_pairs(self, args, flag):
        return [args[i + 1] for i, a in enumerate(args) if a == flag]

    def check_args_accepted(self, objects, secret_files=None):
        """Runs each program with the args the chart renders plus --check. Config
        paths are pointed at the rendered ConfigMap's data (and the given Secret
        files), written to a temp dir the way the kubelet lays them out."""
        ds = daemonset(objects)
        maps = {cm["metadata"]["name"]: cm for cm in by_kind(objects, "ConfigMap")}
        with tempfile.TemporaryDirectory() as tmp:
            path_map = {}
            for vol in volumes(ds).values():
                if "configMap" in vol:
                    data = maps[vol["configMap"]["name"]]["data"]
                    d = os.path.join(tmp, vol["name"])
                    os.makedirs(d)
                    for key, text in data.items():
                        with open(os.path.join(d, key), "w") as f:
                            f.write(text)
                    path_map[vol["name"]] = d
                elif "secret" in vol:
                    d = os.path.join(tmp, vol["name"])
                    os.makedirs(d)
                    for key, text in (secret_files or {}).get(vol["secret"]["secretName"], {}).items():
                        with open(os.path.join(d, key), "w") as f:
                            f.write(text)
                    path_map[vol["name"]] = d
            for name, c in containers(ds).items():
                mount_map = {m["mountPath"]: path_map[m["name"]] for m in c.get("volumeMounts", [])
                             if m["name"] in path_map}
                cmd = [expand_env(a, {"NODE_NAME": "node-under-test"}) for a in c["command"] + c["args"]]
                for i, a in enumerate(cmd):
                    for mount_path, local in mount_map.items():
                        if a.startswith(mount_path + "/"):
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

    # ---- tests ---------------------------------------------------------------------

    def test_lint_passes_with_every_values_file(self):
        for files in ([], [values_file("cryptnono-style.yaml")]):
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
        args = cs["execwhacker"]["args"]
        self.assertEqual(self.arg_pairs(args, "--detector"), ["execwhacker"])
        self.assertEqual(self.arg_pairs(args, "--config"), [])  # built-in config: the seed's test string
        self.assertNotIn("--dry-run", args)
        self.assertEqual(self.arg_pairs(cs["exporter"]["args"], "--connect"),
                         ["ipc:///run/cryptnono/execwhacker.sock", "ipc:///run/cryptnono/collector.sock"])
        self.assertEqual(self.arg_pairs(cs["execwhacker"]["args"], "--connect"), ["ipc:///run/cryptnono/collector.sock"])
        self.assertEqual(self.arg_pairs(cs["collector"]["args"], "--bind"), ["ipc:///run/cryptnono/collector.sock"])
        self.assertEqual(cs["exporter"]["ports"], [{"name": "metrics", "containerPort": 12121, "protocol": "TCP"}])
        self.assertEqual(cs["exporter"]["readinessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"})
        ann = ds["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(ann, {"prometheus.io/scrape": "true", "prometheus.io/port": "12121",
                               "prometheus.io/path": "/metrics"})
        self.check_args_accepted(objects)

    def test_cryptnono_style_values_keep_their_meaning(self):
        objects = render(values_files=[values_file("cryptnono-style.yaml")])
        ds = daemonset(objects)
        self.assert_secure_pod(ds)
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
        self.assert_secure_pod(ds)
        (cm,) = by_kind(objects, "ConfigMap")
        merged = {k: json.loads(v) for k, v in cm["data"].items()}
        self.assertEqual(merged["execwhacker-unencrypted-test-config.json"]["bannedCommandStrings"],
                         [SEED_TEST_STRING])
        self.assertEqual(merged["execwhacker-secret-config.json"]["allowedCommandPatterns"],
                         ["^/usr/bin/jupyter-lab .*"])
        self.check_args_accepted(objects)

    def test_monero_and_tcpflowkiller_values_accepted_but_refused_with_a_clear_message(self):
        every = {"detectors": {"execwhacker": {"enabled": True},
                               "monero": {"enabled": True, "resources": {"limits": {"memory": "64Mi"}}},
                               "tcpflowkiller": {"enabled": True, "bannedIpv4ConfigMaps": {"ips": "banned.txt"},
                                                 "config": {"FlowKiller": {"log_connects": True}}}}}
        for detector in ("monero", "tcpflowkiller"):
            values = copy.deepcopy(every)
            for other in ("monero", "tcpflowkiller"):
                values["detectors"][other]["enabled"] = other == detector
            with self.subTest(detector=detector):
                proc = helm_template(values=values, check=False)
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn(f"detectors.{detector}.enabled=true: the {detector} detector is not implemented",
                              proc.stderr)
                self.assertNotIn("schema", proc.stderr)  # accepted by the schema, refused by the chart
        # Every detector's values present but only execwhacker enabled: renders.
        values = copy.deepcopy(every)
        values["detectors"]["monero"]["enabled"] = False
        values["detectors"]["tcpflowkiller"]["enabled"] = False
        ds = daemonset(render(values=values))
        self.assertEqual(list(containers(ds)), ["collector", "execwhacker", "exporter"])

    def test_no_detector_enabled_renders_nothing(self):
        self.assertEqual(render(values={"detectors": {"execwhacker": {"enabled": False}}}), [])

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
            "dryRun as string": {"dryRun": "true"},
            "secret without keys": {"detectors": {"execwhacker": {"configSecrets": [{"name": "s"}]}}},
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
        self.check_args_accepted(objects, secret_files={"cryptnono-banned": {"banned.json": config,
                                                                               "more.json": config}})

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
