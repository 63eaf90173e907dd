#!/usr/bin/env python3
"""Checks the Grafana dashboards in dashboards/ (run by scripts/check.sh observability).

Offline, always:
  - strict JSON (a duplicated key is an error), a uid, schemaVersion, unique panel ids, a gridPos on
    every panel, panels that do not overlap;
  - every panel queries the datasource through the `datasource` template variable, never a fixed uid;
  - every non-row panel has a unit, a title and a description;
  - every `$variable` used is defined, and `$instance` filters every query (the "up" ones and the
    annotation queries included);
  - every metric a query names is one the binaries export (--metrics: files of /metrics text);
  - every query parses (promtool check rules on a generated rules file).
Live, with --prometheus URL (a Prometheus scraping the running services):
  - every panel query and template variable returns data (retried until --wait seconds pass);
  - with --check-rules, every loaded rule evaluates cleanly and uses metrics that exist.
Exit status 1 on any failure; the last line is "dashboards: N checks passed, M failed".
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

FAILURES = []
PASSED = [0]

# Grafana's built-in variables and what the live check substitutes for them.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}


def fail(where, message):
    FAILURES.append(f"{where}: {message}")
    print(f"FAIL {where}: {message}")


def ok():
    PASSED[0] += 1


def load_strict(path):
    def no_duplicates(pairs):
        seen = {}
        for k, v in pairs:
            if k in seen:
                raise ValueError(f"duplicate key {k!r}")
            seen[k] = v
        return seen
    return json.loads(Path(path).read_text(), object_pairs_hook=no_duplicates)


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        for inner in p.get("panels", []) or []:
            yield inner


def variables_in(expr):
    return set(re.findall(r"\$\{?(\w+)", expr))


METRIC = re.compile(r"\b((?:edge|reconciler|process)_[a-z0-9_]+)\b")


def metric_names(expr):
    names = set()
    for m in METRIC.findall(expr):
        names.add(re.sub(r"_(bucket|count|sum)$", "", m))
    return names


def exported(metrics_files):
    names = set()
    for f in metrics_files:
        for line in Path(f).read_text().splitlines():
            if line.startswith("# TYPE "):
                names.add(line.split()[2])
    return names


def check_offline(path, dash, known_metrics, queries):
    where = path.name
    for key in ("uid", "title", "schemaVersion"):
        if key not in dash:
            fail(where, f"no {key}")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    if "datasource" not in variables:
        fail(where, "no `datasource` template variable")
    ids = set()
    boxes = []
    for p in panels_of(dash):
        pw = f"{where} panel {p.get('id')} {p.get('title', '')!r}"
        if p.get("id") in ids:
            fail(pw, "duplicate panel id")
        ids.add(p.get("id"))
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")):
            fail(pw, "gridPos needs integer h, w, x, y")
            continue
        for other_id, o in boxes:
            if (g["x"] < o["x"] + o["w"] and o["x"] < g["x"] + g["w"]
                    and g["y"] < o["y"] + o["h"] and o["y"] < g["y"] + g["h"]):
                fail(pw, f"overlaps panel {other_id}")
        boxes.append((p.get("id"), g))
        if p.get("type") == "row":
            continue
        if not p.get("title") or not p.get("description"):
            fail(pw, "needs a title and a description")
        if not (p.get("fieldConfig", {}).get("defaults", {}).get("unit")):
            fail(pw, "no unit")
        ds = p.get("datasource") or {}
        if ds.get("uid") != "${datasource}":
            fail(pw, "must use the ${datasource} variable")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            tw = f"{pw} target {t.get('refId')}"
            if (t.get("datasource") or {}).get("uid") != "${datasource}":
                fail(tw, "must use the ${datasource} variable")
            for v in variables_in(expr):
                if v not in variables and v not in BUILTINS:
                    fail(tw, f"undefined variable ${v}")
            if "instance" in variables and 'instance=~"$instance"' not in expr:
                fail(tw, "does not filter on $instance")
            for m in metric_names(expr):
                if known_metrics and m not in known_metrics:
                    fail(tw, f"metric {m} is not exported")
            queries.append((tw, expr))
            ok()
    for a in dash.get("annotations", {}).get("list", []):
        aw = f"{where} annotation {a.get('name')!r}"
        if (a.get("datasource") or {}).get("uid") != "${datasource}":
            fail(aw, "must use the ${datasource} variable")
        expr = a.get("expr", "")
        if not expr:
            continue
        if "instance" in variables and 'instance=~"$instance"' not in expr:
            fail(aw, "does not filter on $instance")
        for m in metric_names(expr):
            if known_metrics and m not in known_metrics:
                fail(aw, f"metric {m} is not exported")
        queries.append((aw, expr))
        ok()
    for name, v in variables.items():
        if v.get("type") == "query":
            queries.append((f"{where} variable {name}", v.get("query", {}).get("query", "")
                            if isinstance(v.get("query"), dict) else v.get("query", "")))


def promtool_syntax(queries):
    """Parses every query with promtool, through a generated rules file."""
    exprs = [(w, e) for w, e in queries if e and not e.startswith("label_values(")]
    rules = {"groups": [{"name": "syntax", "rules": [
        {"record": f"syntax:check:{i}", "expr": substitute(e, {"instance": ".*"})}
        for i, (_, e) in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(rules, f)
    r = subprocess.run(["promtool", "check", "rules", "--lint=none", f.name],
                       capture_output=True, text=True)
    Path(f.name).unlink()
    if r.returncode != 0:
        fail("promtool", (r.stdout + r.stderr).strip().replace("\n", " | ")[:800])
    else:
        ok()


def substitute(expr, values):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        return values.get(name, m.group(0))
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def prom_get(base, path, params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=15) as r:
        return json.load(r)


def returns_data(base, expr):
    now = time.time()
    if expr.startswith("label_values("):
        metric = expr[len("label_values("):].split(",")[0].strip()
        data = prom_get(base, "/api/v1/series", {"match[]": metric, "start": now - 300, "end": now})
        return bool(data.get("data"))
    data = prom_get(base, "/api/v1/query_range",
                    {"query": expr, "start": now - 300, "end": now, "step": "15"})
    return data.get("status") == "success" and bool(data["data"]["result"])


def check_live(base, queries, wait):
    deadline = time.time() + wait
    pending = [(w, substitute(e, {"instance": ".*"})) for w, e in queries if e]
    while pending:
        left = []
        for where, expr in pending:
            try:
                if returns_data(base, expr):
                    ok()
                    continue
            except Exception as e:  # noqa: BLE001 - any error is retried until the deadline
                expr = expr  # keep it for the report
                left.append((where, expr, str(e)))
                continue
            left.append((where, expr, "no data"))
        if not left or time.time() > deadline:
            for where, expr, why in left:
                fail(where, f"{why}: {expr}")
            return
        pending = [(w, e) for w, e, _ in left]
        time.sleep(2)


def check_rules(base, known_metrics, wait):
    deadline = time.time() + wait
    while True:
        groups = prom_get(base, "/api/v1/rules", {})["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        bad = [r for r in rules if r.get("health") != "ok"]
        if rules and not bad:
            break
        if time.time() > deadline:
            for r in bad or [{"name": "(none loaded)", "lastError": "no rules"}]:
                fail(f"rule {r.get('name')}", r.get("lastError") or r.get("health"))
            return
        time.sleep(2)
    for r in rules:
        for m in metric_names(r["query"]):
            if known_metrics and m not in known_metrics:
                fail(f"rule {r['name']}", f"metric {m} is not exported")
        ok()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", default="dashboards")
    ap.add_argument("--metrics", nargs="*", default=[], help="files of /metrics text")
    ap.add_argument("--prometheus", help="a live Prometheus base URL")
    ap.add_argument("--wait", type=float, default=60)
    ap.add_argument("--check-rules", action="store_true")
    args = ap.parse_args()
    known = exported(args.metrics)
    queries = []
    for path in sorted(Path(args.dir).glob("*.json")):
        try:
            dash = load_strict(path)
        except ValueError as e:
            fail(path.name, f"not strict JSON: {e}")
            continue
        check_offline(path, dash, known, queries)
    promtool_syntax(queries)
    if args.prometheus:
        check_live(args.prometheus.rstrip("/"), queries, args.wait)
        if args.check_rules:
            check_rules(args.prometheus.rstrip("/"), known, args.wait)
    print(f"dashboards: {PASSED[0]} checks passed, {len(FAILURES)} failed")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
