//! `SampleQueue`: how the samples of a node's monitors reach its `MetricsWriter`. A
//! monitor pushes its sample under a lock; the writer takes everything waiting at
//! once, at its flush ticks and when told that a batch is waiting. A message per poll
//! woke the writer's thread at every poll: at thousands of polls a second that
//! wake-up cost more than storing the sample.

use std::sync::{Mutex, OnceLock};

use actix::Recipient;

use super::messages::{Sample, SamplesWaiting};

#[derive(Default)]
pub struct SampleQueue {
    waiting: Mutex<Vec<Sample>>,
    /// The writer and its batch size: told once a batch is waiting. Set by the writer
    /// as it starts; until then samples only wait.
    writer: OnceLock<(Recipient<SamplesWaiting>, usize)>,
}

impl SampleQueue {
    pub fn new() -> Self {
        SampleQueue::default()
    }

    /// Tells `writer` each time `batch` samples are waiting.
    pub fn attach(&self, writer: Recipient<SamplesWaiting>, batch: usize) {
        let _ = self.writer.set((writer, batch.max(1)));
    }

    pub fn push(&self, sample: Sample) {
        let waiting = {
            let mut queue = self.lock();
            queue.push(sample);
            queue.len()
        };
        if let Some((writer, batch)) = self.writer.get() {
            // Once per batch, not at every sample past it: the writer takes them all.
            if waiting == *batch {
                writer.do_send(SamplesWaiting);
            }
        }
    }

    /// Everything waiting, oldest first.
    pub fn take(&self) -> Vec<Sample> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sample>> {
        // A push or a take cannot leave the list half-changed: a poisoned lock's list
        // is whole.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}
