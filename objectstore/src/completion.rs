//! A one-shot result that can be awaited (any executor) or waited for
//! (blocking): the shape of [`Commit`] and of the async reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

use crate::error::StoreError;

struct State<T> {
    value: Option<Result<T, StoreError>>,
    waker: Option<Waker>,
}

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

/// The receiving side: a `Future` and a blocking [`Completion::wait`].
#[must_use = "a completion does nothing unless awaited or waited for"]
pub struct Completion<T> {
    slot: Arc<Slot<T>>,
}

/// The sending side. Dropping it without completing resolves the
/// completion with an error, so no waiter can hang.
pub(crate) struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

pub(crate) fn pair<T>() -> (Completer<T>, Completion<T>) {
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
        Completion { slot },
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

impl<T> Completion<T> {
    /// An already completed value.
    pub fn ready(value: Result<T, StoreError>) -> Completion<T> {
        let (tx, rx) = pair();
        tx.complete(value);
        rx
    }

    /// Blocks the calling thread until the result is there.
    pub fn wait(self) -> Result<T, StoreError> {
        let mut st = self.slot.state.lock();
        loop {
            if let Some(v) = st.value.take() {
                return v;
            }
            self.slot.ready.wait(&mut st);
        }
    }

    /// True once the result is there (it is not consumed).
    pub fn is_ready(&self) -> bool {
        self.slot.state.lock().value.is_some()
    }
}

impl<T> Future for Completion<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.slot.state.lock();
        match st.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
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
    }
}
