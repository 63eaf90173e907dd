//! Captures the process's JSON logs in memory (and echoes them to stderr when `TEST_LOG` is set),
//! so tests can check what was logged: request ids on every line, no secret ever.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

/// The in-memory log of this test process.
#[derive(Default)]
pub struct Capture {
    bytes: Mutex<Vec<u8>>,
}

/// One write handle onto the capture.
pub struct CaptureWriter(&'static Capture);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.bytes.lock() {
            bytes.extend_from_slice(buf);
        }
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for &'static Capture {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter(self)
    }
}

/// Installs the capturing JSON subscriber (once per process) and returns the capture.
pub fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::default());
        common::telemetry::init_with(common::config::LogFormat::Json, capture);
        capture
    })
}

impl Capture {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        self.bytes
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The parsed lines whose `field` equals `value`.
    pub fn lines_where(&self, field: &str, value: &str) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v[field].as_str() == Some(value))
            .collect()
    }
}
