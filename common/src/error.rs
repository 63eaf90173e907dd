//! Error text that keeps its cause. `tokio_postgres::Error` prints only "db error" and hides the
//! server's message in its source; [`chain`] prints every cause, and [`postgres`] names what
//! support needs of a Postgres error: SQLSTATE, message, detail and hint.

use std::error::Error as StdError;
use std::fmt::Write as _;

/// The error and each of its causes, joined with `: ` (a cause whose text its parent already
/// shows is skipped).
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(pg) = cause.downcast_ref::<tokio_postgres::Error>() {
            append(&mut out, &postgres(pg));
            return out;
        }
        if let Some(db) = cause.downcast_ref::<tokio_postgres::error::DbError>() {
            append(&mut out, &server(db));
            return out;
        }
        append(&mut out, &cause.to_string());
        source = cause.source();
    }
    out
}

fn append(out: &mut String, text: &str) {
    if !text.is_empty() && !out.contains(text) {
        out.push_str(": ");
        out.push_str(text);
    }
}

/// A Postgres error as support reads it: the server's SQLSTATE, message, detail and hint when the
/// server answered, else the client-side cause (refused, timed out, closed…).
pub fn postgres(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return server(db);
    }
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        append(&mut out, &cause.to_string());
        source = cause.source();
    }
    out
}

/// The SQLSTATE of a Postgres error the server sent, if any.
pub fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.as_db_error().map(|db| db.code().code())
}

fn server(db: &tokio_postgres::error::DbError) -> String {
    let mut out = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        let _ = write!(out, "; detail: {detail}");
    }
    if let Some(hint) = db.hint() {
        let _ = write!(out, "; hint: {hint}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_are_joined() {
        let e = Outer(std::io::Error::other("inner cause"));
        assert_eq!(chain(&e), "outer: inner cause");
    }
}
