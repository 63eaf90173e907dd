//! Proxied responses on their way back to the client, watched: each holds its upstream body (and
//! so its upstream connection) and its in-flight slot, and a sweeper gives both up when the client
//! has not taken any of the body for the stall time-out (an h2 window kept at zero, an HTTP/1
//! download never read). The client's stream then ends with an error; the slot and the upstream
//! connection are free at once, whether or not the client ever reads again.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::http::coarse;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::cap::Slot;
use super::upstream::Answer;
use crate::metrics::EdgeMetrics;
use crate::routes::BoxError;

/// What a response being sent back holds: the upstream body and the in-flight slot.
type Held = (Answer, Slot);

/// One proxied response on its way back.
struct Flight {
    held: Mutex<Option<Held>>,
    /// When the client last asked for more, on the coarse clock (read at every poll).
    last_poll_ms: AtomicU64,
}

/// Every response on its way back, for the sweeper.
pub(super) struct Flights {
    next_id: AtomicU64,
    by_id: Mutex<ById>,
}

/// The responses on their way back, by id.
type ById = HashMap<u64, Arc<Flight>, BuildHasherDefault<IdHasher>>;

/// Hashes the registry's ids (a counter) by one multiplication: SipHash, the map's default,
/// guards against chosen keys, and these are not chosen by anyone.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: consecutive ids land far apart, in every bit of the hash.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights")
            .field("in_flight", &self.lock().len())
            .finish()
    }
}

impl Flights {
    /// The registry, with its sweeper running (it ends when the registry is dropped).
    pub(super) fn start(stall: Duration, metrics: EdgeMetrics) -> Arc<Self> {
        let flights = Arc::new(Self {
            next_id: AtomicU64::new(0),
            by_id: Mutex::new(HashMap::default()),
        });
        tokio::spawn(sweep(Arc::downgrade(&flights), stall, metrics));
        flights
    }

    /// The body that sends `upstream` back, holding `slot` until it is finished, dropped, or
    /// given up.
    pub(super) fn watch(self: &Arc<Self>, upstream: Answer, slot: Slot) -> Returning {
        let flight = Arc::new(Flight {
            held: Mutex::new(Some((upstream, slot))),
            last_poll_ms: AtomicU64::new(coarse::now_ms()),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, flight.clone());
        Returning {
            flight,
            id,
            flights: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ById> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives up every response not taken for `stall`; how many.
    fn give_up_stalled(&self, stall: Duration) -> u64 {
        let now = coarse::now_ms();
        let stall_ms = stall.as_millis() as u64;
        let stalled: Vec<Arc<Flight>> = self
            .lock()
            .values()
            .filter(|f| now.saturating_sub(f.last_poll_ms.load(Ordering::Relaxed)) >= stall_ms)
            .cloned()
            .collect();
        let mut given_up = 0;
        for flight in stalled {
            let held = flight
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            given_up += u64::from(held.is_some());
        }
        given_up
    }
}

/// Looks for stalled responses a few times per stall time-out.
async fn sweep(flights: Weak<Flights>, stall: Duration, metrics: EdgeMetrics) {
    let mut tick = tokio::time::interval((stall / 4).max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(flights) = flights.upgrade() else {
            return;
        };
        let given_up = flights.give_up_stalled(stall);
        if given_up > 0 {
            metrics.proxy_stalled.increment(given_up);
            tracing::warn!(
                responses = given_up,
                stall_secs = stall.as_secs_f64(),
                "proxied responses not read by their clients were given up; their slots and upstream connections are free"
            );
        }
    }
}

/// The client stopped taking a proxied response.
#[derive(Debug, thiserror::Error)]
#[error("the client did not read the response for the stall time-out; it was given up")]
pub struct GivenUp;

/// A proxied response body on its way back to the client.
pub(super) struct Returning {
    flight: Arc<Flight>,
    id: u64,
    flights: Arc<Flights>,
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.flight
            .last_poll_ms
            .store(coarse::now_ms(), Ordering::Relaxed);
        let mut held = self
            .flight
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some((upstream, _slot)) = held.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(GivenUp))));
        };
        match Pin::new(upstream).poll_frame(cx) {
            Poll::Ready(None) => {
                // Finished: the slot is free now, whatever the client does with the connection.
                *held = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                Poll::Ready(Some(frame.map_err(|e| Box::new(e) as BoxError)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &*self
            .flight
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some((upstream, _)) => upstream.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        self.flights.lock().remove(&self.id);
    }
}
