//! The one-line verdict support reads, written in one place for `reconciler session` and
//! `reconciler inspect`: what Stripe says, what the database says, and the command that fixes the
//! difference.

use common::ledger::OrderStatus;
use common::stripe::is_paid;

/// What Stripe said about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeSays<'a> {
    /// Not asked (no `STRIPE_API_KEY`).
    NotAsked,
    /// Stripe has no such session.
    Unknown,
    /// Stripe could not be reached; the cause.
    Unreachable(&'a str),
    Known {
        status: Option<&'a str>,
        payment_status: Option<&'a str>,
    },
}

impl StripeSays<'_> {
    fn paid(&self) -> bool {
        matches!(
            self,
            Self::Known {
                payment_status: Some(status),
                ..
            } if is_paid(status)
        )
    }
}

/// The order as the verdict needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderFacts<'a> {
    pub status: OrderStatus,
    pub anomaly: Option<&'a str>,
}

/// Everything a verdict is drawn from.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// What was asked about ("session cs_…", "order …"), for "nothing here" answers.
    pub subject: &'a str,
    pub session_id: Option<&'a str>,
    pub order: Option<OrderFacts<'a>>,
    /// Ledger rows found for the subject.
    pub ledger_events: usize,
    pub stripe: StripeSays<'a>,
    /// The session's events have just been reconciled (so running the reconcile again is not
    /// the fix).
    pub reconciled: bool,
    /// After a reconcile: the paying event that Stripe listed for the session, now in the ledger.
    pub stored_paying_event: Option<&'a str>,
}

/// The verdict.
pub fn verdict(f: &Facts<'_>) -> String {
    let paid = f.stripe.paid();
    let stripe_state = || match f.stripe {
        StripeSays::Known {
            status,
            payment_status,
        } => format!(
            "not paid on Stripe (status {}, payment_status {})",
            status.unwrap_or("?"),
            payment_status.unwrap_or("?")
        ),
        _ => String::new(),
    };
    let Some(order) = f.order else {
        return match (f.reconciled, paid) {
            (true, true) => format!(
                "paid on Stripe, but no order here has session {}: the app never created it",
                f.session_id.unwrap_or("?")
            ),
            (true, false) => format!("{}; no order here", stripe_state()),
            (false, _) if f.ledger_events == 0 => {
                format!("nothing here for {}: no order and no ledger row", f.subject)
            }
            (false, _) => format!(
                "{} event(s) in the ledger but no order: an orphan (the app created no order with this session); it is linked when the order appears",
                f.ledger_events
            ),
        };
    };
    let settled = matches!(order.status, OrderStatus::Paid | OrderStatus::Refunded);
    let paid_prefix = if paid { "paid on Stripe, " } else { "" };
    match (order.anomaly, f.stripe) {
        (Some(anomaly), _) if !settled => {
            return format!(
                "{paid_prefix}{} here because of an anomaly: {anomaly}",
                order.status
            );
        }
        (_, StripeSays::NotAsked) => {
            return format!(
                "{} here with {} ledger event(s); set STRIPE_API_KEY to compare with Stripe",
                order.status, f.ledger_events
            );
        }
        (_, StripeSays::Unreachable(cause)) => {
            return format!(
                "{} here with {} ledger event(s); Stripe unreachable: {cause}",
                order.status, f.ledger_events
            );
        }
        (_, StripeSays::Unknown) => {
            return format!("{} here; Stripe does not know this session", order.status);
        }
        _ => {}
    }
    match (paid, settled) {
        (true, true) => format!("paid on Stripe, {} here: nothing to do", order.status),
        (true, false) if f.reconciled => match f.stored_paying_event {
            Some(event) => format!(
                "paid on Stripe, {} here: its paying event {event} is in the ledger but did not move the order; see `reconciler inspect --event {event}`",
                order.status
            ),
            None => format!(
                "paid on Stripe, {} here: Stripe listed no paying event for this session; resend it from the Stripe Dashboard",
                order.status
            ),
        },
        (true, false) => format!(
            "paid on Stripe, {} here: {}",
            order.status,
            f.session_id.map_or_else(
                || "resend the event from the Stripe Dashboard".to_owned(),
                |cs| format!("run `reconciler session {cs}`")
            )
        ),
        (false, _) => format!("{}; {} here", stripe_state(), order.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(order: Option<OrderFacts<'a>>, stripe: StripeSays<'a>) -> Facts<'a> {
        Facts {
            subject: "session cs_1",
            session_id: Some("cs_1"),
            order,
            ledger_events: 1,
            stripe,
            reconciled: false,
            stored_paying_event: None,
        }
    }

    const PAID: StripeSays<'static> = StripeSays::Known {
        status: Some("complete"),
        payment_status: Some("paid"),
    };

    #[test]
    fn paid_on_stripe_pending_here_names_the_command() {
        let pending = OrderFacts {
            status: OrderStatus::Pending,
            anomaly: None,
        };
        assert_eq!(
            verdict(&facts(Some(pending), PAID)),
            "paid on Stripe, pending here: run `reconciler session cs_1`"
        );
        let paid = OrderFacts {
            status: OrderStatus::Paid,
            anomaly: None,
        };
        assert_eq!(
            verdict(&facts(Some(paid), PAID)),
            "paid on Stripe, paid here: nothing to do"
        );
    }

    #[test]
    fn anomalies_and_missing_views_are_said() {
        let held = OrderFacts {
            status: OrderStatus::Pending,
            anomaly: Some("amount_mismatch: x"),
        };
        assert!(verdict(&facts(Some(held), PAID)).contains("because of an anomaly"));
        let pending = OrderFacts {
            status: OrderStatus::Pending,
            anomaly: None,
        };
        assert!(
            verdict(&facts(Some(pending), StripeSays::NotAsked)).contains("set STRIPE_API_KEY")
        );
        assert!(
            verdict(&facts(Some(pending), StripeSays::Unreachable("refused")))
                .contains("Stripe unreachable: refused")
        );
        let mut nothing = facts(None, StripeSays::NotAsked);
        nothing.ledger_events = 0;
        assert!(verdict(&nothing).starts_with("nothing here"));
    }
}
