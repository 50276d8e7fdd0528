//! The reader pool behind the `*_async` reads: a bounded queue and a few
//! threads that run blocking reads and complete the caller's future, so
//! async callers never block their executor.

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
    limit: usize,
}

pub(crate) struct ReaderPool {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl ReaderPool {
    pub fn start(sh: Arc<Shared>) -> Result<ReaderPool, StoreError> {
        let inner = Arc::new(Inner {
            q: Mutex::new(Queue {
                jobs: VecDeque::new(),
                stop: false,
            }),
            cv: Condvar::new(),
            limit: sh.settings.max_queued_reads.max(1),
        });
        let mut threads = Vec::new();
        for i in 0..sh.settings.reader_threads.max(1) {
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
        })
    }

    /// Runs `f` on a reader thread.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> ReadFuture<T> {
        let (tx, rx) = pair();
        let mut q = self.inner.q.lock();
        if q.stop {
            return Completion::ready(Err(StoreError::Unmounted));
        }
        if q.jobs.len() >= self.inner.limit {
            return Completion::ready(Err(StoreError::Throttled {
                limit: self.inner.limit,
            }));
        }
        q.jobs.push_back(Box::new(move |sh| tx.complete(f(sh))));
        drop(q);
        self.inner.cv.notify_one();
        rx
    }

    /// Finishes queued reads and stops the threads.
    pub fn stop(&self) {
        self.inner.q.lock().stop = true;
        self.inner.cv.notify_all();
        for h in self.threads.lock().drain(..) {
            let _ = h.join();
        }
    }
}
