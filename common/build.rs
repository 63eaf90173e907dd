//! Records what this build is, for `--version`, the `*_build_info` metrics, the start-up log line
//! and `/ready`: the git revision it was built from (and whether the tree had changes), and the
//! build date (`SOURCE_DATE_EPOCH` when set, for reproducible builds). A build outside git says so.
//! It also rebuilds the crate when `migrations/` changes, since the migrations are embedded.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    // Watch only what exists: cargo re-runs a build script on every build while a watched path is
    // missing (a source tarball, a container's build context), and so rebuilds everything after.
    println!("cargo:rerun-if-changed=build.rs");
    // `embed_migrations!` reads this directory at compile time: a migration added or changed must
    // rebuild the crate.
    println!("cargo:rerun-if-changed=../migrations");
    for path in [
        "../.git/HEAD",
        "../.git/index",
        "../.git/refs",
        "../.git/packed-refs",
    ] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=BUILD_REVISION");
    let revision = std::env::var("BUILD_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown (built outside git)".to_owned());
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=BUILD_REVISION={revision}");
    println!("cargo:rustc-env=BUILD_DATE={}", date(seconds));
}

/// `git describe`'s short revision, with `-dirty` when the tree has changes.
fn git_revision() -> Option<String> {
    let out = Command::new("git")
        .args([
            "describe",
            "--always",
            "--dirty",
            "--abbrev=12",
            "--exclude=*",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A unix time as `YYYY-MM-DD` (UTC), without a date library (the civil-from-days algorithm).
fn date(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
