//! Stripe's lists of the objects themselves, for the sweep: `GET /v1/checkout/sessions`,
//! `/v1/refunds` and `/v1/disputes` by `created` (not limited to 30 days, unlike the events),
//! paged newest first with the same checks as the event pager: a cursor that does not move, or a
//! page newer than the one before it, fails the listing instead of paging for ever.

use common::stripe::is_stripe_id;
use serde_json::value::RawValue;

use super::{StripeClient, StripeError};
use crate::metrics::Endpoint;

/// An object list the sweep reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectList {
    CheckoutSessions,
    Refunds,
    Disputes,
}

impl ObjectList {
    pub const ALL: [ObjectList; 3] = [Self::CheckoutSessions, Self::Refunds, Self::Disputes];

    /// The name kept in `sweep_cursors.list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CheckoutSessions => "checkout_sessions",
            Self::Refunds => "refunds",
            Self::Disputes => "disputes",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::CheckoutSessions => "/v1/checkout/sessions",
            Self::Refunds => "/v1/refunds",
            Self::Disputes => "/v1/disputes",
        }
    }

    fn endpoint(self) -> Endpoint {
        match self {
            Self::CheckoutSessions => Endpoint::SessionsList,
            Self::Refunds => Endpoint::RefundsList,
            Self::Disputes => Endpoint::DisputesList,
        }
    }
}

/// One object of a list: its id and `created`, and the exact JSON text Stripe sent.
#[derive(Debug)]
pub struct ListedObject {
    pub id: String,
    pub created: Option<i64>,
    pub raw: Box<RawValue>,
}

#[derive(serde::Deserialize)]
struct Head {
    id: String,
    #[serde(default)]
    created: Option<i64>,
}

#[derive(serde::Deserialize)]
struct RawList {
    object: String,
    data: Vec<Box<RawValue>>,
    has_more: bool,
}

/// Pages through one object list over `[created_gte, created_lte]`, newest first, from an
/// optional cursor (`starting_after`).
#[derive(Debug)]
pub struct ObjectPager<'a> {
    client: &'a StripeClient,
    list: ObjectList,
    created_gte: i64,
    created_lte: i64,
    starting_after: Option<String>,
    done: bool,
    oldest: Option<i64>,
}

impl ObjectPager<'_> {
    fn path(&self) -> Result<String, StripeError> {
        let mut q = vec![
            "limit=100".to_owned(),
            format!("created%5Bgte%5D={}", self.created_gte),
            format!("created%5Blte%5D={}", self.created_lte),
        ];
        if let Some(after) = &self.starting_after {
            if !is_stripe_id(after) {
                return Err(StripeError::InvalidId(after.clone()));
            }
            q.push(format!("starting_after={after}"));
        }
        Ok(format!("{}?{}", self.list.path(), q.join("&")))
    }

    /// The next page, or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ListedObject>>, StripeError> {
        if self.done {
            return Ok(None);
        }
        let body = self
            .client
            .get_bytes(self.list.endpoint(), &self.path()?)
            .await?;
        let list: RawList = serde_json::from_slice(&body)
            .map_err(|e| StripeError::Malformed(format!("not a list: {e}")))?;
        drop(body);
        if list.object != "list" {
            return Err(StripeError::Malformed(
                "`object` of a list is not \"list\"".into(),
            ));
        }
        let objects = list
            .data
            .into_iter()
            .map(|raw| {
                let head: Head = serde_json::from_str(raw.get()).map_err(|e| {
                    StripeError::Malformed(format!("an object of the list has no id: {e}"))
                })?;
                Ok(ListedObject {
                    id: head.id,
                    created: head.created,
                    raw,
                })
            })
            .collect::<Result<Vec<_>, StripeError>>()?;
        if let Some(cursor) = &self.starting_after
            && objects.iter().any(|o| &o.id == cursor)
        {
            return Err(StripeError::Pagination(format!(
                "the page after {cursor} holds {cursor} again: the cursor does not advance"
            )));
        }
        if let (Some(oldest), Some(newest)) =
            (self.oldest, objects.iter().filter_map(|o| o.created).max())
            && newest > oldest
        {
            return Err(StripeError::Pagination(format!(
                "a page holds an object created at {newest}, after the previous page's oldest \
                 ({oldest}): the cursor went backwards"
            )));
        }
        match (list.has_more, objects.last()) {
            (true, Some(last)) => {
                self.starting_after = Some(last.id.clone());
                self.oldest = objects.iter().filter_map(|o| o.created).min();
            }
            _ => self.done = true,
        }
        Ok(Some(objects))
    }

    /// The cursor the next page starts after.
    pub fn cursor(&self) -> Option<&str> {
        self.starting_after.as_deref()
    }
}

impl StripeClient {
    /// Every page of `list` created in `[created_gte, created_lte]`, newest first, after
    /// `starting_after` when resuming.
    pub fn objects(
        &self,
        list: ObjectList,
        created_gte: i64,
        created_lte: i64,
        starting_after: Option<String>,
    ) -> ObjectPager<'_> {
        ObjectPager {
            client: self,
            list,
            created_gte,
            created_lte,
            starting_after,
            done: false,
            oldest: None,
        }
    }
}
