//! Drives checkouts the way Stripe would: the app creates an order, the customer pays (or not),
//! Stripe creates the events and delivers each one to the edge, signed, retrying non-2xx; some
//! deliveries are dropped, duplicated or reordered at the configured rates.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::stripe::signature;
use http::Method;
use http_body_util::Full;
use serde_json::{Value, json};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::app::{NewOrder, insert_order};
use crate::objects::{Session, envelope, event_id};
use crate::server::StripeSim;

/// How a checkout ends on Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Paid,
    Expired,
    AsyncPaid,
    AsyncFailed,
}

impl Ending {
    /// The order status that matches Stripe once every event is applied.
    pub fn expected_status(self) -> &'static str {
        match self {
            Self::Paid | Self::AsyncPaid => "paid",
            Self::Expired => "expired",
            Self::AsyncFailed => "failed",
        }
    }
}

/// One checkout as created by the driver.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub order_id: Uuid,
    pub session_id: String,
    pub ending: Ending,
    /// In creation order.
    pub events: Vec<Value>,
}

/// Delivery statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deliveries {
    pub events: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Held back and delivered only by [`Driver::deliver_delayed`].
    pub delayed: u64,
    pub retries: u64,
}

impl std::ops::AddAssign for Deliveries {
    fn add_assign(&mut self, d: Deliveries) {
        self.events += d.events;
        self.dropped += d.dropped;
        self.duplicated += d.duplicated;
        self.reordered += d.reordered;
        self.delayed += d.delayed;
        self.retries += d.retries;
    }
}

/// Rates in [0, 1].
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    pub drop: f64,
    pub duplicate: f64,
    /// Chance that a session's two events arrive in reverse order.
    pub reorder: f64,
    /// Chance that a delivery is held back until [`Driver::deliver_delayed`] (after later ones).
    pub delay: f64,
}

impl Rates {
    /// Only drops, at `rate`: the webhooks the reconciler must make up for.
    pub fn dropping(rate: f64) -> Self {
        Self {
            drop: rate,
            ..Self::default()
        }
    }
}

/// A deterministic driver (seeded), so a failing run can be replayed.
pub struct Driver {
    pub edge: SocketAddr,
    pub secret: String,
    pub rates: Rates,
    rng: u64,
    delayed: Vec<Value>,
}

impl Driver {
    pub fn new(edge: SocketAddr, secret: &str, rates: Rates, seed: u64) -> Self {
        Self {
            edge,
            secret: secret.to_owned(),
            rates,
            rng: seed,
            delayed: Vec::new(),
        }
    }

    /// Creates `n` checkouts ending as `ending`, created one second apart from `first_created`, and
    /// delivers each one's events before the next checkout.
    pub async fn play(
        &mut self,
        db: &Client,
        sim: &StripeSim,
        ending: Ending,
        n: usize,
        first_created: i64,
    ) -> Vec<Checkout> {
        let mut checkouts = Vec::with_capacity(n);
        for i in 0..n {
            let c = self
                .checkout(db, sim, ending, first_created + i as i64)
                .await;
            self.deliver(&c).await;
            checkouts.push(c);
        }
        checkouts
    }

    /// splitmix64 in [0, 1).
    fn chance(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }

    /// Creates the order (as the app would), the session and its events on Stripe.
    pub async fn checkout(
        &mut self,
        db: &Client,
        sim: &StripeSim,
        ending: Ending,
        created: i64,
    ) -> Checkout {
        let session_id = format!("cs_test_{}", Uuid::new_v4().simple());
        let order_id = insert_order(
            db,
            NewOrder {
                session_id: Some(session_id.clone()),
                amount_total: Some(2000),
                currency: Some("eur".into()),
                ..Default::default()
            },
        )
        .await;
        let mut session = Session::new(session_id.clone());
        session.created = created;
        session.client_reference_id = Some(order_id.to_string());
        let mut events = Vec::new();
        for (i, (kind, obj)) in steps(&session, ending).into_iter().enumerate() {
            let event = envelope(
                &event_id(),
                kind,
                created + 1 + i as i64,
                false,
                obj.clone(),
            );
            sim.add_event(event.clone());
            sim.put_session(obj);
            events.push(event);
        }
        Checkout {
            order_id,
            session_id,
            ending,
            events,
        }
    }

    /// Delivers a checkout's events to the edge as Stripe would, with the configured faults.
    pub async fn deliver(&mut self, checkout: &Checkout) -> Deliveries {
        let mut d = Deliveries::default();
        let mut events = checkout.events.clone();
        if events.len() > 1 && self.chance() < self.rates.reorder {
            events.reverse();
            d.reordered += 1;
        }
        for event in events {
            d.events += 1;
            if self.chance() < self.rates.drop {
                d.dropped += 1;
                continue;
            }
            if self.chance() < self.rates.delay {
                d.delayed += 1;
                self.delayed.push(event);
                continue;
            }
            d.retries += self.post(&event).await;
            if self.chance() < self.rates.duplicate {
                d.duplicated += 1;
                d.retries += self.post(&event).await;
            }
        }
        d
    }

    /// Delivers the held-back events, after everything sent so far. Returns retries.
    pub async fn deliver_delayed(&mut self) -> u64 {
        let mut retries = 0;
        for event in std::mem::take(&mut self.delayed) {
            retries += self.post(&event).await;
        }
        retries
    }

    /// POSTs until a 2xx (Stripe retries for days; here a bounded number of times). Returns retries.
    pub async fn post(&self, event: &Value) -> u64 {
        let body = Bytes::from(event.to_string());
        let mut retries = 0;
        for attempt in 0..50u32 {
            let header = signature::sign(&self.secret, chrono::Utc::now().timestamp(), &body);
            let req = crate::client::request(Method::POST, self.edge, "/stripe/webhook")
                .header("stripe-signature", header)
                .header("content-type", "application/json; charset=utf-8")
                .body(Full::new(body.clone()));
            let Ok(req) = req else { return retries };
            match crate::client::send(self.edge, req).await {
                Ok(r) if r.status.is_success() => return retries,
                _ => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt.min(10) + 1)))
                        .await;
                }
            }
        }
        retries
    }
}

/// The events of a checkout that ends as `ending`: their types and the session as each shows it.
fn steps(session: &Session, ending: Ending) -> Vec<(&'static str, Value)> {
    let object = |status: &str, payment_status: &str| {
        let mut o = session.object();
        o["status"] = json!(status);
        o["payment_status"] = json!(payment_status);
        if status == "expired" {
            o["payment_intent"] = Value::Null;
        }
        o
    };
    let completed = |payment_status| {
        (
            "checkout.session.completed",
            object("complete", payment_status),
        )
    };
    match ending {
        Ending::Paid => vec![completed("paid")],
        Ending::Expired => vec![("checkout.session.expired", object("expired", "unpaid"))],
        Ending::AsyncPaid => vec![
            completed("unpaid"),
            (
                "checkout.session.async_payment_succeeded",
                object("complete", "paid"),
            ),
        ],
        Ending::AsyncFailed => vec![
            completed("unpaid"),
            (
                "checkout.session.async_payment_failed",
                object("complete", "unpaid"),
            ),
        ],
    }
}
