"""Shared helpers of the deploy tier: paths, tool checks, rendering the chart into
validated Kubernetes objects, and small accessors for the rendered DaemonSet."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CHART = os.path.join(REPO, "deploy", "helm", "cryptnono")
VALUES_DIR = os.path.join(HERE, "values")
VALIDATOR = os.path.join(REPO, "deploy", "tools", "validate-k8s.mjs")
TOOLS_DIR = os.environ.get("CRYPTNONO_DEPLOY_TOOLS", "/opt/cryptnono-deploy-tools")
BIN = os.environ.get("CRYPTNONO_BIN", os.path.join(REPO, "build", "bin"))
CONTAINERS_CONF = os.path.join(REPO, "deploy", "podman", "containers.conf")

# The operator document's test string (config/default.json): never used to kill
# anything in these tests, only checked to be where the chart should put it.
SEED_TEST_STRING = "beiquatohGa1uay0ahMies9couyahPeiz9xohju3Ahvaik3FaeM7eey1thaish1U"

SKIP = 77  # CTest's SKIP_RETURN_CODE for this tier


def require_tools(tools, need_root=False):
    """Exits with the skip code when a required tool is missing and we are not root
    (a developer without the deploy tools); as root (CI) a missing tool is a failure,
    so CI can't pass by skipping."""
    missing = [t for t in tools if not have_tool(t)]
    is_root = os.geteuid() == 0
    if need_root and not is_root:
        print(f"SKIP: needs root (podman, host pid namespace, BPF)", file=sys.stderr)
        sys.exit(SKIP)
    if missing:
        msg = f"missing {', '.join(missing)}: run scripts/install-deploy-deps.sh"
        if is_root:
            print(f"FAIL: {msg}", file=sys.stderr)
            sys.exit(1)
        print(f"SKIP: {msg}", file=sys.stderr)
        sys.exit(SKIP)


def have_tool(tool):
    if tool == "k8s-schemas":
        return os.path.isdir(os.path.join(TOOLS_DIR, "node_modules", "kubernetes-models"))
    return shutil.which(tool) is not None


def run(cmd, check=True, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run(cmd, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def helm_template(chart=CHART, release="support", namespace="support", values_files=(), values=None,
                  check=True):
    """`helm template`; returns the CompletedProcess (stdout = YAML stream)."""
    cmd = ["helm", "template", release, chart, "--namespace", namespace]
    tmp = None
    if values is not None:
        tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(values, tmp)
        tmp.close()
        values_files = list(values_files) + [tmp.name]
    for f in values_files:
        cmd += ["--values", f]
    try:
        return run(cmd, check=check)
    finally:
        if tmp:
            os.unlink(tmp.name)


def validate(yaml_text):
    """Checks every object against the Kubernetes schema of its kind (unknown fields
    included) and returns the objects as Python values."""
    proc = run(["node", VALIDATOR, "--json", "-"], input=yaml_text, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"rendered objects fail the Kubernetes schema:\n{proc.stderr}")
    return json.loads(proc.stdout)


def render(**kwargs):
    """Renders the chart and validates every object; returns the list of objects."""
    return validate(helm_template(**kwargs).stdout)


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def daemonset(objects):
    sets = by_kind(objects, "DaemonSet")
    if len(sets) != 1:
        raise AssertionError(f"expected one DaemonSet, got {len(sets)}")
    return sets[0]


def containers(ds):
    return {c["name"]: c for c in ds["spec"]["template"]["spec"]["containers"]}


def volumes(ds):
    return {v["name"]: v for v in ds["spec"]["template"]["spec"].get("volumes", [])}


def mounts(container):
    return {m["name"]: m for m in container.get("volumeMounts", [])}


def expand_env(text, env):
    """Kubernetes' $(VAR) expansion in command and args."""
    for name, value in env.items():
        text = text.replace(f"$({name})", value)
    return text
