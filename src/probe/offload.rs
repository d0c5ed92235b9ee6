//! CPU work kept off the poll threads' event loops (reading an exposition of up to
//! 8 MiB), on a pool of threads of its own, one per core, that takes its jobs and
//! hands their results back in batches.
//!
//! tokio's blocking pool did this job before: it woke one of its threads for every
//! job and the job's poll thread for every result, two context switches a poll of a
//! node_exporter, which on a VM cost as much as reading the body. Here a thread takes
//! every job waiting when it wakes and answers them together once all are done, so
//! the polls that fire on one tick (see `actors::device_monitor`) wake it and their
//! poll thread about once between them.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use tokio::sync::oneshot;

/// Jobs a thread takes at one wake-up at most, answered together: a large body does
/// not hold up more than these, and a long queue is shared out between threads.
const JOBS_PER_WAKE: usize = 64;

/// What is left to do once a job has run: send its result.
type Answer = Box<dyn FnOnce() + Send>;
type Job = Box<dyn FnOnce() -> Option<Answer> + Send>;

struct Pool {
    /// Jobs given and not taken yet.
    jobs: Mutex<VecDeque<Job>>,
    /// Signalled when jobs wait and no thread may be awake to take them.
    ready: Condvar,
    /// Threads started; with none, every job runs where it is given.
    threads: AtomicUsize,
}

/// The job panicked; its result is lost (the pool's thread goes on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

/// Runs `job` on the pool; the answer comes back on the caller's thread.
pub async fn run<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Panicked> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        // The caller gave up (its poll timed out): nobody wants the result.
        if tx.is_closed() {
            return None;
        }
        let out = match catch_unwind(AssertUnwindSafe(job)) {
            Ok(out) => out,
            Err(_) => {
                tracing::error!("a document reader panicked; its poll fails");
                return None;
            }
        };
        Some(Box::new(move || {
            // The caller may have given up (its poll timed out).
            let _ = tx.send(out);
        }))
    });
    let pool = pool();
    if pool.threads.load(Ordering::Relaxed) == 0 {
        if let Some(answer) = job() {
            answer();
        }
    } else {
        let was_idle = {
            let mut jobs = pool.lock();
            jobs.push_back(job);
            jobs.len() == 1
        };
        // A non-empty queue has had its wake-up: a thread takes all of it.
        if was_idle {
            pool.ready.notify_one();
        }
    }
    rx.await.map_err(|_| Panicked)
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Job>> {
        // Jobs run outside the lock: a poisoned queue is whole.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn work(&self) {
        loop {
            let jobs: Vec<Job> = {
                let mut jobs = self.lock();
                while jobs.is_empty() {
                    jobs = self.ready.wait(jobs).unwrap_or_else(|p| p.into_inner());
                }
                let take = jobs.len().min(JOBS_PER_WAKE);
                let taken: Vec<Job> = jobs.drain(..take).collect();
                // More than one thread's share: another thread takes the rest.
                if !jobs.is_empty() {
                    self.ready.notify_one();
                }
                taken
            };
            let answers: Vec<Answer> = jobs.into_iter().filter_map(|job| job()).collect();
            for answer in answers {
                answer();
            }
        }
    }
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        // Leaked on purpose: its threads live as long as the process.
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            jobs: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            threads: AtomicUsize::new(0),
        }));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for _ in 0..cores {
            let spawned = std::thread::Builder::new()
                .name("vigil-offload".into())
                .spawn(|| pool.work());
            match spawned {
                Ok(_) => {
                    pool.threads.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::error!(%error, "cannot start a thread to read documents on");
                }
            }
        }
        pool
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn jobs_answer_on_the_callers_thread_and_a_panic_loses_only_its_own() {
        let caller = std::thread::current().id();
        let worked_on = run(|| std::thread::current().id()).await;
        assert!(worked_on.is_ok_and(|id| id != caller));
        let all = futures_util::future::join_all((0..100).map(|n| run(move || n * 2))).await;
        assert_eq!(all, (0..100).map(|n| Ok(n * 2)).collect::<Vec<_>>());
        assert_eq!(
            run(|| -> u32 { panic!("a reader's bug") }).await,
            Err(Panicked)
        );
        assert_eq!(run(|| 7).await, Ok(7));
        assert_eq!(std::thread::current().id(), caller);
    }
}
