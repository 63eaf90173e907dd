//! A future that shares its task with a busier one and is polled only when one of its own wakers
//! has fired, not at every wake-up of the task: a connection's stop, eviction and deadline wait
//! beside the connection, which wakes its task several times per request. Polled every time, the
//! watch, the notification and the timer took locks at each of those wake-ups.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

/// `inner`, polled with a waker of its own: only on its first poll and after that waker fired.
pub(super) struct Aside<F> {
    inner: Pin<Box<F>>,
    woken: Arc<Woken>,
}

/// Whether the inner future's waker fired, and the task to wake when it does.
struct Woken {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> Aside<F> {
    pub(super) fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
            woken: Arc::new(Woken {
                // Polled once to begin with, so that it registers its wakers.
                fired: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
    }
}

impl<F: Future> Future for Aside<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Registered before the flag is read: a wake between the two is not lost.
        self.woken.task.register(cx.waker());
        if !self.woken.fired.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(self.woken.clone());
        self.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set, and wakes through the waker it was given.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn polled_only_after_its_own_waker_fired() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let inner_waker = Arc::new(std::sync::Mutex::new(None::<Waker>));
        let mut aside = Aside::new(Probe {
            polls: polls.clone(),
            ready: ready.clone(),
            waker: inner_waker.clone(),
        });
        let task_woken = Arc::new(Woken {
            fired: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        let task = Waker::from(task_woken.clone());
        let mut cx = Context::from_waker(&task);

        assert!(Pin::new(&mut aside).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1, "the first poll registers");
        for _ in 0..5 {
            assert!(Pin::new(&mut aside).poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "other wake-ups of the task skip it"
        );

        ready.store(true, Ordering::SeqCst);
        let registered = inner_waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        registered
            .expect("the inner future registered a waker")
            .wake();
        assert!(
            task_woken.fired.load(Ordering::SeqCst),
            "its waker wakes the task"
        );
        assert!(Pin::new(&mut aside).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }
}
