#!/usr/bin/env bash
# Checks the deploy kit (deploy/) statically, as no container engine runs here (run by .ci/run):
#   1. the generated Kubernetes objects (PrometheusRule, dashboards ConfigMap) are up to date with
#      dashboards/ (scripts/render-deploy.py --check), and the PrometheusRule's rules pass promtool;
#   2. deploy/compose.yaml against the Compose specification's schema (check-jsonschema, PyPI);
#   3. deploy/k8s against Kubernetes' and prometheus-operator's schemas (tests/deploy-schema:
#      kubernetes-models, npm);
#   4. deploy/haproxy.cfg with `haproxy -c`, deploy/prometheus.yml with `promtool check config`
#      (its rule file pointed at dashboards/alerts.yml), the Grafana provisioning files parse;
#   5. every path the Dockerfile copies exists, and its ignore file lets them in.
# Installs what is missing: Debian's haproxy and prometheus, check-jsonschema in a venv under
# target/, the npm packages of tests/deploy-schema.
. "$(dirname "$0")/../lib.sh"
root=$(pwd)

need_commands haproxy:haproxy promtool:prometheus node:nodejs npm:npm

echo "==> generated objects are up to date"
python3 scripts/render-deploy.py --check
tmp=$(mktemp -d -t edge-deploy-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
python3 - deploy/k8s/prometheus-rule.yaml "$tmp/rules.yml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
yaml.safe_dump(docs[0]["spec"], open(sys.argv[2], "w"))
PY
promtool check rules --lint=all --lint-fatal "$tmp/rules.yml" >/dev/null

echo "==> compose.yaml against the Compose specification"
venv=target/deploy-venv
[ -x "$venv/bin/check-jsonschema" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q check-jsonschema==0.33.0; }
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml

echo "==> deploy/k8s against Kubernetes' schemas"
(cd tests/deploy-schema && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
node tests/deploy-schema/check.mjs "$root/deploy/k8s"

echo "==> haproxy.cfg, prometheus.yml, Grafana provisioning"
haproxy -c -q -f deploy/haproxy.cfg
sed "s|/etc/prometheus/alerts.yml|$root/dashboards/alerts.yml|" deploy/prometheus.yml >"$tmp/prometheus.yml"
promtool check config "$tmp/prometheus.yml" >/dev/null
python3 - deploy/grafana/provisioning <<'PY'
import sys, yaml
from pathlib import Path
for f in sorted(Path(sys.argv[1]).rglob("*.yaml")):
    doc = yaml.safe_load(f.read_text())
    assert doc.get("apiVersion") == 1, f"{f}: apiVersion 1 expected"
PY

echo "==> the Dockerfile's sources"
for src in $(awk '$1 == "COPY" && $2 !~ /^--/ {for (i = 2; i < NF; i++) print $i}' deploy/Dockerfile); do
  [ -e "$src" ] || { echo "deploy/Dockerfile copies $src, which does not exist" >&2; exit 1; }
  grep -qx "!$src\(/\*\*\)\?" deploy/Dockerfile.dockerignore \
    || { echo "deploy/Dockerfile.dockerignore keeps $src out of the build context" >&2; exit 1; }
done
echo "deploy checks: ok"
