//! HTML for the support pages, built as text with every value escaped: [`esc`] is the only way a
//! value reaches a page (markup characters as entities, control characters, terminal escapes
//! included, as visible `\u{…}`), the page frame with its header and navigation, and the one
//! stylesheet the binary serves.

use std::fmt::Write;

use chrono::{DateTime, Utc};

/// A value made safe for HTML text and attribute values.
pub fn esc(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '`' => out.push_str("&#96;"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202e}') => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A value made safe for a URL's query (`/support/search?q=…`), then for an attribute.
pub fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// A link to the timeline of `id`.
pub fn timeline_link(id: &str) -> String {
    format!(
        "<a href=\"/support/search?q={}\">{}</a>",
        query_value(id),
        esc(id)
    )
}

/// A whole page: title, the signed-in navigation (with the logout form) when `csrf` is given, and
/// `body` (already escaped HTML).
pub fn page(title: &str, csrf: Option<&str>, body: &str) -> String {
    let nav = match csrf {
        Some(csrf) => format!(
            "<nav aria-label=\"Support\"><a href=\"/support\">Overview</a>\
             <form class=\"search\" method=\"get\" action=\"/support/search\" role=\"search\">\
             <label for=\"q\">Find an event, session, payment, refund, dispute, order or request id</label>\
             <input id=\"q\" name=\"q\" type=\"search\" required maxlength=\"255\" \
             placeholder=\"evt_…, cs_…, pi_…, re_…, du_…, order id, requestId\">\
             <button type=\"submit\">Search</button></form>\
             <form method=\"post\" action=\"/support/logout\">{}<button type=\"submit\">Log out</button></form></nav>",
            csrf_field(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · stripe-edge support</title>\
         <link rel=\"stylesheet\" href=\"/support/style.css\"></head>\
         <body><header><p class=\"brand\">stripe-edge support</p>{nav}</header>\
         <main id=\"main\"><h1>{}</h1>{body}</main></body></html>\n",
        esc(title),
        esc(title)
    )
}

/// The hidden CSRF field of a form.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// A table: a caption, the header cells, and rows of cells (already escaped HTML each).
pub fn table(caption: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table><caption>{}</caption><thead><tr>", esc(caption));
    for h in head {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\">none</td></tr>",
            head.len().max(1)
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A time, as every CLI output shows it (RFC 3339, UTC), escaped.
pub fn time(t: &DateTime<Utc>) -> String {
    esc(&crate::inspect::render::time(t))
}

/// An optional time, or a dash.
pub fn opt_time(t: Option<&DateTime<Utc>>) -> String {
    t.map_or_else(|| "–".to_owned(), time)
}

/// An optional value, escaped, or a dash.
pub fn opt(value: Option<&str>) -> String {
    value.map_or_else(|| "–".to_owned(), esc)
}

/// The stylesheet (`/support/style.css`): readable, high contrast, reflows at 400 % zoom.
pub const STYLE: &str = "\
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#111;background:#fff}
header{background:#1d2b4f;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header a{color:#fff}
.brand{font-weight:bold;margin:0}
nav{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;flex:1}
nav form{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}
nav .search{flex:1;min-width:12rem}
nav label{position:absolute;left:-9999px}
input,button{font:inherit;padding:.3rem .5rem}
input[type=search],input[type=password]{min-width:0;flex:1;max-width:100%}
button{cursor:pointer;border:2px solid #1d2b4f;background:#fff;color:#1d2b4f;border-radius:4px}
button:focus,input:focus,a:focus{outline:3px solid #f5a623;outline-offset:2px}
main{padding:1rem;max-width:100%;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:1rem 0;width:100%;display:block;overflow-x:auto}
caption{text-align:left;font-weight:bold;padding:.25rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eef}
.verdict{border-left:6px solid #1d2b4f;padding:.5rem 1rem;background:#f4f6fb}
.warn{border-left-color:#b00020;background:#fdecee}
.ok{border-left-color:#1b7f3b;background:#eaf6ee}
form.action{display:inline-flex;gap:.5rem;margin:.25rem 0}
label.field{display:block;margin:.5rem 0}
";
