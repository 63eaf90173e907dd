//! What the simulator keeps: the objects of one kind (events, Checkout Sessions…) by id and by
//! creation time, and Stripe's list endpoint over them: newest first, `created[gt|gte|lt|lte]`
//! (or an exact `created`), `limit` 1–100 (default 10), `starting_after` / `ending_before`, and a
//! list object `{object, url, has_more, data}`.

use std::collections::HashMap;

use http::{Response, StatusCode};

use crate::wire::{SimBody, error, missing};

/// A request refused, with Stripe's error answer.
pub(crate) type Refused = Box<Response<SimBody>>;

/// One stored object: what lists filter on, and its exact JSON text.
pub(crate) struct Stored {
    /// The event type, or the object type.
    pub kind: String,
    pub created: i64,
    pub json: String,
}

/// The objects of one kind.
#[derive(Default)]
pub(crate) struct Collection {
    /// In creation order.
    items: Vec<Stored>,
    index: HashMap<String, usize>,
    /// Indexes into `items`, sorted by (`created`, creation order): a list walks it backwards.
    by_time: Vec<usize>,
}

impl Collection {
    /// Stores an object, or replaces the one with the same id (its place in lists stays).
    pub(crate) fn put(&mut self, id: &str, kind: &str, created: i64, json: String) {
        if let Some(&at) = self.index.get(id) {
            self.items[at].json = json;
            return;
        }
        let at = self.items.len();
        self.items.push(Stored {
            kind: kind.to_owned(),
            created,
            json,
        });
        self.index.insert(id.to_owned(), at);
        let items = &self.items;
        let pos = self
            .by_time
            .partition_point(|&i| (items[i].created, i) < (created, at));
        self.by_time.insert(pos, at);
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Stored> {
        self.index.get(id).map(|&i| &self.items[i])
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The JSON of the `n` newest objects, all but `except`.
    pub(crate) fn newest(&self, n: usize, except: Option<&str>) -> Vec<&str> {
        let skip = except.and_then(|id| self.index.get(id));
        self.by_time
            .iter()
            .rev()
            .filter(|&i| Some(i) != skip)
            .take(n)
            .map(|&i| self.items[i].json.as_str())
            .collect()
    }

    /// Where an object sits in `by_time`.
    fn position(&self, id: &str) -> Option<usize> {
        let &at = self.index.get(id)?;
        let created = self.items[at].created;
        Some(
            self.by_time
                .partition_point(|&i| (self.items[i].created, i) < (created, at)),
        )
    }

    /// One page of a list, of the objects that `query` and `wanted` select.
    pub(crate) fn list(
        &self,
        query: &ListQuery,
        kind: &str,
        wanted: impl Fn(&Stored) -> bool,
    ) -> Result<Page<'_>, Refused> {
        let matches = |e: &Stored| query.created_ok(e.created) && wanted(e);
        let limit = query.limit;
        let (mut picked, more) = match (&query.ending_before, &query.starting_after) {
            (Some(before), _) => {
                // The `limit` matches just newer than the cursor, returned newest first.
                let pos = self
                    .position(before)
                    .ok_or_else(|| Box::new(missing(kind, before)))?;
                let mut newer: Vec<usize> = self.by_time[pos + 1..]
                    .iter()
                    .copied()
                    .filter(|&i| matches(&self.items[i]))
                    .take(limit + 1)
                    .collect();
                let more = newer.len() > limit;
                newer.truncate(limit);
                newer.reverse();
                (newer, more)
            }
            (None, after) => {
                let end = match after {
                    Some(after) => self
                        .position(after)
                        .ok_or_else(|| Box::new(missing(kind, after)))?,
                    None => self.by_time.len(),
                };
                let mut out = Vec::with_capacity(limit + 1);
                for &i in self.by_time[..end].iter().rev() {
                    let e = &self.items[i];
                    if query.before_window(e.created) {
                        break; // everything further back is older still
                    }
                    if matches(e) {
                        out.push(i);
                        if out.len() > limit {
                            break;
                        }
                    }
                }
                let more = out.len() > limit;
                out.truncate(limit);
                (out, more)
            }
        };
        let data = picked
            .drain(..)
            .map(|i| self.items[i].json.as_str())
            .collect();
        Ok(Page {
            data,
            has_more: more,
        })
    }
}

/// The common parameters of a list request.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListQuery {
    pub limit: usize,
    gt: Option<i64>,
    gte: Option<i64>,
    lt: Option<i64>,
    lte: Option<i64>,
    exact: Option<i64>,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
}

impl ListQuery {
    /// Reads `limit`, the `created` filters and the cursors, as Stripe validates them.
    pub(crate) fn parse(params: &[(String, String)]) -> Result<Self, Refused> {
        let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let limit = match get("limit").map(|v| v.parse::<usize>()) {
            None => 10,
            Some(Ok(n)) if (1..=100).contains(&n) => n,
            Some(_) => {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("parameter_invalid_integer"),
                    "limit must be between 1 and 100.",
                )));
            }
        };
        let bound = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
        Ok(Self {
            limit,
            gt: bound("created[gt]"),
            gte: bound("created[gte]"),
            lt: bound("created[lt]"),
            lte: bound("created[lte]"),
            exact: bound("created"),
            starting_after: get("starting_after").cloned(),
            ending_before: get("ending_before").cloned(),
        })
    }

    fn created_ok(&self, created: i64) -> bool {
        self.exact.is_none_or(|v| created == v)
            && self.gt.is_none_or(|v| created > v)
            && self.gte.is_none_or(|v| created >= v)
            && self.lt.is_none_or(|v| created < v)
            && self.lte.is_none_or(|v| created <= v)
    }

    /// Older than the window's start: a newest-first walk can stop here.
    fn before_window(&self, created: i64) -> bool {
        self.gte.is_some_and(|v| created < v) || self.gt.is_some_and(|v| created <= v)
    }
}

/// One page of a list.
pub(crate) struct Page<'a> {
    pub data: Vec<&'a str>,
    pub has_more: bool,
}

impl Page<'_> {
    /// The list object, as Stripe writes it.
    pub(crate) fn body(&self, url: &str) -> String {
        list_body(url, self.has_more, &self.data)
    }
}

/// A list object holding the JSON texts of `data`.
pub(crate) fn list_body(url: &str, has_more: bool, data: &[&str]) -> String {
    format!(
        "{{\"object\":\"list\",\"url\":\"{url}\",\"has_more\":{has_more},\"data\":[{}]}}",
        data.join(",")
    )
}
