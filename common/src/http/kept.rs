//! What a handler keeps from one request of a connection to the next (the proxy's upstream
//! connections): one value per connection, handed with every request by [`super::serve`] (in
//! [`super::Connected`]) and dropped with the connection.

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};

/// The value a connection's handlers share, created on first use. Cloning shares it.
#[derive(Clone, Default)]
pub struct Kept(Arc<Mutex<Option<Box<dyn Any + Send>>>>);

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kept")
    }
}

impl Kept {
    /// Runs `f` on the connection's `T` (its default on first use, or when another type was
    /// kept), under a lock held only for `f`: concurrent requests of one h2 connection take turns.
    pub fn with<T: Any + Send + Default, R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|v| v.is::<T>()) {
            *slot = Some(Box::new(T::default()));
        }
        match slot.as_mut().and_then(|v| v.downcast_mut::<T>()) {
            Some(value) => f(value),
            // Unreachable: the slot holds a `T` from just above.
            None => f(&mut T::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_lasts_across_calls_and_clones() {
        let kept = Kept::default();
        kept.with(|v: &mut Vec<u8>| v.push(1));
        let other = kept.clone();
        other.with(|v: &mut Vec<u8>| v.push(2));
        assert_eq!(kept.with(|v: &mut Vec<u8>| v.clone()), vec![1, 2]);
    }

    #[test]
    fn another_type_starts_again() {
        let kept = Kept::default();
        kept.with(|v: &mut Vec<u8>| v.push(1));
        assert_eq!(kept.with(|n: &mut u32| *n), 0);
    }
}
