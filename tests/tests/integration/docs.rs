//! The documentation holds together: every relative link and anchor in the Markdown resolves, every
//! alert's runbook URL lands on a section of `docs/`, and nothing in the repository points outside
//! it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The Markdown files of the repository (not its dependencies or build output).
fn markdown_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(ROOT)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "node_modules" | ".git" | ".dev") {
                    stack.push(path);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file (duplicates get GitHub's `-1`, `-2` suffixes).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        let base = slug(heading);
        let mut candidate = base.clone();
        let mut n = 0;
        while out.contains(&candidate) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        out.insert(candidate);
    }
    out
}

/// The `(target)` of every `[text](target)` outside code blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop code spans, then find `](`.
        let mut plain = String::new();
        let mut in_span = false;
        for c in line.chars() {
            if c == '`' {
                in_span = !in_span;
            } else if !in_span {
                plain.push(c);
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

/// Checks one link from `from`; the problem, if any.
fn resolve(from: &Path, target: &str) -> Option<String> {
    if target.starts_with("http://")
        || target.starts_with("https://")
        || target.starts_with("mailto:")
    {
        return None;
    }
    let (file, anchor) = match target.split_once('#') {
        Some((f, a)) => (f, Some(a)),
        None => (target, None),
    };
    let path = if file.is_empty() {
        from.to_path_buf()
    } else {
        from.parent().unwrap_or(Path::new(ROOT)).join(file)
    };
    let Ok(canonical) = path.canonicalize() else {
        return Some(format!("{target}: no such file"));
    };
    let root = PathBuf::from(ROOT).canonicalize().ok()?;
    if !canonical.starts_with(&root) {
        return Some(format!("{target}: outside the repository"));
    }
    let anchor = anchor?;
    if canonical.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let text = std::fs::read_to_string(&canonical).ok()?;
    (!anchors(&text).contains(anchor)).then(|| format!("{target}: no such anchor"))
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut problems = Vec::new();
    let files = markdown_files();
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).expect("markdown");
        for target in links(&text) {
            if let Some(problem) = resolve(file, &target) {
                problems.push(format!("{}: {problem}", file.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_runbook_url_lands_on_a_section_of_the_docs() {
    let rules = std::fs::read_to_string(format!("{ROOT}/dashboards/alerts.yml")).expect("rules");
    let docs = PathBuf::from(ROOT).join("docs");
    let mut urls = 0;
    for line in rules.lines() {
        let Some(url) = line.trim().strip_prefix("runbook_url: ") else {
            continue;
        };
        urls += 1;
        let (_, page) = url.split_once("/docs/").expect("a docs page");
        let problem = resolve(&docs.join("index.md"), page);
        assert!(problem.is_none(), "{url}: {problem:?}");
    }
    assert!(urls >= 10, "every alert has a runbook_url");
}

#[test]
fn nothing_points_outside_the_repository() {
    let mut stack = vec![PathBuf::from(ROOT)];
    let mut offenders = Vec::new();
    let outside = ["../shared", "/work/shared"];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "node_modules" | ".git" | ".dev") {
                    stack.push(path);
                }
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue; // binary
            };
            if name == "docs.rs" {
                continue; // this file names what it looks for
            }
            if outside.iter().any(|o| text.contains(o)) {
                offenders.push(path.display().to_string());
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn slugs_are_github_s() {
    assert_eq!(
        slug(" \"The customer paid but the order still says pending\""),
        "the-customer-paid-but-the-order-still-says-pending"
    );
    assert_eq!(slug(" Health and metrics"), "health-and-metrics");
    assert_eq!(slug(" `edge migrate`: status"), "edge-migrate-status");
}
