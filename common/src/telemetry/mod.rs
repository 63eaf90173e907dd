//! Logging: JSON lines (default) or pretty text through `tracing`, with every field of the enclosing
//! spans (notably `requestId`) copied onto each line; the request id itself is [`request_id`]'s.

mod request_id;

pub use request_id::RequestId;

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::config::LogFormat;

/// Used when `RUST_LOG` is unset: our own info, and only warnings from chatty dependencies.
pub const DEFAULT_FILTER: &str = "info,tokio_postgres=warn,refinery=warn,refinery_core=warn,hyper=warn,hyper_util=warn,tokio_cron_scheduler=warn";

/// Installs the global subscriber writing to stdout. A second call is a no-op (tests).
pub fn init(format: LogFormat) {
    init_with(format, std::io::stdout);
}

/// Installs the global subscriber with any writer (tests capture the logs this way).
pub fn init_with<W>(format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = Registry::default().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(SpanFieldsLayer)
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(NoSpanFields)
                    .event_format(JsonLines)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_writer(writer),
            )
            .try_init(),
    };
}

/// The fmt layer's own rendering of span fields, which `JsonLines` never reads (it copies
/// [`SpanFields`]): nothing, so that a span (one per request) is not rendered twice.
struct NoSpanFields;

impl<'writer> FormatFields<'writer> for NoSpanFields {
    fn format_fields<R: RecordFields>(&self, _writer: Writer<'writer>, _fields: R) -> fmt::Result {
        Ok(())
    }
}

/// The fields of a span, rendered once as a JSON fragment (`,"k":v,...`) in its extensions.
struct SpanFields(String);

/// Renders span fields when a span is created or recorded, so that `JsonLines` only copies them.
struct SpanFieldsLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanFieldsLayer {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = String::new();
        attrs.record(&mut JsonFields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
                values.record(&mut JsonFields(fields));
            }
        }
    }
}

/// Appends `,"name":value` for each field it visits.
struct JsonFields<'a>(&'a mut String);

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(',');
        push_json_str(self.0, field.name());
        self.0.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.0.push('"');
        let _ = fmt::write(&mut Escaped(self.0), format_args!("{value:?}"));
        self.0.push('"');
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_str(self.0, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = fmt::write(self.0, format_args!("{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = fmt::write(self.0, format_args!("{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = fmt::write(self.0, format_args!("{value}"));
        } else {
            self.0.push_str("null");
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.0.push_str(if value { "true" } else { "false" });
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// Writes text as the inside of a JSON string: quotes, backslashes and every control character
/// are escaped, so no logged value can break a line or forge another entry.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Runs of characters that need no escape are copied whole.
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let escape = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                c if c.is_control() => "",
                _ => continue,
            };
            self.0.push_str(&s[plain..i]);
            if escape.is_empty() {
                let _ = fmt::write(self.0, format_args!("\\u{:04x}", c as u32));
            } else {
                self.0.push_str(escape);
            }
            plain = i + c.len_utf8();
        }
        self.0.push_str(&s[plain..]);
        Ok(())
    }
}

/// Writes `now` as RFC 3339 in UTC with microseconds (`2026-12-01T14:35:01.123456Z`).
fn push_timestamp(out: &mut String, now: DateTime<Utc>) {
    let (date, time) = (now.date_naive(), now.time());
    let _ = fmt::write(
        out,
        format_args!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            date.year(),
            date.month(),
            date.day(),
            time.hour(),
            time.minute(),
            time.second(),
            // A leap second's nanoseconds run past 1e9; its microseconds stay in six digits.
            now.timestamp_subsec_micros().min(999_999)
        ),
    );
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let _ = fmt::Write::write_str(&mut Escaped(out), s);
    out.push('"');
}

/// One JSON object per line: timestamp, level, target, the spans' fields, then the event's fields.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":\"");
        push_timestamp(&mut line, Utc::now());
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push_str("\",\"target\":");
        push_json_str(&mut line, meta.target());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    line.push_str(fields);
                }
            }
        }
        event.record(&mut JsonFields(&mut line));
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_every_value_on_one_line() {
        let mut out = String::new();
        push_json_str(&mut out, "a\"b\\c\nd\re\u{1b}[31m\u{0}");
        assert_eq!(out, r#""a\"b\\c\nd\re\u001b[31m\u0000""#);
        let parsed: String = serde_json::from_str(&out).expect("valid JSON string");
        assert_eq!(parsed, "a\"b\\c\nd\re\u{1b}[31m\u{0}");
    }

    #[test]
    fn escaping_keeps_multibyte_text_and_escapes_c1_controls() {
        let mut out = String::new();
        push_json_str(&mut out, "é\u{85}ü€\u{9f}x");
        assert_eq!(out, r#""é\u0085ü€\u009fx""#);
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let mut out = String::new();
        let at = DateTime::from_timestamp(1_764_599_701, 123_456_789).expect("time");
        push_timestamp(&mut out, at);
        assert_eq!(out, "2025-12-01T14:35:01.123456Z");
        assert_eq!(out, at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
    }
}
