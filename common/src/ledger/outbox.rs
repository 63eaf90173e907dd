//! Order notifications, the ledger's side of the transactional outbox: which notification each
//! transition is (`order_transitions.kind`), and the channel that wakes the deliverers. The rows
//! themselves are inserted by the order `UPDATE` (`sql::UPDATE_ORDERS`), in the same transaction as
//! the change, from every path that moves an order.

use super::OrderStatus;

/// The `NOTIFY` channel a transaction that inserted transitions signals at its commit.
pub const CHANNEL: &str = "order_transitions";

crate::label! {
    /// A notification's `type` (`order_transitions.kind`).
    pub enum NotificationKind: "type" {
        Paid = "order.paid",
        PaymentFailed = "order.payment_failed",
        Expired = "order.expired",
        PartiallyRefunded = "order.partially_refunded",
        Refunded = "order.refunded",
        DisputeOpened = "order.dispute_opened",
        DisputeClosed = "order.dispute_closed",
    }
}

impl NotificationKind {
    /// The notification of a change of `orders.status` to `to`; `None` for a move back to
    /// `pending`, which the state machine never makes.
    pub fn of_status(to: OrderStatus) -> Option<Self> {
        match to {
            OrderStatus::Paid => Some(Self::Paid),
            OrderStatus::Failed => Some(Self::PaymentFailed),
            OrderStatus::Expired => Some(Self::Expired),
            OrderStatus::PartiallyRefunded => Some(Self::PartiallyRefunded),
            OrderStatus::Refunded => Some(Self::Refunded),
            OrderStatus::Pending => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition_of_the_state_machine_is_a_notification() {
        for (_, to) in super::super::TRANSITIONS {
            assert!(NotificationKind::of_status(to).is_some(), "{to}");
        }
    }
}
