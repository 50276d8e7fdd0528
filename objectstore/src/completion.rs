//! A one-shot result that can be awaited (any executor) or waited for
//! (blocking): the shape of [`Commit`] and of the async reads.
//!
//! A completion is a slot that the store fills, or a future that ends in
//! one (a commit waiting for admission). With inline driving, waiting for
//! it drives the store's engines on the waiting thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use parking_lot::{Condvar, Mutex};

use crate::error::StoreError;
use crate::store::InlineDriver;

struct State<T> {
    value: Option<Result<T, StoreError>>,
    waker: Option<Waker>,
}

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

enum Inner<T> {
    Slot(Arc<Slot<T>>),
    Future(BoxFuture<T>),
}

/// The receiving side: a `Future` and a blocking [`Completion::wait`].
#[must_use = "a completion does nothing unless awaited or waited for"]
pub struct Completion<T> {
    inner: Inner<T>,
    /// Inline driving: waiting drives the store.
    driver: Option<Arc<InlineDriver>>,
}

/// The sending side. Dropping it without completing resolves the
/// completion with an error, so no waiter can hang.
pub struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

/// A completer and the completion it resolves.
pub fn pair<T>() -> (Completer<T>, Completion<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            value: None,
            waker: None,
        }),
        ready: Condvar::new(),
    });
    (
        Completer {
            slot: Some(slot.clone()),
        },
        Completion {
            inner: Inner::Slot(slot),
            driver: None,
        },
    )
}

fn fill<T>(slot: &Slot<T>, value: Result<T, StoreError>) {
    let waker = {
        let mut st = slot.state.lock();
        st.value = Some(value);
        st.waker.take()
    };
    slot.ready.notify_all();
    if let Some(w) = waker {
        w.wake();
    }
}

impl<T> Completer<T> {
    pub fn complete(mut self, value: Result<T, StoreError>) {
        if let Some(slot) = self.slot.take() {
            fill(&slot, value);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            fill(
                &slot,
                Err(StoreError::Poisoned(
                    "the request was dropped by the store".into(),
                )),
            );
        }
    }
}

/// Wakes a thread parked in [`Completion::wait`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

impl<T: Send + 'static> Completion<T> {
    /// An already completed value.
    pub fn ready(value: Result<T, StoreError>) -> Completion<T> {
        let (tx, rx) = pair();
        tx.complete(value);
        rx
    }

    /// A completion that is the result of `f`.
    pub(crate) fn from_future(
        f: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Completion<T> {
        Completion {
            inner: Inner::Future(Box::pin(f)),
            driver: None,
        }
    }

    /// Waiting for it drives `d` (inline driving).
    pub(crate) fn driven_by(mut self, d: Arc<InlineDriver>) -> Completion<T> {
        self.driver = Some(d);
        self
    }

    /// Blocks the calling thread until the result is there.
    pub fn wait(mut self) -> Result<T, StoreError> {
        if let Some(d) = self.driver.take() {
            return self.wait_driving(&d);
        }
        if let Inner::Slot(slot) = &self.inner {
            let mut st = slot.state.lock();
            loop {
                if let Some(v) = st.value.take() {
                    return v;
                }
                // No timeout: `fill` sets the value under this lock.
                slot.ready.wait(&mut st);
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(v) = Pin::new(&mut self).poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    /// Polls, driving the store's engines while the result is not there.
    fn wait_driving(mut self, d: &InlineDriver) -> Result<T, StoreError> {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(v) = Pin::new(&mut self).poll(&mut cx) {
                return v;
            }
            if !d.step() {
                // Nothing can move: the store stopped under us.
                if let Some(reason) = d.sh.poisoned() {
                    return Err(StoreError::Poisoned(reason));
                }
                std::thread::yield_now();
            }
        }
    }

    /// True once the result is there (it is not consumed).
    pub fn is_ready(&self) -> bool {
        match &self.inner {
            Inner::Slot(slot) => slot.state.lock().value.is_some(),
            Inner::Future(_) => false,
        }
    }
}

impl<T> Future for Completion<T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            Inner::Slot(slot) => {
                let mut st = slot.state.lock();
                match st.value.take() {
                    Some(v) => Poll::Ready(v),
                    None => {
                        st.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            }
            Inner::Future(f) => f.as_mut().poll(cx),
        }
    }
}

/// The durability acknowledgement of one transaction: resolves to `Ok(())`
/// once the transaction is on stable storage (and visible to reads), or to
/// the reason it was refused or lost.
pub type Commit = Completion<()>;

/// The result of an async read.
pub type ReadFuture<T> = Completion<T>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_await_and_drop() {
        let (tx, rx) = pair::<u32>();
        let t = std::thread::spawn(move || rx.wait());
        tx.complete(Ok(7));
        assert_eq!(t.join().expect("join"), Ok(7));

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let (tx, rx) = pair::<u32>();
        std::thread::spawn(move || tx.complete(Ok(9)));
        assert_eq!(rt.block_on(rx), Ok(9));
        assert!(Completion::<u8>::ready(Ok(1)).is_ready());

        let (tx, rx) = pair::<u32>();
        drop(tx);
        assert!(matches!(rx.wait(), Err(StoreError::Poisoned(_))));

        // A future-backed completion waits for its inner slot, from a
        // thread or an executor.
        let (tx, inner) = pair::<u32>();
        let c = Completion::from_future(async move { inner.await.map(|v| v + 1) });
        let t = std::thread::spawn(move || c.wait());
        std::thread::sleep(std::time::Duration::from_millis(10));
        tx.complete(Ok(41));
        assert_eq!(t.join().expect("join"), Ok(42));
    }
}
