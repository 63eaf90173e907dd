//! The documentation holds together: every relative link and anchor in the Markdown resolves, every
//! alert's runbook URL lands on a section of `docs/`, every table that `scripts/bench.sh` rewrites
//! is marked in `docs/performance.md`, and nothing in the repository points outside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Every file of the repository (not its dependencies, build output or local stack).
fn repository_files() -> Vec<PathBuf> {
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
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The Markdown files of the repository.
fn markdown_files() -> Vec<PathBuf> {
    repository_files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect()
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
fn every_benchmark_section_is_marked_once_in_the_performance_page() {
    let script =
        std::fs::read_to_string(format!("{ROOT}/scripts/bench/render.py")).expect("script");
    let list = script
        .lines()
        .find_map(|l| l.strip_prefix("SECTIONS = ["))
        .expect("SECTIONS in render-bench.py");
    let sections: Vec<&str> = list
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .collect();
    assert!(sections.len() >= 6, "{sections:?}");
    let page = std::fs::read_to_string(format!("{ROOT}/docs/performance.md")).expect("page");
    for name in sections {
        let (start, end) = (
            format!("<!-- bench:{name} -->"),
            format!("<!-- /bench:{name} -->"),
        );
        assert_eq!(page.matches(&start).count(), 1, "{start}");
        assert_eq!(page.matches(&end).count(), 1, "{end}");
        assert!(
            page.find(&start) < page.find(&end),
            "{name}: end before start"
        );
    }
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

/// Where `text` (the content of `file`) points outside the repository: a relative path whose
/// `../` steps climb above the repository's root from the file's folder, or an absolute path into
/// the folder that holds the repository.
fn points_outside(file: &Path, text: &str, root: &Path) -> Option<String> {
    let holder = root.parent()?;
    let holder_prefix = format!("{}/", holder.display());
    let own_prefix = format!("{}/", root.display());
    for (at, _) in text.match_indices(holder_prefix.as_str()) {
        if !text[at..].starts_with(&own_prefix) {
            return Some(text[at..].chars().take(60).collect());
        }
    }
    let depth = file.parent()?.strip_prefix(root).ok()?.components().count();
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices("../") {
        if at > 0 && matches!(bytes[at - 1], b'.' | b'/') {
            continue; // the middle of a run (counted from its start), or after another path
        }
        let ups = bytes[at..].chunks(3).take_while(|c| *c == b"../").count();
        if ups > depth {
            return Some(text[at..].chars().take(60).collect());
        }
    }
    None
}

#[test]
fn nothing_points_outside_the_repository() {
    let root = Path::new(ROOT)
        .canonicalize()
        .expect("the repository's root");
    let mut offenders = Vec::new();
    for path in repository_files() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // binary
        };
        let path = path.canonicalize().expect("a file of the repository");
        if let Some(what) = points_outside(&path, &text, &root) {
            offenders.push(format!("{}: {what}", path.display()));
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn a_path_climbing_out_of_the_repository_is_found() {
    let root = Path::new("/srv/repo");
    let file = Path::new("/srv/repo/scripts/x.sh");
    assert!(points_outside(file, "cd ../docs", root).is_none());
    assert!(points_outside(file, "cat ../../elsewhere/x", root).is_some());
    assert!(points_outside(file, "cat /srv/repo/docs/x.md", root).is_none());
    assert!(points_outside(file, "cat /srv/other/x", root).is_some());
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
