//! The order state machine as pure functions: what an event does to the order it belongs
//! to ([`decide`]), the answer for whoever delivered it and the anomalies that keep an order
//! unchanged ([`judge`]), and the keys that find its order ([`keys`]). No I/O here; the table
//! tests below are the rules' specification. Refunds and disputes change no status here: their
//! snapshots are applied by `ledger::money`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{AnomalyKind, Applied, OrderRow, OrderStatus};
use crate::stripe::event::{StripeEvent, types};
use crate::stripe::is_paid;

/// What the state machine wants done to the order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub to: Option<OrderStatus>,
    pub paid_at: Option<DateTime<Utc>>,
    /// The paying session's `amount_total` and `currency`, recorded on an order that did not say
    /// what it expects (refunds are measured against it).
    pub paid_amount: Option<i64>,
    pub paid_currency: Option<String>,
    /// Recorded on the order when it has none yet, or when this event pays the order (the order
    /// keeps the payment intent of the session that paid it: a later refund finds it by that).
    pub payment_intent: Option<String>,
    /// `payment_intent` replaces the order's (the paying event's), rather than filling a gap.
    pub replaces_payment_intent: bool,
    pub anomaly: Option<AnomalyKind>,
    /// Text stored in `orders.anomaly` (only for anomalies that concern the order itself).
    pub order_anomaly: Option<String>,
}

impl Decision {
    /// Whether the order row must be written.
    pub fn changes_order(&self) -> bool {
        self.to.is_some() || self.payment_intent.is_some() || self.order_anomaly.is_some()
    }
}

/// The order state machine. `paid` is never downgraded; only the listed moves exist.
pub fn decide(event: &StripeEvent, order: &OrderRow, expect_livemode: Option<bool>) -> Decision {
    use OrderStatus::*;
    if let Some(want) = expect_livemode.filter(|want| *want != event.livemode) {
        return Decision {
            anomaly: Some(AnomalyKind::LivemodeMismatch),
            order_anomaly: event.moves_orders().then(|| {
                format!(
                    "livemode_mismatch: {} event {} has livemode {}, this deployment expects {want} (STRIPE_EXPECT_LIVEMODE)",
                    event.event_type, event.id, event.livemode
                )
            }),
            ..Decision::default()
        };
    }
    let o = &event.object;
    let from = order.status;
    let to = match event.event_type.as_str() {
        types::SESSION_COMPLETED
            if o.payment_status.as_deref().is_some_and(is_paid)
                && matches!(from, Pending | Failed | Expired) =>
        {
            Some(Paid)
        }
        types::SESSION_ASYNC_SUCCEEDED if matches!(from, Pending | Failed) => Some(Paid),
        types::SESSION_ASYNC_FAILED if from == Pending => Some(Failed),
        types::SESSION_EXPIRED if from == Pending => Some(Expired),
        _ => None,
    };
    let pays = to == Some(Paid);
    let (payment_intent, replaces_payment_intent) =
        match (event.session_id(), &o.payment_intent, &order.payment_intent) {
            (Some(_), Some(pi), None) => (Some(pi.clone()), false),
            // A retried checkout: the session that pays the order brings its own payment intent.
            (Some(_), Some(pi), Some(had)) if pays && pi != had => (Some(pi.clone()), true),
            _ => (None, false),
        };
    if pays && let Some(problem) = amount_problem(event, order) {
        return Decision {
            // Not paid: the payment intent only fills a gap.
            payment_intent: payment_intent.filter(|_| !replaces_payment_intent),
            anomaly: Some(AnomalyKind::AmountMismatch),
            order_anomaly: Some(problem),
            ..Decision::default()
        };
    }
    Decision {
        to,
        paid_at: pays.then_some(event.created),
        paid_amount: o.amount_total.filter(|_| pays),
        paid_currency: o.currency.clone().filter(|_| pays),
        payment_intent,
        replaces_payment_intent,
        ..Decision::default()
    }
}

/// `got` is `want` in lower case (compared without a lower-case copy of `want`).
fn is_lowercase_of(got: &str, want: &str) -> bool {
    got.len() == want.len()
        && got
            .bytes()
            .zip(want.bytes())
            .all(|(g, w)| g == w.to_ascii_lowercase())
}

/// Describes how the session's amount or currency differs from the order's expectation.
fn amount_problem(event: &StripeEvent, order: &OrderRow) -> Option<String> {
    let o = &event.object;
    let amount_ok = order
        .amount_total
        .is_none_or(|want| o.amount_total == Some(want));
    let currency_ok = order.currency.as_deref().is_none_or(|want| {
        o.currency
            .as_deref()
            .is_some_and(|got| is_lowercase_of(got, want))
    });
    if amount_ok && currency_ok {
        return None;
    }
    let show = |a: Option<i64>, c: Option<&str>| {
        format!(
            "{} {}",
            a.map_or_else(|| "?".into(), |a| a.to_string()),
            c.unwrap_or("?")
        )
    };
    Some(format!(
        "amount_mismatch: order expects {}, {} event {} has {}",
        show(order.amount_total, order.currency.as_deref()),
        event.event_type,
        event.id,
        show(o.amount_total, o.currency.as_deref()),
    ))
}

/// What the lookup found for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// No order: an orphan (kept with `order_id` NULL, linked when its order appears).
    None,
    /// Its order, as locked (or as earlier events of the same batch left it).
    Order(&'a OrderRow),
    /// No order of its own, but its `client_reference_id` or `metadata.order_id` names this
    /// order, which has another Checkout Session.
    Mismatch(&'a OrderRow),
}

/// What a new event does: the answer for whoever delivered it and, when an order row must
/// change, the decision for it. An unreadable event, and one naming another session's order,
/// never move an order: the anomaly is recorded on it instead.
pub fn judge(
    event: &StripeEvent,
    target: Target<'_>,
    expect_livemode: Option<bool>,
) -> (Applied, Option<Decision>) {
    let order = match target {
        // An older session of the order that only expires or fails: the app retried the
        // checkout with a new session. Kept on the order's timeline, with no anomaly.
        Target::Mismatch(order) if retried_checkout(event) => {
            return (Applied::new(false, Some(order.id)), None);
        }
        Target::Mismatch(_) => {
            let decision = Decision {
                anomaly: Some(AnomalyKind::SessionMismatch),
                order_anomaly: Some(format!(
                    "session_mismatch: {} event {} for session {} names this order, which has another session",
                    event.event_type,
                    event.id,
                    event.session_id().unwrap_or("?"),
                )),
                ..Decision::default()
            };
            let applied = Applied {
                anomaly: decision.anomaly,
                ..Applied::new(false, None)
            };
            return (applied, Some(decision));
        }
        Target::None => {
            let applied = Applied {
                orphan: event.moves_orders(),
                anomaly: if event.unreadable_reason().is_some() {
                    Some(AnomalyKind::Unreadable)
                } else {
                    expect_livemode
                        .is_some_and(|want| want != event.livemode)
                        .then_some(AnomalyKind::LivemodeMismatch)
                },
                ..Applied::new(false, None)
            };
            return (applied, None);
        }
        Target::Order(order) => order,
    };
    let decision = match event.unreadable_reason() {
        Some(field) => Decision {
            anomaly: Some(AnomalyKind::Unreadable),
            order_anomaly: Some(format!(
                "unreadable: {} event {} has a {field} that cannot be read; the order was left alone",
                event.event_type, event.id
            )),
            ..Decision::default()
        },
        None => decide(event, order, expect_livemode),
    };
    let mut applied = Applied::new(false, Some(order.id));
    applied.anomaly = decision.anomaly;
    if !decision.changes_order() {
        return (applied, None);
    }
    applied.transition = decision.to.map(|to| (order.status, to));
    (applied, Some(decision))
}

/// An event of a session that ends without paying (it expires, or its delayed payment fails):
/// harmless when the order has moved on to another session.
fn retried_checkout(event: &StripeEvent) -> bool {
    matches!(
        event.event_type.as_str(),
        types::SESSION_EXPIRED | types::SESSION_ASYNC_FAILED
    )
}

/// The keys that find an event's order, in precedence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys<'a> {
    pub session_id: Option<&'a str>,
    pub client_ref: Option<Uuid>,
    pub metadata_ref: Option<Uuid>,
    /// Only for objects that are not sessions (charges).
    pub payment_intent: Option<&'a str>,
}

/// The lookup keys of an event.
pub fn keys(event: &StripeEvent) -> Keys<'_> {
    let o = &event.object;
    let session_id = event.session_id();
    Keys {
        session_id,
        client_ref: o
            .client_reference_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok()),
        metadata_ref: o
            .metadata_order_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok()),
        // Only non-session objects (charges) are matched by payment intent.
        payment_intent: if session_id.is_none() {
            o.payment_intent.as_deref()
        } else {
            None
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::event::EventObject;
    use OrderStatus::*;

    #[test]
    fn currencies_compare_in_lower_case() {
        assert!(is_lowercase_of("usd", "USD"));
        assert!(is_lowercase_of("usd", "usd"));
        assert!(!is_lowercase_of("USD", "usd"));
        assert!(!is_lowercase_of("usd", "eur"));
        assert!(!is_lowercase_of("us", "usd"));
    }

    fn event(kind: &str, payment_status: Option<&str>) -> StripeEvent {
        StripeEvent {
            id: "evt_1".into(),
            event_type: kind.into(),
            created: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            livemode: false,
            api_version: None,
            unreadable: None,
            object: EventObject {
                kind: Some(
                    if kind.starts_with("charge") {
                        "charge"
                    } else {
                        "checkout.session"
                    }
                    .into(),
                ),
                id: Some("cs_1".into()),
                payment_status: payment_status.map(Into::into),
                amount_total: Some(1000),
                currency: Some("eur".into()),
                payment_intent: Some("pi_1".into()),
                fully_refunded: true,
                ..EventObject::default()
            },
        }
    }

    fn order(status: OrderStatus) -> OrderRow {
        OrderRow {
            id: Uuid::nil(),
            status,
            amount_total: None,
            currency: None,
            payment_intent: None,
            amount_refunded: 0,
        }
    }

    #[test]
    fn state_machine_table() {
        let cases: &[(&str, Option<&str>, OrderStatus, Option<OrderStatus>)] = &[
            (types::SESSION_COMPLETED, Some("paid"), Pending, Some(Paid)),
            (
                types::SESSION_COMPLETED,
                Some("no_payment_required"),
                Pending,
                Some(Paid),
            ),
            (types::SESSION_COMPLETED, Some("paid"), Failed, Some(Paid)),
            (types::SESSION_COMPLETED, Some("paid"), Expired, Some(Paid)),
            (types::SESSION_COMPLETED, Some("paid"), Paid, None),
            (types::SESSION_COMPLETED, Some("paid"), Refunded, None),
            (types::SESSION_COMPLETED, Some("unpaid"), Pending, None),
            (types::SESSION_ASYNC_SUCCEEDED, None, Pending, Some(Paid)),
            (types::SESSION_ASYNC_SUCCEEDED, None, Failed, Some(Paid)),
            (types::SESSION_ASYNC_SUCCEEDED, None, Expired, None),
            (types::SESSION_ASYNC_FAILED, None, Pending, Some(Failed)),
            (types::SESSION_ASYNC_FAILED, None, Paid, None),
            (types::SESSION_EXPIRED, None, Pending, Some(Expired)),
            (types::SESSION_EXPIRED, None, Paid, None),
            // Refunds and disputes move the order through `ledger::money`, never here.
            (types::CHARGE_REFUNDED, None, Paid, None),
            (types::REFUND_UPDATED, None, Paid, None),
            (types::DISPUTE_CREATED, None, Paid, None),
            (
                types::SESSION_COMPLETED,
                Some("paid"),
                PartiallyRefunded,
                None,
            ),
            ("customer.created", None, Pending, None),
        ];
        for (kind, ps, from, want) in cases {
            let d = decide(&event(kind, *ps), &order(*from), None);
            assert_eq!(d.to, *want, "{kind} {ps:?} from {from}");
            assert_eq!(d.paid_at.is_some(), *want == Some(Paid));
        }
    }

    #[test]
    fn amount_and_currency_are_guarded() {
        let e = event(types::SESSION_COMPLETED, Some("paid"));
        let mut o = order(Pending);
        o.amount_total = Some(1000);
        o.currency = Some("EUR".into());
        assert_eq!(decide(&e, &o, None).to, Some(Paid));
        o.amount_total = Some(999);
        let d = decide(&e, &o, None);
        assert_eq!(d.to, None);
        assert_eq!(d.anomaly, Some(AnomalyKind::AmountMismatch));
        assert!(
            d.order_anomaly
                .as_deref()
                .is_some_and(|t| t.contains("999 EUR"))
        );
        o.amount_total = Some(1000);
        o.currency = Some("usd".into());
        assert_eq!(
            decide(&e, &o, None).anomaly,
            Some(AnomalyKind::AmountMismatch)
        );
    }

    #[test]
    fn other_mode_changes_nothing_but_says_why() {
        let e = event(types::SESSION_COMPLETED, Some("paid"));
        let d = decide(&e, &order(Pending), Some(true));
        assert_eq!(d.to, None);
        assert_eq!(d.anomaly, Some(AnomalyKind::LivemodeMismatch));
        assert!(
            d.order_anomaly
                .as_deref()
                .is_some_and(|t| t.starts_with("livemode_mismatch"))
        );
        assert_eq!(decide(&e, &order(Pending), Some(false)).to, Some(Paid));
    }

    #[test]
    fn unreadable_and_mismatched_events_leave_the_order_alone() {
        let mut e = event(types::SESSION_COMPLETED, Some("paid"));
        e.unreadable = Some("data.object.amount_total".into());
        let o = order(Pending);
        let (applied, decision) = judge(&e, Target::Order(&o), None);
        assert_eq!(applied.anomaly, Some(AnomalyKind::Unreadable));
        assert_eq!(applied.transition, None);
        let decision = decision.expect("the anomaly is written on the order");
        assert_eq!(decision.to, None);
        assert!(
            decision
                .order_anomaly
                .is_some_and(|t| t.contains("data.object.amount_total"))
        );

        let e = event(types::SESSION_COMPLETED, Some("paid"));
        let (applied, decision) = judge(&e, Target::Mismatch(&o), None);
        assert_eq!(
            applied.order_id, None,
            "the event is not linked to that order"
        );
        assert_eq!(applied.anomaly, Some(AnomalyKind::SessionMismatch));
        assert_eq!(decision.map(|d| d.to), Some(None), "and never moves it");
    }

    #[test]
    fn the_paying_session_brings_its_payment_intent() {
        let mut e = event(types::SESSION_COMPLETED, Some("paid"));
        e.object.payment_intent = Some("pi_2".into());
        let mut o = order(Failed);
        o.payment_intent = Some("pi_1".into());
        let d = decide(&e, &o, None);
        assert_eq!(d.to, Some(Paid));
        assert_eq!(d.payment_intent.as_deref(), Some("pi_2"));
        assert!(d.replaces_payment_intent);
    }

    #[test]
    fn an_older_session_that_expires_is_no_anomaly() {
        let o = order(Paid);
        let e = event(types::SESSION_EXPIRED, None);
        let (applied, decision) = judge(&e, Target::Mismatch(&o), None);
        assert_eq!(applied.anomaly, None);
        assert_eq!(applied.order_id, Some(o.id), "kept on the order's timeline");
        assert_eq!(decision, None, "the order is left alone");
        let e = event(types::SESSION_COMPLETED, Some("paid"));
        let (applied, _) = judge(&e, Target::Mismatch(&o), None);
        assert_eq!(applied.anomaly, Some(AnomalyKind::SessionMismatch));
    }

    #[test]
    fn payment_intent_is_recorded_once() {
        let e = event(types::SESSION_COMPLETED, Some("unpaid"));
        assert_eq!(
            decide(&e, &order(Pending), None).payment_intent.as_deref(),
            Some("pi_1")
        );
        let mut o = order(Pending);
        o.payment_intent = Some("pi_0".into());
        assert_eq!(decide(&e, &o, None).payment_intent, None);
    }

    #[test]
    fn keys_follow_the_object_kind() {
        let session = event(types::SESSION_COMPLETED, Some("paid"));
        let k = keys(&session);
        assert_eq!(k.session_id, Some("cs_1"));
        assert_eq!(k.payment_intent, None, "sessions are found by their id");
        let charge = event(types::CHARGE_REFUNDED, None);
        let k = keys(&charge);
        assert_eq!(k.session_id, None);
        assert_eq!(k.payment_intent, Some("pi_1"));
    }
}
