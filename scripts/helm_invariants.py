"""Checks the rendered chart keeps the promises the README and docs/operations.md make, beyond schema validity.

Usage: helm_invariants.py RENDERED.yaml (default|production|waived) [NOTES.txt]

`waived` is the render with the laptop waivers (apiAuth.disabled,
realtimeGateway.jwt.allowAnyAudienceAndIssuer); the other two must require API keys and JWT claims.
"""
import posixpath
import sys

import yaml

SECRET_VARS = {"REDIS_URL", "DATABASE_URL", "JWT_SECRET", "NCY_SMTP_URL"}
# The services with gRPC RPCs, which need API keys; the worker serves health only.
API_SERVICES = {"cache-gateway", "job-scheduler", "realtime-gateway"}
# The alerts of the PrometheusRule (rendered in production values). None for readiness: no service
# exports a readiness metric, and a shared dependency down leaves instances ready by design.
ALERTS = ("NcyDependencyDown", "NcyDeadLetterGrowth", "NcyQueueBacklog", "NcyCacheHitRatioLow",
          "NcyWebSocketDisconnectStorm")


def fail(msg):
    print(f"helm-check: invariant failed: {msg}")
    sys.exit(1)


def component(dep):
    return dep["metadata"]["labels"]["app.kubernetes.io/component"]


def container_env(pod):
    (c,) = pod["containers"]
    return {e["name"]: e for e in c.get("env", [])}


def check_secret_mounts(name, pod):
    """A Secret mounted with subPath never sees an update (rotated keys, renewed certificates)."""
    secret_volumes = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] in secret_volumes and "subPath" in m:
                fail(f"{name}: Secret volume {m['name']} mounted with subPath; rotations would not arrive")


def check_api_keys(dep, flavour):
    """An API service reads its keys from a mounted Secret directory, or carries the explicit waiver.

    Returns the names of the Secrets holding its keys file.
    """
    name = dep["metadata"]["name"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = container_env(pod)
    mode = env.get("NCY_API_AUTH", {}).get("value", "required")
    keys_file = env.get("NCY_API_KEYS_FILE", {}).get("value")
    if mode == "disabled" and keys_file:
        fail(f"{name}: NCY_API_AUTH=disabled and NCY_API_KEYS_FILE together (the service refuses to start)")
    if flavour == "waived":
        if mode != "disabled" or keys_file:
            fail(f"{name}: with apiAuth.disabled the service must get NCY_API_AUTH=disabled and no keys file")
        return set()
    if mode != "required":
        fail(f"{name}: NCY_API_AUTH={mode!r} without the apiAuth.disabled waiver")
    if not keys_file:
        fail(f"{name}: serves RPCs but has no NCY_API_KEYS_FILE (it would refuse to start)")
    reload = env.get("NCY_API_KEYS_RELOAD_SECS", {}).get("value", "5")
    if not reload.isdigit() or not 1 <= int(reload) <= 3600:
        fail(f"{name}: NCY_API_KEYS_RELOAD_SECS={reload!r} is not 1-3600 seconds")
    # The file lies in a directory mount (no subPath, so the kubelet swaps in an edited Secret).
    mounts = [m for m in c.get("volumeMounts", [])
              if keys_file == m["mountPath"] or keys_file.startswith(m["mountPath"].rstrip("/") + "/")]
    if any("subPath" in m or "subPathExpr" in m for m in mounts):
        fail(f"{name}: the API keys volume is mounted with subPath; a rotated Secret would never arrive")
    if len(mounts) != 1 or mounts[0]["mountPath"] == keys_file:
        fail(f"{name}: {keys_file} is not inside exactly one directory mount")
    (mount,) = mounts
    if not mount.get("readOnly"):
        fail(f"{name}: the API keys volume is not mounted read-only")
    volume = next((v for v in pod.get("volumes", []) if v["name"] == mount["name"]), None)
    if not volume or "secret" not in volume or not volume["secret"].get("secretName"):
        fail(f"{name}: the API keys volume {mount['name']} is not a named Secret")
    items = volume["secret"].get("items", [])
    relative = posixpath.relpath(keys_file, mount["mountPath"])
    if len(items) != 1 or items[0]["path"] != relative or not items[0].get("key"):
        fail(f"{name}: the API keys Secret must project exactly one key, to {relative}, got {items}")
    return {volume["secret"]["secretName"]}


def check_worker_has_no_keys(name, pod, keys_secrets):
    env = container_env(pod)
    for var in ("NCY_API_KEYS_FILE", "NCY_API_AUTH", "NCY_API_KEYS_RELOAD_SECS"):
        if var in env:
            fail(f"{name}: the worker has no RPCs and must not get {var}")
    for v in pod.get("volumes", []):
        if v.get("secret", {}).get("secretName") in keys_secrets or v["name"] == "api-keys":
            fail(f"{name}: the worker mounts the API keys Secret ({v['name']}); it has no RPCs")


def check_jwt_claims(name, c, flavour):
    env = {e["name"]: e.get("value") for e in c["env"]}
    if flavour == "waived":
        return
    for var in ("NCY_JWT_AUDIENCE", "NCY_JWT_ISSUER"):
        if not env.get(var):
            fail(f"{name}: {var} is not set; any token signed with the key would open a socket")


def check_network_policies(policies, deployments, flavour):
    """One NetworkPolicy per service (on by default), selecting its pods, naming only its ports."""
    by_name = {p["metadata"]["name"]: p for p in policies}
    for dep in deployments:
        name = dep["metadata"]["name"]
        policy = by_name.get(name)
        if not policy:
            fail(f"{name}: no NetworkPolicy in the {flavour} render (networkPolicy.enabled is on by default)")
        spec = policy["spec"]
        if spec["podSelector"].get("matchLabels") != dep["spec"]["selector"]["matchLabels"]:
            fail(f"NetworkPolicy {name} does not select exactly the pods of its Deployment")
        if "Ingress" not in spec.get("policyTypes", []):
            fail(f"NetworkPolicy {name} does not restrict ingress")
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        port_names = {p["name"] for p in c["ports"]}
        grpc_rules = []
        for rule in spec.get("ingress", []):
            if not rule.get("from") or not rule.get("ports"):
                fail(f"NetworkPolicy {name} has a rule open to every source or every port")
            for port in rule["ports"]:
                if port["port"] not in port_names:
                    fail(f"NetworkPolicy {name} admits port {port['port']}, which its pods do not have")
                if port["port"] == "grpc":
                    grpc_rules.append(rule)
        if not grpc_rules:
            fail(f"NetworkPolicy {name} admits no gRPC clients")
        if flavour == "production":
            # Production narrows the clients: no peer selecting every pod of the namespace.
            for rule in grpc_rules:
                for peer in rule["from"]:
                    sel = peer.get("podSelector")
                    if sel is not None and not sel.get("matchLabels") and not sel.get("matchExpressions") \
                            and "namespaceSelector" not in peer:
                        fail(f"NetworkPolicy {name}: production admits gRPC from every pod of the namespace")


def check_notes(path, flavour):
    with open(path) as f:
        notes = f.read()
    if flavour == "waived":
        for needle in ("API authentication is DISABLED", "allowAnyAudienceAndIssuer=true"):
            if needle not in notes:
                fail(f"NOTES.txt of the waived render does not warn: {needle!r}")
        return
    for needle in ("create secret generic", "--from-file=api-keys.toml=", "next to the old one",
                   "Remove the old key"):
        if needle not in notes:
            fail(f"NOTES.txt does not explain how to create and rotate the API keys Secret ({needle!r})")


def check_dependency_alert(alert):
    """A dependency down on any instance pages after a minute, says what still works (readiness no
    longer drops, so nothing else would tell) and where the guide is."""
    if alert["expr"].strip() != "min by (job, dependency) (ncy_dependency_up) == 0":
        fail(f"NcyDependencyDown watches {alert['expr']!r}")
    if alert.get("for") != "1m" or alert.get("labels", {}).get("severity") != "warning":
        fail("NcyDependencyDown must be a warning after 1m")
    text = " ".join(alert.get("annotations", {}).values())
    for needle in ("stay ready", "docs/operations.md#dependency-outages", "{{ $labels.dependency }}"):
        if needle not in text:
            fail(f"NcyDependencyDown annotations lack {needle!r}")


def main(path, flavour, notes_path=None):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 4:
        fail(f"expected 4 Deployments, got {len(deployments)}")
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    accounts = {a["metadata"]["name"] for a in by_kind.get("ServiceAccount", [])}
    pdbs = {p["metadata"]["name"] for p in by_kind.get("PodDisruptionBudget", [])}
    hpas = {h["metadata"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", [])}

    keys_secrets = set()
    for dep in deployments:
        if component(dep) in API_SERVICES:
            keys_secrets |= check_api_keys(dep, flavour)
    for dep in deployments:
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        check_secret_mounts(name, pod)
        if component(dep) == "worker":
            check_worker_has_no_keys(name, pod, keys_secrets)
        if component(dep) == "realtime-gateway":
            check_jwt_claims(name, c, flavour)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe not in c:
                fail(f"{name}: no {probe}")
        if not pod["securityContext"].get("runAsNonRoot"):
            fail(f"{name}: pod may run as root")
        if not c["securityContext"].get("readOnlyRootFilesystem"):
            fail(f"{name}: root filesystem is writable")
        env = {e["name"]: e for e in c["env"]}
        grace = int(env["NCY_SHUTDOWN_GRACE_SECS"]["value"])
        if pod["terminationGracePeriodSeconds"] <= grace:
            fail(f"{name}: terminationGracePeriodSeconds must exceed the drain deadline {grace}")
        for var in SECRET_VARS & env.keys():
            if "valueFrom" not in env[var] or "secretKeyRef" not in env[var]["valueFrom"]:
                fail(f"{name}: {var} must come from a Secret, not a literal value")
        if name.endswith("-worker"):
            store = env.get("NCY_WORKER_FILE_STORE", {}).get("value", "")
            if not store:
                fail(f"{name}: NCY_WORKER_FILE_STORE is not set")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if not store.startswith("s3://") and store not in mounts:
                fail(f"{name}: the file store {store} is not a mounted volume (the root filesystem is read-only)")
        if name not in services:
            fail(f"{name}: no Service")
        ports = {p["name"] for p in c["ports"]}
        for sp in services[name]["spec"]["ports"]:
            if sp["targetPort"] not in ports:
                fail(f"{name}: Service targets unknown port {sp['targetPort']}")
        if pod["serviceAccountName"] not in accounts:
            fail(f"{name}: ServiceAccount {pod['serviceAccountName']} not rendered")
        if name not in pdbs:
            fail(f"{name}: no PodDisruptionBudget")
        if flavour == "production":
            if name not in hpas:
                fail(f"{name}: no HorizontalPodAutoscaler in production values")
            if "replicas" in dep["spec"]:
                fail(f"{name}: replicas set while an HPA owns the count")

    check_network_policies(by_kind.get("NetworkPolicy", []), deployments, flavour)
    if notes_path:
        check_notes(notes_path, flavour)

    (job,) = by_kind.get("Job", [])
    hooks = job["metadata"]["annotations"]["helm.sh/hook"]
    if hooks != "pre-install,pre-upgrade":
        fail(f"migrations Job hooks are {hooks!r}")

    if flavour == "production":
        worker_hpa = next(h for n, h in hpas.items() if n.endswith("-worker"))
        if not any(m["type"] == "External" for m in worker_hpa["spec"]["metrics"]):
            fail("worker HPA has no external queue-depth metric in production values")
        for sm in by_kind.get("ServiceMonitor", []):
            sel = sm["spec"]["selector"]["matchLabels"]
            matches = [s for s in services.values()
                       if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())]
            if len(matches) != 1:
                fail(f"ServiceMonitor {sm['metadata']['name']} selects {len(matches)} Services")
            port_names = {p["name"] for p in matches[0]["spec"]["ports"]}
            for ep in sm["spec"]["endpoints"]:
                if ep["port"] not in port_names:
                    fail(f"ServiceMonitor {sm['metadata']['name']} scrapes unknown port {ep['port']}")
        (rule,) = by_kind.get("PrometheusRule", [])
        alerts = {r.get("alert"): r for g in rule["spec"]["groups"] for r in g["rules"]}
        if not all(name and r.get("expr") for name, r in alerts.items()):
            fail("every PrometheusRule alert needs a name and an expression")
        missing = set(ALERTS) - set(alerts)
        if missing:
            fail(f"PrometheusRule lacks the alerts {sorted(missing)}")
        check_dependency_alert(alerts["NcyDependencyDown"])
        ing = by_kind.get("Ingress", [])
        if len(ing) != 1:
            fail("production values should render the WebSocket Ingress")
    print(f"helm-check: invariants hold for {flavour} values ({len(docs)} manifests)")


if __name__ == "__main__":
    main(*sys.argv[1:4])
