#!/usr/bin/env python3
"""Renders dashboards/alerts.yml for a deployment: every runbook_url moved to the given base (where
this repository's docs/ are served: a fork, an internal Git host, a wiki mirror), as a Prometheus
rules file or (--kubernetes) as a prometheus-operator PrometheusRule.

  scripts/render-alerts.py --runbook-base https://git.example.com/payments/stripe-edge/-/blob/main/docs/
  scripts/render-alerts.py --runbook-base URL --kubernetes --namespace payments > rules.yaml
"""

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "dashboards" / "alerts.yml"
# The base every runbook_url of alerts.yml starts with.
DEFAULT_BASE = "https://github.com/stripe-edge/stripe-edge/blob/main/docs/"


def render(base, kubernetes, namespace, name):
    rules = yaml.safe_load(RULES.read_text())
    if not base.endswith("/"):
        base += "/"
    for group in rules["groups"]:
        for rule in group["rules"]:
            url = rule.get("annotations", {}).get("runbook_url")
            if url is None:
                continue
            if not url.startswith(DEFAULT_BASE):
                sys.exit(f"{rule['alert']}: runbook_url {url} does not start with {DEFAULT_BASE}")
            rule["annotations"]["runbook_url"] = base + url[len(DEFAULT_BASE):]
    if kubernetes:
        rules = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "stripe-edge"}},
            "spec": rules,
        }
    return yaml.safe_dump(rules, sort_keys=False, width=100, allow_unicode=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runbook-base", default=DEFAULT_BASE,
                    help="URL of the docs/ directory (default: %(default)s)")
    ap.add_argument("--kubernetes", action="store_true", help="a PrometheusRule object")
    ap.add_argument("--namespace", default="stripe-edge")
    ap.add_argument("--name", default="stripe-edge")
    args = ap.parse_args()
    sys.stdout.write(render(args.runbook_base, args.kubernetes, args.namespace, args.name))


if __name__ == "__main__":
    main()
