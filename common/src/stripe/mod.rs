//! Stripe's wire formats that both binaries share: the event envelope, the objects support reads
//! (a Checkout Session), and `Stripe-Signature`.

pub mod event;
mod fields;
mod scan;
pub mod session;
pub mod signature;

pub use fields::is_stripe_id;

/// Whether a Checkout Session's `payment_status` means the order is paid: `paid`, or
/// `no_payment_required` (a free order, a 100 % coupon).
pub fn is_paid(payment_status: &str) -> bool {
    matches!(payment_status, "paid" | "no_payment_required")
}
