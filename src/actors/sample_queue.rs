//! `SampleQueue`: how the samples of a node's monitors reach its `MetricsWriter`. A
//! monitor pushes its sample under a lock; the writer takes everything waiting at
//! once, at its flush ticks and when told that a batch is waiting. A message per poll
//! woke the writer's thread at every poll: at thousands of polls a second that
//! wake-up cost more than storing the sample.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};

use actix::Recipient;

use super::messages::{Sample, SamplesWaiting};

#[derive(Default)]
pub struct SampleQueue {
    /// The samples pushed since the writer last took them.
    waiting: Mutex<Waiting>,
    /// The writer, its batch size and the most readings to hold for it: told once a
    /// batch is waiting. Set by the writer as it starts; until then samples only wait.
    writer: OnceLock<Attached>,
}

struct Attached {
    writer: Recipient<SamplesWaiting>,
    batch: usize,
    max_readings: usize,
}

#[derive(Default)]
struct Waiting {
    samples: VecDeque<Sample>,
    readings: usize,
    /// Samples dropped for want of room since the writer last took the queue.
    dropped: u64,
    /// The writer was found gone, and said so.
    writer_gone: bool,
}

/// What the writer takes: the samples, oldest first, and how many were dropped since
/// it last took them.
pub struct Taken {
    pub samples: Vec<Sample>,
    pub dropped: u64,
}

impl SampleQueue {
    pub fn new() -> Self {
        SampleQueue::default()
    }

    /// Tells `writer` each time `batch` samples are waiting, and holds `max_readings`
    /// readings at most for it (the oldest samples dropped past it), which bounds the
    /// queue should the writer stop taking it. A second writer is refused.
    pub fn attach(
        &self,
        writer: Recipient<SamplesWaiting>,
        batch: usize,
        max_readings: usize,
    ) -> bool {
        self.writer
            .set(Attached {
                writer,
                batch: batch.max(1),
                max_readings,
            })
            .is_ok()
    }

    pub fn push(&self, sample: Sample) {
        let mut waiting = self.lock();
        waiting.readings += sample.len();
        waiting.samples.push_back(sample);
        let Some(attached) = self.writer.get() else {
            return;
        };
        while waiting.readings > attached.max_readings && waiting.samples.len() > 1 {
            if let Some(oldest) = waiting.samples.pop_front() {
                waiting.readings -= oldest.len();
                waiting.dropped += 1;
            }
        }
        // Once per batch, not at every sample past it: the writer takes them all.
        if waiting.samples.len() == attached.batch {
            if attached.writer.connected() {
                attached.writer.do_send(SamplesWaiting);
            } else if !waiting.writer_gone {
                waiting.writer_gone = true;
                tracing::error!(
                    "the metrics writer has stopped: samples wait for it, the oldest dropped"
                );
            }
        }
    }

    /// Everything waiting, oldest first.
    pub fn take(&self) -> Taken {
        let mut waiting = self.lock();
        waiting.readings = 0;
        Taken {
            samples: std::mem::take(&mut waiting.samples).into(),
            dropped: std::mem::take(&mut waiting.dropped),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // A push or a take cannot leave the list half-changed: a poisoned lock's list
        // is whole.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Metrics;
    use actix::prelude::*;
    use chrono::Utc;

    struct Nobody;
    impl Actor for Nobody {
        type Context = Context<Self>;
    }
    impl Handler<SamplesWaiting> for Nobody {
        type Result = ();
        fn handle(&mut self, _: SamplesWaiting, _: &mut Context<Self>) {}
    }

    fn sample(n: i64) -> Sample {
        Sample {
            device_id: n,
            epoch: 1,
            at: Utc::now(),
            metrics: [("up".to_string(), 1.0), ("x".to_string(), 2.0)]
                .into_iter()
                .collect::<Metrics>(),
            raw: None,
        }
    }

    #[actix_rt::test]
    async fn a_queue_no_writer_takes_keeps_its_newest_readings_and_counts_the_rest() {
        let queue = SampleQueue::new();
        let writer = Nobody.start();
        assert!(queue.attach(writer.clone().recipient(), 3, 10));
        assert!(!queue.attach(writer.recipient(), 3, 10), "one writer");
        for n in 0..20 {
            queue.push(sample(n));
        }
        let taken = queue.take();
        let kept: Vec<i64> = taken.samples.iter().map(|s| s.device_id).collect();
        assert_eq!(kept, [15, 16, 17, 18, 19], "ten readings, the newest");
        assert_eq!(taken.dropped, 15);
        assert_eq!(queue.take().dropped, 0);
    }
}
