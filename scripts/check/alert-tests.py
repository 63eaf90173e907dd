#!/usr/bin/env python3
"""Writes dashboards/alerts.test.yml: every alert of dashboards/alerts.yml fires on its symptom and
stays quiet without it (promtool test rules). The cases are written here, compactly; the expected
annotations are taken from the rules themselves (with $labels expanded), so that a reworded
description needs no edit here. `--check` exits 1 when the file is not what this would write."""

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
RULES = ROOT / "dashboards" / "alerts.yml"
OUT = ROOT / "dashboards" / "alerts.test.yml"

E = 'job="edge",instance="e1"'
R = 'job="reconciler",instance="r1"'


def s(series, values):
    return {"series": series, "values": values}


# (name, series, eval time, alert, expected label sets: [] for quiet)
CASES = [
    # Storage: a sustained failure rate pages; an isolated blip only opens a ticket.
    ("a sustained storage failure pages", [
        s(f'edge_webhook_requests_total{{{E},outcome="storage_error"}}', "0+6x40"),
        s(f'edge_webhook_requests_total{{{E},outcome="processed"}}', "0+6x40"),
    ], "30m", "EdgeWebhookStorageFailing", [{}]),
    ("a single 5xx blip does not page", [
        s(f'edge_webhook_requests_total{{{E},outcome="storage_error"}}', "0x10 1x30"),
        s(f'edge_webhook_requests_total{{{E},outcome="processed"}}', "0+6x40"),
    ], "30m", "EdgeWebhookStorageFailing", []),
    ("a single 5xx blip opens a ticket", [
        s(f'edge_webhook_requests_total{{{E},outcome="storage_error"}}', "0x10 1x30"),
        s(f'edge_webhook_requests_total{{{E},outcome="processed"}}', "0+6x40"),
    ], "30m", "EdgeWebhookStorageErrors", [{}]),
    ("no 5xx, no ticket", [
        s(f'edge_webhook_requests_total{{{E},outcome="storage_error"}}', "0x40"),
        s(f'edge_webhook_requests_total{{{E},outcome="processed"}}', "0+6x40"),
    ], "30m", "EdgeWebhookStorageErrors", []),
    # Signatures: a small shop (one delivery every five minutes) whose every delivery fails after
    # a rotation pages within 30 minutes; junk while real webhooks succeed never does.
    ("a small shop's rotation gone wrong pages within 30 minutes", [
        # One webhook every 5 minutes: the last succeeds at minute 25, every one from minute 30
        # fails to match; the page comes once no success is left in the 30-minute window.
        s(f'edge_webhook_requests_total{{{E},outcome="processed"}}', "0x4 1x4 2x4 3x4 4x4 5x64"),
        s(f'edge_webhook_signature_failures_total{{{E},reason="no_match"}}',
          "0x30 1x4 2x4 3x4 4x4 5x4 6x4 7x4 8x4 9x10"),
    ], "59m", "EdgeWebhookSignatureFailures", [{}]),
    ("junk while real webhooks succeed does not page", [
        s(f'edge_webhook_requests_total{{{E},outcome="processed"}}', "0+1x60"),
        s(f'edge_webhook_signature_failures_total{{{E},reason="no_match"}}', "0+5x60"),
        s(f'edge_webhook_signature_failures_total{{{E},reason="malformed"}}', "0+50x60"),
    ], "59m", "EdgeWebhookSignatureFailures", []),
    ("a scanner at night without a Stripe signature does not page", [
        s(f'edge_webhook_requests_total{{{E},outcome="processed"}}', "0x60"),
        s(f'edge_webhook_signature_failures_total{{{E},reason="missing"}}', "0+20x60"),
        s(f'edge_webhook_signature_failures_total{{{E},reason="malformed"}}', "0+20x60"),
    ], "59m", "EdgeWebhookSignatureFailures", []),
    # Targets and readiness.
    ("an edge that cannot be scraped pages", [s(f'up{{{E}}}', "1x5 0x10")], "12m", "EdgeDown",
     [{"instance": "e1", "job": "edge"}]),
    ("a scraped edge is up", [s(f'up{{{E}}}', "1x15")], "12m", "EdgeDown", []),
    ("edges that vanish from discovery page", [s(f'up{{{R}}}', "1x15")], "12m",
     "EdgeTargetsMissing", [{"job": "edge"}]),
    ("known edges are not missing", [s(f'up{{{E}}}', "1x15")], "12m", "EdgeTargetsMissing", []),
    ("an edge not ready pages", [s(f'edge_ready{{{E}}}', "1x3 0x10")], "12m", "EdgeNotReady",
     [{"instance": "e1"}]),
    ("a ready edge does not page", [s(f'edge_ready{{{E}}}', "1x15")], "12m", "EdgeNotReady", []),
    ("no webhook for an hour opens a ticket", [
        s(f'edge_webhook_requests_total{{{E},outcome="processed"}}', "5x100"),
    ], "90m", "EdgeNoWebhooks", [{}]),
    ("webhooks flowing, no ticket", [
        s(f'edge_webhook_requests_total{{{E},outcome="processed"}}', "0+1x100"),
    ], "90m", "EdgeNoWebhooks", []),
    ("slow webhooks open a ticket", [
        s(f'edge_webhook_request_duration_seconds_bucket{{{E},outcome="processed",le="0.5"}}', "0+1x30"),
        s(f'edge_webhook_request_duration_seconds_bucket{{{E},outcome="processed",le="1"}}', "0+10x30"),
        s(f'edge_webhook_request_duration_seconds_bucket{{{E},outcome="processed",le="+Inf"}}', "0+10x30"),
    ], "25m", "EdgeWebhookLatencyHigh", [{}]),
    ("fast webhooks, no ticket", [
        s(f'edge_webhook_request_duration_seconds_bucket{{{E},outcome="processed",le="0.5"}}', "0+10x30"),
        s(f'edge_webhook_request_duration_seconds_bucket{{{E},outcome="processed",le="+Inf"}}', "0+10x30"),
    ], "25m", "EdgeWebhookLatencyHigh", []),
    # Pools: the writers' pool pages; the admin pool (readiness probes) does not.
    ("writers waiting for connections page", [
        s(f'edge_db_pool_connections{{{E},pool="writer",state="waiting"}}', "0x2 3x10"),
    ], "10m", "EdgeWriterPoolSaturated", [{"instance": "e1"}]),
    ("a busy admin pool does not page", [
        s(f'edge_db_pool_connections{{{E},pool="writer",state="waiting"}}', "0x12"),
        s(f'edge_db_pool_connections{{{E},pool="admin",state="waiting"}}', "4x12"),
    ], "10m", "EdgeWriterPoolSaturated", []),
    # Orders deliberately left unpaid: a ticket per kind.
    ("an order left unpaid opens a ticket naming its kind", [
        s(f'edge_order_anomalies_total{{{E},kind="session_mismatch"}}', "0x5 1x20"),
        s(f'edge_order_anomalies_total{{{E},kind="amount_mismatch"}}', "0x25"),
    ], "20m", "EdgeOrdersLeftUnpaid", [{"kind": "session_mismatch"}]),
    ("no anomaly, no ticket", [
        s(f'edge_order_anomalies_total{{{E},kind="unreadable"}}', "0x25"),
    ], "20m", "EdgeOrdersLeftUnpaid", []),
    ("shed load opens a ticket", [
        s(f'edge_webhook_requests_total{{{E},outcome="overloaded"}}', "0x5 40x20"),
        s(f'edge_accept_errors_total{{{E},listener="public"}}', "0x25"),
    ], "10m", "EdgeOverloaded", [{}]),
    ("no load shed, no ticket", [
        s(f'edge_webhook_requests_total{{{E},outcome="overloaded"}}', "0x25"),
        s(f'edge_accept_errors_total{{{E},listener="public"}}', "0x25"),
    ], "20m", "EdgeOverloaded", []),
    # The proxy: nearly every slot held for five minutes pages; a busy but bounded proxy does not.
    ("a proxy holding over 90 % of its slots for five minutes pages", [
        s(f'edge_proxy_requests_in_flight{{{E}}}', "1000x15"),
        s(f'edge_proxy_inflight_limit{{{E}}}', "1024x15"),
    ], "10m", "EdgeProxySaturated", [{"instance": "e1"}]),
    ("a busy proxy with room does not page", [
        s(f'edge_proxy_requests_in_flight{{{E}}}', "500x15"),
        s(f'edge_proxy_inflight_limit{{{E}}}', "1024x15"),
    ], "10m", "EdgeProxySaturated", []),
    # HTTPS: a certificate 10 days from its end opens a ticket; a fresh one, or none, does not.
    ("a certificate 10 days from its end opens a ticket", [
        s(f'edge_tls_certificate_expiry_timestamp_seconds{{{E}}}', "864000x120"),
    ], "90m", "EdgeTlsCertificateExpiring", [{"instance": "e1", "job": "edge"}]),
    ("a certificate 60 days from its end is quiet", [
        s(f'edge_tls_certificate_expiry_timestamp_seconds{{{E}}}', "5184000x120"),
    ], "90m", "EdgeTlsCertificateExpiring", []),
    ("an edge without HTTPS is quiet", [
        s(f'edge_tls_certificate_expiry_timestamp_seconds{{{E}}}', "0x120"),
    ], "90m", "EdgeTlsCertificateExpiring", []),
    # Order notifications: an app that stops acknowledging pages after 10 minutes (+5); one that
    # lags a few minutes behind does not; dead notifications open a ticket until redelivered.
    ("an app that stopped acknowledging pages", [
        s(f'reconciler_app_notify_lag_seconds{{{R}}}', "0+60x30"),
    ], "20m", "AppNotificationsLagging", [{}]),
    ("an app a few minutes behind does not page", [
        s(f'reconciler_app_notify_lag_seconds{{{R}}}', "240x30"),
    ], "20m", "AppNotificationsLagging", []),
    ("a dead notification opens a ticket", [
        s(f'reconciler_app_notify_dead{{{R}}}', "0x5 2x20"),
    ], "20m", "AppNotificationsDead", [{}]),
    ("no dead notification, no ticket", [
        s(f'reconciler_app_notify_dead{{{R}}}', "0x25"),
    ], "20m", "AppNotificationsDead", []),
    # Disputes: a ticket naming the deadline's bucket as soon as one is open.
    ("a dispute due within 72 hours opens a ticket naming it", [
        s(f'edge_disputes_open{{{E},due="within_72h"}}', "0x5 1x10"),
        s(f'edge_disputes_open{{{E},due="later"}}', "0x15"),
    ], "10m", "DisputeNeedsResponse", [{"due": "within_72h"}]),
    # Sweeps: failing for 12 hours with no success opens a ticket; one success keeps it quiet.
    ("sweeps that only fail open a ticket", [
        s(f'reconciler_sweep_runs_total{{{R},trigger="schedule",outcome="failed"}}', "0+1x30"),
        s(f'reconciler_sweep_runs_total{{{R},trigger="schedule",outcome="ok"}}', "0x30"),
    ], "25m", "ReconcilerSweepsFailing", [{}]),
    ("a sweep that succeeded keeps it quiet", [
        s(f'reconciler_sweep_runs_total{{{R},trigger="schedule",outcome="failed"}}', "0+1x30"),
        s(f'reconciler_sweep_runs_total{{{R},trigger="schedule",outcome="ok"}}', "0x10 1x20"),
    ], "25m", "ReconcilerSweepsFailing", []),
    ("no open dispute, no ticket", [
        s(f'edge_disputes_open{{{E},due="within_72h"}}', "0x15"),
        s(f'edge_disputes_open{{{E},due="later"}}', "0x15"),
    ], "10m", "DisputeNeedsResponse", []),
    # The reconciler's last success, read from the database by the edge: works under cron too.
    ("no successful pass for 30 minutes pages", [
        s(f'edge_reconcile_last_success_timestamp_seconds{{{E}}}', "600x60"),
    ], "50m", "ReconcilerStale", [{}]),
    ("passes completing, no page", [
        s(f'edge_reconcile_last_success_timestamp_seconds{{{E}}}', "0+60x60"),
    ], "45m", "ReconcilerStale", []),
    ("a reconciler that cannot be scraped opens a ticket", [s(f'up{{{R}}}', "0x10")], "8m",
     "ReconcilerDown", [{"instance": "r1", "job": "reconciler"}]),
    ("a scraped reconciler is up", [s(f'up{{{R}}}', "1x10")], "8m", "ReconcilerDown", []),
    ("reconcilers that vanish open a ticket", [s(f'up{{{E}}}', "1x30")], "20m",
     "ReconcilerTargetsMissing", [{"job": "reconciler"}]),
    ("known reconcilers are not missing", [s(f'up{{{R}}}', "1x30")], "20m", "ReconcilerTargetsMissing", []),
    ("a reconciler not ready opens a ticket", [s(f'reconciler_ready{{{R}}}', "0x15")], "12m",
     "ReconcilerNotReady", [{"instance": "r1"}]),
    ("a ready reconciler, no ticket", [s(f'reconciler_ready{{{R}}}', "1x15")], "12m", "ReconcilerNotReady", []),
    ("missing events found open a ticket", [
        s(f'reconciler_events_missing_total{{{R}}}', "0x5 3x20"),
    ], "10m", "ReconcilerFindsMissingEvents", [{}]),
    ("no missing event, no ticket", [s(f'reconciler_events_missing_total{{{R}}}', "0x25")], "10m",
     "ReconcilerFindsMissingEvents", []),
    ("failing passes open a ticket", [
        s(f'reconciler_runs_total{{{R},trigger="schedule",outcome="failed"}}', "0+1x30"),
    ], "20m", "ReconcilerPassesFailing", [{}]),
    ("one failed pass is not a pattern", [
        s(f'reconciler_runs_total{{{R},trigger="schedule",outcome="failed"}}', "0x5 1x30"),
    ], "20m", "ReconcilerPassesFailing", []),
    ("Stripe errors open a ticket", [
        s(f'reconciler_stripe_requests_total{{{R},endpoint="events.list",status_class="5xx"}}', "0+30x40"),
        s(f'reconciler_stripe_rate_limited_total{{{R},endpoint="events.list"}}', "0x40"),
    ], "30m", "ReconcilerStripeErrors", [{}]),
    ("a healthy Stripe, no ticket", [
        s(f'reconciler_stripe_requests_total{{{R},endpoint="events.list",status_class="5xx"}}', "0x40"),
        s(f'reconciler_stripe_rate_limited_total{{{R},endpoint="events.list"}}', "0x40"),
    ], "30m", "ReconcilerStripeErrors", []),
]


def expand(text, labels):
    for k, v in labels.items():
        text = text.replace("{{ $labels.%s }}" % k, v)
    return text


def main():
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    covered = {c[3] for c in CASES}
    missing = sorted(set(rules) - covered)
    if missing:
        sys.exit(f"alerts without a test case: {missing}")
    tests = []
    for name, series, at, alert, expected in CASES:
        rule = rules[alert]
        alerts = []
        for labels in expected:
            alerts.append({
                "exp_labels": {**rule.get("labels", {}), **labels},
                "exp_annotations": {k: " ".join(expand(v, labels).split())
                                    for k, v in rule.get("annotations", {}).items()},
            })
        tests.append({
            "name": f"{alert}: {name}",
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": alerts}],
        })
    text = ("# Written by scripts/check/alert-tests.py (edit the cases there): every alert fires on its\n"
            "# symptom and stays quiet without it. Run: promtool test rules dashboards/alerts.test.yml\n"
            + yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests},
                             sort_keys=False, width=100, allow_unicode=True))
    if "--check" in sys.argv:
        if OUT.read_text() != text:
            sys.exit("dashboards/alerts.test.yml is stale: run scripts/check/alert-tests.py")
        return
    OUT.write_text(text)
    print(f"written: {OUT.relative_to(ROOT)} ({len(tests)} cases)")


if __name__ == "__main__":
    main()
