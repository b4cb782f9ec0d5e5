"""Checks the rendered chart keeps the promises the README and docs/operations.md make, beyond schema validity.

Usage: helm_invariants.py RENDERED.yaml (default|production|waived) [NOTES.txt]

`waived` is the render with the laptop waivers (apiAuth.disabled,
realtimeGateway.jwt.allowAnyAudienceAndIssuer); the other two must require API keys and JWT claims.
The operator console is off in the default values and on in the production and waived renders.
"""
import posixpath
import sys

import yaml

SECRET_VARS = {"REDIS_URL", "DATABASE_URL", "JWT_SECRET", "NCY_SMTP_URL", "NCY_CONSOLE_SESSION_SECRET",
               "NCY_CONSOLE_API_KEY"}
# The four services; each render has all four.
SERVICES = {"cache-gateway", "job-scheduler", "worker", "realtime-gateway"}
# The services with gRPC RPCs, which need API keys; the worker serves health only.
API_SERVICES = {"cache-gateway", "job-scheduler", "realtime-gateway"}
# The operator console (web pages, no RPCs): whether each render has it.
CONSOLE = "console"
CONSOLE_RENDERED = {"default": False, "production": True, "waived": True}
# The alerts of the PrometheusRule (rendered in production values). None for readiness: no service
# exports a readiness metric, and a shared dependency down leaves instances ready by design.
ALERTS = ("NcyDependencyDown", "NcyDeadLetterGrowth", "NcyQueueBacklog", "NcyCacheHitRatioLow",
          "NcyWebSocketDisconnectStorm", "NcyQueueHistoryFlushFailing", "NcyConsoleUpstreamErrors")


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
    return {check_secret_file(name, pod, keys_file, "API keys")}


def check_secret_file(name, pod, path, what):
    """The file at `path` is the one key a Secret projects into a read-only directory mount (no
    subPath, so the kubelet swaps in an edited Secret). Returns the Secret's name."""
    (c,) = pod["containers"]
    mounts = [m for m in c.get("volumeMounts", [])
              if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    if any("subPath" in m or "subPathExpr" in m for m in mounts):
        fail(f"{name}: the {what} volume is mounted with subPath; an edited Secret would never arrive")
    if len(mounts) != 1 or mounts[0]["mountPath"] == path:
        fail(f"{name}: {path} is not inside exactly one directory mount")
    (mount,) = mounts
    if not mount.get("readOnly"):
        fail(f"{name}: the {what} volume is not mounted read-only")
    volume = next((v for v in pod.get("volumes", []) if v["name"] == mount["name"]), None)
    if not volume or "secret" not in volume or not volume["secret"].get("secretName"):
        fail(f"{name}: the {what} volume {mount['name']} is not a named Secret")
    items = volume["secret"].get("items", [])
    relative = posixpath.relpath(path, mount["mountPath"])
    if len(items) != 1 or items[0]["path"] != relative or not items[0].get("key"):
        fail(f"{name}: the {what} Secret must project exactly one key, to {relative}, got {items}")
    return volume["secret"]["secretName"]


def check_has_no_keys(name, pod, keys_secrets):
    """The worker and the console serve no RPCs: no API keys settings, no keys Secret."""
    env = container_env(pod)
    for var in ("NCY_API_KEYS_FILE", "NCY_API_AUTH", "NCY_API_KEYS_RELOAD_SECS"):
        if var in env:
            fail(f"{name}: has no RPCs and must not get {var}")
    for v in pod.get("volumes", []):
        if v.get("secret", {}).get("secretName") in keys_secrets or v["name"] == "api-keys":
            fail(f"{name}: mounts the API keys Secret ({v['name']}); it has no RPCs")


def check_console(dep, services, ingresses, flavour):
    """The console's contract: its page port, the job-scheduler's URL, its users file from a Secret
    directory, its session secret and (unless apiAuth is waived) API key from Secrets, no Redis or
    PostgreSQL, a Secure cookie behind TLS and in production, and a Service without gRPC."""
    name = dep["metadata"]["name"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = container_env(pod)
    value = lambda var: env.get(var, {}).get("value")  # noqa: E731
    for var in ("REDIS_URL", "DATABASE_URL"):
        if var in env:
            fail(f"{name}: the console uses neither Redis nor PostgreSQL but gets {var}")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    addr = value("NCY_CONSOLE_ADDR") or ""
    if "http" not in ports or addr != f"0.0.0.0:{ports['http']}":
        fail(f"{name}: NCY_CONSOLE_ADDR={addr!r} is not 0.0.0.0 on its http port {ports.get('http')}")
    for component, var in (
        ("job-scheduler", "NCY_CONSOLE_JOBS_URL"),
        ("cache-gateway", "NCY_CONSOLE_CACHE_URL"),
        ("realtime-gateway", "NCY_CONSOLE_REALTIME_URL"),
    ):
        service = next((s for s in services.values() if s["metadata"]["labels"].get(
            "app.kubernetes.io/component") == component), None)
        if not service:
            if component == "job-scheduler":
                fail(f"{name}: no job-scheduler Service for the console to call")
            continue  # that page shows the service as unavailable; the console still works
        grpc = next((p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"), None)
        expected = f"http://{service['metadata']['name']}:{grpc}"
        if value(var) != expected:
            fail(f"{name}: {var}={value(var)!r}, expected {expected!r}")
    users = value("NCY_CONSOLE_USERS_FILE")
    if not users:
        fail(f"{name}: NCY_CONSOLE_USERS_FILE is not set (the console has no one to sign in)")
    check_secret_file(name, pod, users, "console users")
    if "NCY_CONSOLE_SESSION_SECRET" not in env:
        fail(f"{name}: NCY_CONSOLE_SESSION_SECRET is not set")
    if flavour != "waived" and "NCY_CONSOLE_API_KEY" not in env:
        fail(f"{name}: no NCY_CONSOLE_API_KEY while the job-scheduler requires API keys")
    idle = value("NCY_CONSOLE_SESSION_IDLE_SECS") or ""
    if not idle.isdigit() or int(idle) < 1:
        fail(f"{name}: NCY_CONSOLE_SESSION_IDLE_SECS={idle!r} is not a positive number of seconds")
    secure = value("NCY_CONSOLE_SECURE_COOKIE")
    if secure not in ("true", "false"):
        fail(f"{name}: NCY_CONSOLE_SECURE_COOKIE={secure!r} is not true or false")
    behind_tls = any(ing["spec"].get("tls") for ing in ingresses_to(ingresses, name))
    if secure != "true" and (behind_tls or flavour == "production"):
        fail(f"{name}: the session cookie is not Secure {'behind TLS' if behind_tls else 'in production'}")
    if name not in services:
        fail(f"{name}: no Service")
    service_ports = {p["name"] for p in services[name]["spec"]["ports"]}
    if service_ports != {"http", "admin"}:
        fail(f"{name}: the console's Service must expose http and admin only, got {sorted(service_ports)}")


def ingresses_to(ingresses, service):
    """The Ingresses with a backend on `service`."""
    return [ing for ing in ingresses
            if any(p["backend"]["service"]["name"] == service
                   for r in ing["spec"]["rules"] for p in r["http"]["paths"])]


def check_ingresses(ingresses, services):
    """Every Ingress backend is a rendered Service's named port; TLS covers the rule's host."""
    for ing in ingresses:
        iname = ing["metadata"]["name"]
        tls_hosts = {h for t in ing["spec"].get("tls", []) for h in t.get("hosts", [])}
        for rule in ing["spec"]["rules"]:
            if ing["spec"].get("tls") and rule.get("host") not in tls_hosts:
                fail(f"Ingress {iname}: TLS does not cover host {rule.get('host')}")
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = services.get(backend["name"])
                if not svc:
                    fail(f"Ingress {iname}: backend Service {backend['name']} is not rendered")
                if backend["port"].get("name") not in {p["name"] for p in svc["spec"]["ports"]}:
                    fail(f"Ingress {iname}: backend port {backend['port']} is not a port of {backend['name']}")


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
        grpc_rules, page_rules = [], []
        for rule in spec.get("ingress", []):
            if not rule.get("from") or not rule.get("ports"):
                fail(f"NetworkPolicy {name} has a rule open to every source or every port")
            for port in rule["ports"]:
                if port["port"] not in port_names:
                    fail(f"NetworkPolicy {name} admits port {port['port']}, which its pods do not have")
                if port["port"] == "grpc":
                    grpc_rules.append(rule)
                if port["port"] == "http":
                    page_rules.append(rule)
        if component(dep) == CONSOLE:
            # The console serves no RPCs (its pod's grpc port is the runtime's health only).
            if grpc_rules:
                fail(f"NetworkPolicy {name} admits gRPC to the console, which serves no RPCs")
            if not page_rules:
                fail(f"NetworkPolicy {name} admits no one to the console's pages")
        elif not grpc_rules:
            fail(f"NetworkPolicy {name} admits no gRPC clients")
        if flavour == "production":
            # Production narrows the clients: no peer selecting every pod of the namespace.
            for rule in grpc_rules + page_rules:
                for peer in rule["from"]:
                    sel = peer.get("podSelector")
                    if sel is not None and not sel.get("matchLabels") and not sel.get("matchExpressions") \
                            and "namespaceSelector" not in peer:
                        what = "the console's pages" if rule in page_rules else "gRPC"
                        fail(f"NetworkPolicy {name}: production admits {what} from every pod of the namespace")


def check_notes(path, flavour):
    with open(path) as f:
        notes = f.read()
    if CONSOLE_RENDERED[flavour]:
        for needle in ("port-forward svc/", "-console ", "ncy-console hash-password", "password_hash"):
            if needle not in notes:
                fail(f"NOTES.txt does not say how to reach the console and add a user ({needle!r})")
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
    components = sorted(component(d) for d in deployments)
    expected = sorted(SERVICES | ({CONSOLE} if CONSOLE_RENDERED[flavour] else set()))
    if components != expected:
        fail(f"expected {len(expected)} Deployments ({', '.join(expected)}), got {components}")
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    accounts = {a["metadata"]["name"] for a in by_kind.get("ServiceAccount", [])}
    pdbs = {p["metadata"]["name"] for p in by_kind.get("PodDisruptionBudget", [])}
    hpas = {h["metadata"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", [])}
    ingresses = by_kind.get("Ingress", [])

    keys_secrets = set()
    for dep in deployments:
        if component(dep) in API_SERVICES:
            keys_secrets |= check_api_keys(dep, flavour)
    for dep in deployments:
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        check_secret_mounts(name, pod)
        if component(dep) in ("worker", CONSOLE):
            check_has_no_keys(name, pod, keys_secrets)
        if component(dep) == CONSOLE:
            check_console(dep, services, ingresses, flavour)
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
        if len(env) != len(c["env"]):
            fail(f"{name}: a variable is set twice (the last one wins, silently)")
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
    check_ingresses(ingresses, services)
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
        # Two Ingresses: the realtime gateway's WebSockets and the console's pages, over TLS.
        by_service = {}
        for ing in ingresses:
            for r in ing["spec"]["rules"]:
                for p in r["http"]["paths"]:
                    by_service.setdefault(p["backend"]["service"]["name"], []).append(ing)
        gateway = next(n for n in services if n.endswith("-realtime-gateway"))
        console = next(n for n in services if n.endswith("-console"))
        if len(ingresses) != 2 or len(by_service.get(gateway, [])) != 1 or len(by_service.get(console, [])) != 1:
            fail("production values should render two Ingresses: the WebSocket one and the console's")
        if not by_service[console][0]["spec"].get("tls"):
            fail("the console's Ingress has no TLS in production values")
    print(f"helm-check: invariants hold for {flavour} values ({len(docs)} manifests)")


if __name__ == "__main__":
    main(*sys.argv[1:4])
