//! What this build is: version, git revision and build date, set by `build.rs`. One string for
//! `--version`, the same values in the `*_build_info` metrics, the start-up log line and `/ready`.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision built (`-dirty` with uncommitted changes), or that it was built outside git.
pub const REVISION: &str = env!("BUILD_REVISION");
/// The build date, UTC.
pub const DATE: &str = env!("BUILD_DATE");
/// What `--version` prints after the binary's name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("BUILD_REVISION"),
    ", built ",
    env!("BUILD_DATE"),
    ")"
);

/// The labels of a `*_build_info` gauge: its one series says which build runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo;

impl crate::metrics::LabelSet for BuildInfo {
    const SLOTS: usize = 1;
    fn slot(self) -> usize {
        0
    }
    fn values() -> Vec<Self> {
        vec![Self]
    }
    fn pairs(self) -> Vec<(&'static str, String)> {
        vec![
            ("version", VERSION.to_owned()),
            ("revision", REVISION.to_owned()),
        ]
    }
}
