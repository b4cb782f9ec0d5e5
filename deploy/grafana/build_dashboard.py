"""Builds deploy/grafana/ncy-overview.json, the NCY backbone dashboard, from the metric names the
services really export (see docs/operations.md#metrics). Re-run after changing a panel:

    python3 deploy/grafana/build_dashboard.py

`scripts/helm-check.sh` checks the committed JSON is what this script produces.
"""
import json
import os
import sys

PANELS = [
    # (row title, [(panel title, unit, [(expr, legend)], kind)])
    ("Cache", [
        ("Hit ratio by layer", "percentunit", [
            ('sum by (cache_layer) (rate(cache_hits_total[$__rate_interval])) / '
             'clamp_min(sum by (cache_layer) (rate(cache_hits_total[$__rate_interval])) + '
             'sum by (cache_layer) (rate(cache_misses_total[$__rate_interval])), 1e-9)', "{{cache_layer}}"),
        ], "timeseries"),
        ("Hit ratio by key pattern (L1)", "percentunit", [
            ('sum by (key_pattern) (rate(cache_hits_total{cache_layer="l1"}[$__rate_interval])) / '
             'clamp_min(sum by (key_pattern) (rate(cache_hits_total{cache_layer="l1"}[$__rate_interval])) + '
             'sum by (key_pattern) (rate(cache_misses_total{cache_layer="l1"}[$__rate_interval])), 1e-9)',
             "{{key_pattern}}"),
        ], "timeseries"),
        ("Operation latency p99", "s", [
            ('histogram_quantile(0.99, sum by (le, operation, cache_layer) '
             '(rate(cache_operation_duration_seconds_bucket[$__rate_interval])))', "{{operation}} {{cache_layer}}"),
        ], "timeseries"),
        ("Operations per second", "ops", [
            ('sum by (operation) (rate(cache_operation_duration_seconds_count[$__rate_interval]))', "{{operation}}"),
        ], "timeseries"),
    ]),
    ("Jobs", [
        ("Queue size by state", "short", [
            ('sum by (queue, state) (queue_size)', "{{queue}} {{state}}"),
        ], "timeseries"),
        ("Job throughput by type and outcome", "ops", [
            ('sum by (job_type, status) (rate(queue_jobs_total[$__rate_interval]))', "{{job_type}} {{status}}"),
        ], "timeseries"),
        ("Job duration p50 / p99 by type", "s", [
            ('histogram_quantile(0.5, sum by (le, job_type) (rate(queue_job_duration_seconds_bucket[$__rate_interval])))',
             "p50 {{job_type}}"),
            ('histogram_quantile(0.99, sum by (le, job_type) (rate(queue_job_duration_seconds_bucket[$__rate_interval])))',
             "p99 {{job_type}}"),
        ], "timeseries"),
        ("Dead letters", "short", [
            ('sum by (queue) (queue_size{state="dead"})', "{{queue}}"),
        ], "timeseries"),
        ("Jobs postponed by dependency outages", "ops", [
            ('sum by (queue, dependency) (rate(queue_jobs_postponed_total[$__rate_interval]))',
             "{{queue}} {{dependency}}"),
        ], "timeseries"),
        # A worker adds its finished-job counts (QueueHistory, the console's charts) every few seconds;
        # a failed flush keeps them for the next one, so failures here mean the charts lag.
        ("Queue history flush failures", "ops", [
            ('sum by (instance) (rate(queue_history_flush_failures_total[$__rate_interval]))', "{{instance}}"),
        ], "timeseries"),
    ]),
    ("Realtime", [
        ("WebSocket connections", "short", [
            ('sum by (instance) (ncy_realtime_connections)', "{{instance}}"),
        ], "timeseries"),
        ("Fan-out latency p50 / p99", "s", [
            ('histogram_quantile(0.5, sum by (le) (rate(ncy_realtime_fanout_seconds_bucket[$__rate_interval])))', "p50"),
            ('histogram_quantile(0.99, sum by (le) (rate(ncy_realtime_fanout_seconds_bucket[$__rate_interval])))', "p99"),
        ], "timeseries"),
        ("Messages per second", "ops", [
            ('sum(rate(ncy_realtime_messages_out_total[$__rate_interval]))', "delivered"),
            ('sum(rate(ncy_realtime_messages_published_total[$__rate_interval]))', "published"),
        ], "timeseries"),
        ("Disconnects by reason", "ops", [
            ('sum by (reason) (rate(ncy_realtime_disconnects_total[$__rate_interval]))', "{{reason}}"),
        ], "timeseries"),
    ]),
    ("Console", [
        ("Sign-ins by outcome", "ops", [
            ('sum by (outcome) (rate(console_logins_total[$__rate_interval]))', "{{outcome}}"),
        ], "timeseries"),
        # The cache-gateway's rate limiter could not be asked: these attempts were not limited.
        ("Sign-ins let through without the limit", "ops", [
            ('sum(rate(console_login_limit_unchecked_total[$__rate_interval]))', "unchecked"),
        ], "timeseries"),
        ("Upstream errors by service and code", "ops", [
            ('sum by (service, code) (rate(console_upstream_errors_total[$__rate_interval]))',
             "{{service}} {{code}}"),
        ], "timeseries"),
        ("Request latency p50 / p99", "s", [
            ('histogram_quantile(0.5, sum by (le) (rate(console_http_request_duration_seconds_bucket[$__rate_interval])))',
             "p50"),
            ('histogram_quantile(0.99, sum by (le, route) (rate(console_http_request_duration_seconds_bucket[$__rate_interval])))',
             "p99 {{route}}"),
        ], "timeseries"),
        ("Live streams and overview pollers", "short", [
            ('sum by (stream) (console_sse_clients)', "{{stream}} streams"),
            ('sum(console_overview_pollers)', "overview pollers"),
        ], "timeseries"),
    ]),
    ("Services", [
        ("gRPC requests by method and code", "ops", [
            ('sum by (method, code) (rate(grpc_server_handled_total[$__rate_interval]))',
             "{{method}} {{code}}"),
        ], "timeseries"),
        ("Dependencies up", "short", [
            ('min by (job, dependency) (ncy_dependency_up)', "{{job}} {{dependency}}"),
        ], "timeseries"),
    ]),
]


def build():
    panels, pid, y = [], 1, 0
    for row_title, row_panels in PANELS:
        panels.append({"type": "row", "id": pid, "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        pid, y = pid + 1, y + 1
        for i, (title, unit, targets, kind) in enumerate(row_panels):
            panels.append({
                "type": kind, "id": pid, "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": y + 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [{"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend,
                             "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                            for n, (expr, legend) in enumerate(targets)],
            })
            pid += 1
        y += 8 * ((len(row_panels) + 1) // 2)
    return {
        "title": "NCY backbone", "uid": "ncy-overview", "schemaVersion": 39, "version": 1,
        "tags": ["ncy"], "timezone": "utc", "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": panels,
    }


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ncy-overview.json")
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv:
        with open(out) as f:
            if f.read() != text:
                print("deploy/grafana/ncy-overview.json is stale: run python3 deploy/grafana/build_dashboard.py")
                sys.exit(1)
        return
    with open(out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
