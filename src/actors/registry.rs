//! The `ActorRegistry`: every actor registers here when it is created and records each
//! message it handles, so `GET /debug/actors` can show what every actor is doing.
//!
//! actix does not expose the length of a mailbox, so messages are sent through
//! [`Tracked`], which counts what it enqueues; the handler's `record` counts what is
//! taken out. The difference is the mailbox length. One registry per node, passed
//! explicitly to the actors that register; there is no global.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, MailboxError, Message, Recipient};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// How many of an actor's last messages the registry keeps.
const RECENT_MESSAGES: usize = 10;

/// Registered actors by kind and id.
type Entries = BTreeMap<(&'static str, String), Arc<ActorStats>>;

/// The actors of one node.
#[derive(Clone, Default)]
pub struct ActorRegistry {
    actors: Arc<Mutex<Entries>>,
}

impl ActorRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an actor under `kind`/`id`, replacing any earlier entry with that key.
    pub fn register(&self, kind: &'static str, id: impl Into<String>) -> Arc<ActorStats> {
        let stats = Arc::new(ActorStats::new(kind, id.into()));
        lock(&self.actors).insert((kind, stats.id.clone()), Arc::clone(&stats));
        stats
    }

    /// Removes the entry, unless another registration has replaced it meanwhile.
    pub fn unregister(&self, stats: &Arc<ActorStats>) {
        let mut actors = lock(&self.actors);
        let key = (stats.kind, stats.id.clone());
        if actors
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, stats))
        {
            actors.remove(&key);
        }
    }

    /// What every registered actor is doing now, ordered by kind and id.
    pub fn snapshot(&self) -> Vec<ActorSnapshot> {
        let actors: Vec<Arc<ActorStats>> = lock(&self.actors).values().cloned().collect();
        actors.iter().map(|stats| stats.snapshot()).collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.actors).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A poisoned lock only means another thread panicked while counting; the counts
/// are still usable, so take them.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The counters of one actor.
pub struct ActorStats {
    kind: &'static str,
    id: String,
    registered_at: DateTime<Utc>,
    /// Messages enqueued through [`Tracked`]; the mailbox length is this minus `taken`.
    enqueued: AtomicU64,
    taken: AtomicU64,
    handled: Mutex<Handled>,
}

#[derive(Default)]
struct Handled {
    by_type: BTreeMap<&'static str, u64>,
    recent: VecDeque<(&'static str, DateTime<Utc>)>,
}

impl ActorStats {
    fn new(kind: &'static str, id: String) -> Self {
        ActorStats {
            kind,
            id,
            registered_at: Utc::now(),
            enqueued: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            handled: Mutex::new(Handled::default()),
        }
    }

    /// Called by a handler as it takes message `M` from the mailbox.
    pub fn record<M>(&self) {
        self.taken.fetch_add(1, Ordering::Relaxed);
        self.count(short_type_name::<M>());
    }

    /// Called by a handler of a message the actor scheduled for itself (a timer), which
    /// never went through the mailbox.
    pub fn record_timer<M>(&self) {
        self.count(short_type_name::<M>());
    }

    fn count(&self, name: &'static str) {
        let mut handled = lock(&self.handled);
        *handled.by_type.entry(name).or_insert(0) += 1;
        if handled.recent.len() == RECENT_MESSAGES {
            handled.recent.pop_front();
        }
        handled.recent.push_back((name, Utc::now()));
    }

    /// Forgets what was enqueued and never taken: the actor behind these stats was
    /// replaced (a supervisor restart) and its mailbox went with it.
    pub fn reset_mailbox(&self) {
        self.taken
            .store(self.enqueued.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub fn mailbox_len(&self) -> u64 {
        self.enqueued
            .load(Ordering::Relaxed)
            .saturating_sub(self.taken.load(Ordering::Relaxed))
    }

    fn snapshot(&self) -> ActorSnapshot {
        let handled = lock(&self.handled);
        ActorSnapshot {
            kind: self.kind,
            id: self.id.clone(),
            registered_at: self.registered_at,
            mailbox_len: self.mailbox_len(),
            handled: handled.by_type.clone(),
            recent: handled
                .recent
                .iter()
                .rev()
                .map(|(message, at)| RecentMessage { message, at: *at })
                .collect(),
        }
    }
}

/// `vigil::actors::scheduler::StartDevices` → `StartDevices`.
fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// One actor as `GET /debug/actors` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ActorSnapshot {
    pub kind: &'static str,
    pub id: String,
    pub registered_at: DateTime<Utc>,
    pub mailbox_len: u64,
    pub handled: BTreeMap<&'static str, u64>,
    /// Newest first.
    pub recent: Vec<RecentMessage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecentMessage {
    pub message: &'static str,
    pub at: DateTime<Utc>,
}

/// An actor's address that counts what it enqueues. Send every message through this.
pub struct Tracked<A: Actor> {
    addr: Addr<A>,
    stats: Arc<ActorStats>,
}

impl<A: Actor> Clone for Tracked<A> {
    fn clone(&self) -> Self {
        Tracked {
            addr: self.addr.clone(),
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<A: Actor> Tracked<A> {
    pub fn new(addr: Addr<A>, stats: Arc<ActorStats>) -> Self {
        Tracked { addr, stats }
    }

    /// Sends a message and waits for the answer.
    pub async fn send<M>(&self, message: M) -> Result<M::Result, MailboxError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        let answer = self.addr.send(message).await;
        if answer.is_err() {
            // Never handled: the actor was gone. Don't leave it counted as queued.
            self.stats.taken.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    /// A recipient of `M` for callers that know only the message, counting what it
    /// enqueues in this actor's figures as this address does.
    pub fn recipient<M>(&self) -> TrackedRecipient<M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        TrackedRecipient {
            recipient: self.addr.clone().recipient(),
            stats: Arc::clone(&self.stats),
        }
    }

    /// Sends a message without waiting for an answer.
    pub fn do_send<M>(&self, message: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        if self.addr.connected() {
            self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
            self.addr.do_send(message);
        }
    }
}

/// A recipient of one message type that counts what it enqueues, as [`Tracked`] does:
/// what an actor holds of another whose type it does not know.
pub struct TrackedRecipient<M>
where
    M: Message + Send,
    M::Result: Send,
{
    recipient: Recipient<M>,
    stats: Arc<ActorStats>,
}

impl<M> Clone for TrackedRecipient<M>
where
    M: Message + Send,
    M::Result: Send,
{
    fn clone(&self) -> Self {
        TrackedRecipient {
            recipient: self.recipient.clone(),
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<M> TrackedRecipient<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    /// Sends a message and waits for the answer.
    pub async fn send(&self, message: M) -> Result<M::Result, MailboxError> {
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        let answer = self.recipient.send(message).await;
        if answer.is_err() {
            self.stats.taken.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    /// Sends a message without waiting for an answer.
    pub fn do_send(&self, message: M) {
        if self.recipient.connected() {
            self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
            self.recipient.do_send(message);
        }
    }

    /// The actor behind it still runs.
    pub fn connected(&self) -> bool {
        self.recipient.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Ping;

    #[test]
    fn short_names_drop_paths_and_generics() {
        assert_eq!(short_type_name::<Ping>(), "Ping");
        assert_eq!(short_type_name::<Option<Ping>>(), "Option");
    }

    #[test]
    fn unregister_leaves_a_newer_registration_alone() {
        let registry = ActorRegistry::new();
        let old = registry.register("DeviceMonitor", "7");
        let new = registry.register("DeviceMonitor", "7");
        registry.unregister(&old);
        assert_eq!(registry.len(), 1);
        registry.unregister(&new);
        assert!(registry.is_empty());
    }

    #[test]
    fn snapshot_keeps_the_last_messages_newest_first() {
        let registry = ActorRegistry::new();
        let stats = registry.register("Counter", "1");
        for _ in 0..(RECENT_MESSAGES + 5) {
            stats.record::<Ping>();
        }
        let snapshot = registry.snapshot();
        assert_eq!(snapshot.len(), 1);
        assert_eq!(
            snapshot[0].handled.get("Ping"),
            Some(&((RECENT_MESSAGES + 5) as u64))
        );
        assert_eq!(snapshot[0].recent.len(), RECENT_MESSAGES);
        assert!(snapshot[0].recent[0].at >= snapshot[0].recent[RECENT_MESSAGES - 1].at);
    }

    #[test]
    fn mailbox_length_is_enqueued_minus_taken() {
        let stats = ActorStats::new("Counter", "1".into());
        stats.enqueued.fetch_add(3, Ordering::Relaxed);
        stats.record::<Ping>();
        assert_eq!(stats.mailbox_len(), 2);
        stats.reset_mailbox();
        assert_eq!(stats.mailbox_len(), 0);
    }
}
