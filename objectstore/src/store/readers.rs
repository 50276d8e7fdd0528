//! The reader pool behind the `*_async` reads: a bounded queue and a few
//! threads that run blocking reads and complete the caller's future, so
//! async callers never block their executor. Beyond `max_queued_reads`
//! reads in the pool, a read waits for room before it is queued.
//!
//! With `Drive::Caller` the pool has no thread: a read runs on the calling
//! thread when it is asked for (the simulator's store is in memory).

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use super::Shared;
use crate::completion::{pair, Completion, ReadFuture};
use crate::error::StoreError;

type Job = Box<dyn FnOnce(&Shared) + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    stop: bool,
}

struct Inner {
    q: Mutex<Queue>,
    cv: Condvar,
    /// Reads queued or running, at most `max_queued_reads`.
    room: Arc<tokio::sync::Semaphore>,
}

pub(crate) struct ReaderPool {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Reads run on the caller's thread (`Drive::Caller`).
    inline: Option<Arc<Shared>>,
}

impl ReaderPool {
    pub fn start(sh: Arc<Shared>) -> Result<ReaderPool, StoreError> {
        let inline = sh.settings.drive == crate::Drive::Caller;
        let inner = Arc::new(Inner {
            q: Mutex::new(Queue {
                jobs: VecDeque::new(),
                stop: false,
            }),
            cv: Condvar::new(),
            room: Arc::new(tokio::sync::Semaphore::new(
                sh.settings.max_queued_reads.max(1),
            )),
        });
        let mut threads = Vec::new();
        let count = if inline {
            0
        } else {
            sh.settings.reader_threads.max(1)
        };
        for i in 0..count {
            let (inner, sh) = (inner.clone(), sh.clone());
            let h = std::thread::Builder::new()
                .name(format!("kalmar-os-read{i}"))
                .spawn(move || loop {
                    let job = {
                        let mut q = inner.q.lock();
                        loop {
                            if let Some(j) = q.jobs.pop_front() {
                                break j;
                            }
                            if q.stop {
                                return;
                            }
                            inner.cv.wait(&mut q);
                        }
                    };
                    job(&sh);
                })
                .map_err(|e| StoreError::Poisoned(format!("cannot start a reader thread: {e}")))?;
            threads.push(h);
        }
        Ok(ReaderPool {
            inner,
            threads: Mutex::new(threads),
            inline: inline.then_some(sh),
        })
    }

    /// Runs `f` on a reader thread.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> ReadFuture<T> {
        if let Some(sh) = &self.inline {
            if self.inner.q.lock().stop {
                return Completion::ready(Err(StoreError::Unmounted));
            }
            return Completion::ready(f(sh));
        }
        let (tx, rx) = pair();
        let inner = self.inner.clone();
        let enqueue = move |permit: tokio::sync::OwnedSemaphorePermit| -> bool {
            let mut q = inner.q.lock();
            if q.stop {
                return false;
            }
            q.jobs.push_back(Box::new(move |sh| {
                tx.complete(f(sh));
                drop(permit);
            }));
            drop(q);
            inner.cv.notify_one();
            true
        };
        match self.inner.room.clone().try_acquire_owned() {
            Ok(permit) => {
                if enqueue(permit) {
                    rx
                } else {
                    Completion::ready(Err(StoreError::Unmounted))
                }
            }
            Err(_) => {
                let room = self.inner.room.clone();
                Completion::from_future(async move {
                    let permit = room
                        .acquire_owned()
                        .await
                        .map_err(|_| StoreError::Unmounted)?;
                    if !enqueue(permit) {
                        return Err(StoreError::Unmounted);
                    }
                    rx.await
                })
            }
        }
    }

    /// Finishes queued reads and stops the threads.
    pub fn stop(&self) {
        self.inner.q.lock().stop = true;
        self.inner.room.close();
        self.inner.cv.notify_all();
        for h in self.threads.lock().drain(..) {
            let _ = h.join();
        }
    }
}
