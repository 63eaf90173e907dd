//! `GET /v1/checkout/sessions`, `/v1/refunds` and `/v1/disputes`: Stripe's list over the objects
//! themselves, by `created` (not limited to 30 days, unlike the events), newest first, with the
//! cursors of every list; sessions also filter on `status` and `payment_intent`.

use http::{Response, StatusCode};
use serde_json::Value;

use crate::store::{Collection, ListQuery, Stored};
use crate::wire::{SimBody, reply};

/// One page of the list at `url` over `objects` (of `kind`).
pub(crate) fn list(
    objects: &Collection,
    url: &str,
    kind: &str,
    params: &[(String, String)],
) -> Response<SimBody> {
    let query = match ListQuery::parse(params) {
        Ok(q) => q,
        Err(refused) => return *refused,
    };
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let status = get("status").filter(|_| kind == "checkout.session");
    let payment_intent = get("payment_intent").filter(|_| kind == "checkout.session");
    let wanted = |o: &Stored| {
        if status.is_none() && payment_intent.is_none() {
            return true;
        }
        let Ok(v) = serde_json::from_str::<Value>(&o.json) else {
            return false;
        };
        status.is_none_or(|s| v["status"].as_str() == Some(s.as_str()))
            && payment_intent.is_none_or(|pi| v["payment_intent"].as_str() == Some(pi.as_str()))
    };
    match objects.list(&query, kind, wanted) {
        Ok(page) => reply(StatusCode::OK, page.body(url)),
        Err(refused) => *refused,
    }
}
