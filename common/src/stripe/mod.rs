//! Stripe's wire formats that both binaries share: the event envelope and `Stripe-Signature`.

pub mod event;
pub mod signature;
