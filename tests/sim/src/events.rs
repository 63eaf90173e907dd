//! `GET /v1/events` and `GET /v1/events/{id}`: the list filtered by `type` (with `*` wildcards) or
//! `types[]` (never both, at most 20), and the ways a hostile Stripe answers it: a cursor that
//! never advances or goes backwards, a huge page, a body dripped a byte a second.

use http::{Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

use crate::server::ListMode;
use crate::store::{Collection, ListQuery, Stored, list_body};
use crate::wire::{Drip, NowOrNever, Padded, SimBody, error, full, missing, reply, reply_with};

const URL: &str = "/v1/events";

/// `GET /v1/events/{id}`.
pub(crate) fn retrieve(events: &Collection, id: &str) -> Response<SimBody> {
    match events.get(id) {
        Some(e) => reply(StatusCode::OK, e.json.clone()),
        None => missing("event", id),
    }
}

/// `GET /v1/events`, as `mode` says Stripe answers it.
pub(crate) fn list_as(
    events: &Collection,
    params: &[(String, String)],
    mode: &ListMode,
    wrong_shape: bool,
) -> Response<SimBody> {
    let from_the_top = || -> Vec<(String, String)> {
        params
            .iter()
            .filter(|(k, _)| k != "starting_after")
            .cloned()
            .collect()
    };
    match mode {
        ListMode::Normal => list(events, params, wrong_shape),
        ListMode::EndlessCursor => with_more(list(events, &from_the_top(), false)),
        ListMode::BackwardsCursor => match params.iter().find(|(k, _)| k == "starting_after") {
            None => list(events, &from_the_top(), false),
            // The newest events again, minus the cursor: newer than the page before.
            Some((_, cursor)) => reply(
                StatusCode::OK,
                list_body(URL, true, &events.newest(100, Some(cursor))),
            ),
        },
        ListMode::HugePage(bytes) => reply_with(StatusCode::OK, Padded::new(*bytes).boxed()),
        ListMode::Drip => {
            let body = match list(events, params, false)
                .into_body()
                .collect()
                .now_or_never()
            {
                Some(Ok(collected)) => collected.to_bytes(),
                _ => bytes::Bytes::new(),
            };
            reply_with(StatusCode::OK, Drip::new(body).boxed())
        }
    }
}

/// The same answer, saying there are more pages.
fn with_more(resp: Response<SimBody>) -> Response<SimBody> {
    let (parts, body) = resp.into_parts();
    let text = match body.collect().now_or_never() {
        Some(Ok(collected)) => collected.to_bytes(),
        _ => bytes::Bytes::new(),
    };
    let text = String::from_utf8_lossy(&text).replace("\"has_more\":false", "\"has_more\":true");
    Response::from_parts(parts, full(text))
}

/// `GET /v1/events` as Stripe answers it.
fn list(events: &Collection, params: &[(String, String)], wrong_shape: bool) -> Response<SimBody> {
    let types: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "types[]")
        .map(|(_, v)| v.as_str())
        .collect();
    let single = params
        .iter()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v.as_str());
    if single.is_some() && !types.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid"),
            "You may only specify one of these parameters: type, types.",
        );
    }
    if types.len() > 20 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid"),
            "Too many types.",
        );
    }
    let query = match ListQuery::parse(params) {
        Ok(q) => q,
        Err(refused) => return *refused,
    };
    let wanted = |e: &Stored| match single {
        Some(t) if t.ends_with('*') => e.kind.starts_with(t.trim_end_matches('*')),
        Some(t) => e.kind == t,
        None => types.is_empty() || types.contains(&e.kind.as_str()),
    };
    let page = match events.list(&query, "event", wanted) {
        Ok(page) => page,
        Err(refused) => return *refused,
    };
    if wrong_shape {
        let body = json!({ "object": "list", "url": URL, "has_more": false, "data": { "unexpected": true } });
        return reply(StatusCode::OK, body.to_string());
    }
    reply(StatusCode::OK, page.body(URL))
}
