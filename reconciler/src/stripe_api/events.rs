//! Stripe's events endpoints: `GET /v1/events` through the one pager (which refuses a cursor that
//! does not move and a page newer than the one before it, so that a pass always ends) and
//! `GET /v1/events/{id}`.

use common::stripe::is_stripe_id;
use serde_json::value::RawValue;

use super::{StripeClient, StripeError};
use crate::metrics::Endpoint;

/// The filters of one `GET /v1/events` request.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Exact types (`types[]`), or one `type` (which may end with `*`).
    pub types: Vec<String>,
    pub type_pattern: Option<String>,
    pub created_gte: Option<i64>,
    pub created_lte: Option<i64>,
    pub starting_after: Option<String>,
    pub limit: u8,
}

impl EventQuery {
    fn path(&self) -> Result<String, StripeError> {
        let mut q = vec![format!("limit={}", self.limit.clamp(1, 100))];
        if let Some(t) = &self.type_pattern {
            q.push(format!("type={t}"));
        }
        for t in &self.types {
            q.push(format!("types%5B%5D={t}"));
        }
        if let Some(v) = self.created_gte {
            q.push(format!("created%5Bgte%5D={v}"));
        }
        if let Some(v) = self.created_lte {
            q.push(format!("created%5Blte%5D={v}"));
        }
        if let Some(after) = &self.starting_after {
            if !is_stripe_id(after) {
                return Err(StripeError::InvalidId(after.clone()));
            }
            q.push(format!("starting_after={after}"));
        }
        Ok(format!("/v1/events?{}", q.join("&")))
    }
}

/// The ids and time of a listed event, read without building its whole tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHead {
    pub id: String,
    /// `type`
    pub event_type: Option<String>,
    pub created: Option<i64>,
    /// `data.object.id`
    pub object_id: Option<String>,
}

#[derive(serde::Deserialize)]
struct Head {
    id: String,
    #[serde(default, rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    created: Option<i64>,
    #[serde(default)]
    data: Option<HeadData>,
}

#[derive(serde::Deserialize)]
struct HeadData {
    #[serde(default)]
    object: Option<HeadObject>,
}

#[derive(serde::Deserialize)]
struct HeadObject {
    #[serde(default)]
    id: Option<String>,
}

impl EventHead {
    pub fn read(raw: &RawValue) -> Result<Self, StripeError> {
        // Lenient past the id: an event whose other fields are odd is still the ledger's to judge.
        let head: Head = serde_json::from_str(raw.get())
            .or_else(|_| {
                #[derive(serde::Deserialize)]
                struct IdOnly {
                    id: String,
                }
                serde_json::from_str::<IdOnly>(raw.get()).map(|h| Head {
                    id: h.id,
                    event_type: None,
                    created: None,
                    data: None,
                })
            })
            .map_err(|e| StripeError::Malformed(format!("an event of the list has no id: {e}")))?;
        Ok(Self {
            id: head.id,
            event_type: head.event_type,
            created: head.created,
            object_id: head.data.and_then(|d| d.object).and_then(|o| o.id),
        })
    }
}

/// One event of a list: its head, and the exact JSON text Stripe sent.
#[derive(Debug)]
pub struct ListedEvent {
    pub head: EventHead,
    pub raw: Box<RawValue>,
}

impl ListedEvent {
    fn read(raw: Box<RawValue>) -> Result<Self, StripeError> {
        Ok(Self {
            head: EventHead::read(&raw)?,
            raw,
        })
    }
}

#[derive(serde::Deserialize)]
struct RawList {
    object: String,
    data: Vec<Box<RawValue>>,
    has_more: bool,
}

/// Pages through `GET /v1/events` (`has_more` / `starting_after`), newest first. A page must move
/// the cursor and hold no event newer than the page before it: a list that would page for ever
/// fails instead.
#[derive(Debug)]
pub struct EventPager<'a> {
    client: &'a StripeClient,
    query: EventQuery,
    done: bool,
    /// The `created` of the oldest event of the previous page.
    oldest: Option<i64>,
}

impl EventPager<'_> {
    /// The next page, or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ListedEvent>>, StripeError> {
        if self.done {
            return Ok(None);
        }
        let body = self
            .client
            .get_bytes(Endpoint::EventsList, &self.query.path()?)
            .await?;
        let list: RawList = serde_json::from_slice(&body)
            .map_err(|e| StripeError::Malformed(format!("not an event list: {e}")))?;
        drop(body);
        if list.object != "list" {
            return Err(StripeError::Malformed(
                "`object` of an event list is not \"list\"".into(),
            ));
        }
        let events = list
            .data
            .into_iter()
            .map(ListedEvent::read)
            .collect::<Result<Vec<_>, _>>()?;
        self.check(&events)?;
        match (list.has_more, events.last()) {
            (true, Some(last)) => {
                self.query.starting_after = Some(last.head.id.clone());
                self.oldest = events.iter().filter_map(|e| e.head.created).min();
            }
            _ => self.done = true,
        }
        Ok(Some(events))
    }

    /// Refuses a page that would not move the pass forward.
    fn check(&self, events: &[ListedEvent]) -> Result<(), StripeError> {
        if let Some(cursor) = &self.query.starting_after
            && events.iter().any(|e| &e.head.id == cursor)
        {
            return Err(StripeError::Pagination(format!(
                "the page after {cursor} holds {cursor} again: the cursor does not advance"
            )));
        }
        if let (Some(oldest), Some(newest)) = (
            self.oldest,
            events.iter().filter_map(|e| e.head.created).max(),
        ) && newest > oldest
        {
            return Err(StripeError::Pagination(format!(
                "a page holds an event created at {newest}, after the previous page's oldest \
                 ({oldest}): the cursor went backwards"
            )));
        }
        Ok(())
    }
}

impl StripeClient {
    /// Every page of the events matching `query`, newest first, one request per page.
    pub fn events(&self, query: EventQuery) -> EventPager<'_> {
        EventPager {
            client: self,
            query,
            done: false,
            oldest: None,
        }
    }

    /// `GET /v1/events/{id}`: the event as the exact JSON text Stripe sent.
    pub async fn event(&self, id: &str) -> Result<Box<RawValue>, StripeError> {
        if !is_stripe_id(id) {
            return Err(StripeError::InvalidId(id.to_owned()));
        }
        let body = self
            .get_bytes(Endpoint::EventsRetrieve, &format!("/v1/events/{id}"))
            .await?;
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| StripeError::Malformed("events.retrieve answered non-UTF-8".into()))?;
        serde_json::value::RawValue::from_string(text)
            .map_err(|e| StripeError::Malformed(format!("events.retrieve answered non-JSON ({e})")))
    }
}
