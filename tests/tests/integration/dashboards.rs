//! Dashboards and alert rules use only metrics the code declares, every declared metric is shown
//! on a dashboard or watched by an alert, and the process metrics they use are exported.

use std::collections::BTreeSet;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards");

const PREFIXES: [&str; 3] = ["edge_", "reconciler_", "process_"];

/// Every `edge_…` / `reconciler_…` / `process_…` name in a text, without histogram suffixes.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let starts = PREFIXES.iter().any(|p| rest.starts_with(p))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            let name = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(name.to_owned());
            i += end;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

#[test]
fn dashboards_and_alerts_use_exactly_the_declared_metrics() {
    let mut used = BTreeSet::new();
    for file in ["edge.json", "reconciler.json", "alerts.yml"] {
        let text = std::fs::read_to_string(format!("{DIR}/{file}")).expect("dashboard file");
        used.extend(names_in(&text));
    }
    // Dashboard uids and rule group names are not metrics.
    used.retain(|n| !["edge_", "reconciler_"].contains(&n.as_str()));
    let declared: BTreeSet<String> = edge::metrics::EdgeMetrics::NAMES
        .iter()
        .chain(reconciler::metrics::ReconcilerMetrics::NAMES.iter())
        .chain(common::metrics::PROCESS_NAMES.iter())
        .map(|n| (*n).to_owned())
        .collect();
    let unknown: Vec<_> = used.difference(&declared).collect();
    assert!(unknown.is_empty(), "used but never exported: {unknown:?}");
    let unused: Vec<_> = declared.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "exported but on no dashboard and in no alert: {unused:?}"
    );
}

#[test]
fn the_process_metrics_the_dashboards_use_are_exported() {
    let text = common::metrics::render();
    for name in common::metrics::PROCESS_NAMES {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "{name} missing from:\n{text}"
        );
    }
}
