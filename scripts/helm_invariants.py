"""Checks the rendered chart keeps the promises the README makes, beyond schema validity.

Usage: helm_invariants.py RENDERED.yaml (default|production)
"""
import sys

import yaml

SECRET_VARS = {"REDIS_URL", "DATABASE_URL", "JWT_SECRET", "NCY_SMTP_URL"}


def fail(msg):
    print(f"helm-check: invariant failed: {msg}")
    sys.exit(1)


def main(path, flavour):
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

    for dep in deployments:
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
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
        alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
        if len(alerts) < 4 or not all(r.get("alert") and r.get("expr") for r in alerts):
            fail("PrometheusRule must carry the four alerts, each with a name and an expression")
        ing = by_kind.get("Ingress", [])
        if len(ing) != 1:
            fail("production values should render the WebSocket Ingress")
    print(f"helm-check: invariants hold for {flavour} values ({len(docs)} manifests)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
