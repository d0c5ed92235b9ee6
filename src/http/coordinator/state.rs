//! [`AppState`]: what every coordinator handler shares.

use crate::actors::membership::Membership;
use crate::actors::registry::Tracked;
use crate::actors::scheduler::SchedulerActor;
use crate::db::Db;

/// What every coordinator handler shares. The per-worker `MonitorServerClient` is
/// separate app data (awc clients stay on their thread).
pub struct AppState {
    pub db: Db,
    pub scheduler: Tracked<SchedulerActor>,
    pub membership: Tracked<Membership>,
    /// Networks device addresses may not point into.
    pub policy: crate::probe::AddressPolicy,
    /// What this node's reconciler did while it was master.
    pub reconciled: std::sync::Arc<crate::actors::reconciler::ReconcileStats>,
    /// API tokens checked a moment ago.
    pub tokens: crate::http::token_cache::TokenCache,
    /// What the monitor servers reported of their devices a moment ago.
    pub live: super::live::LiveView,
    /// List answers made a moment ago.
    pub lists: super::lists::ListCache,
    /// This coordinator's worker of the collection queue, and how it works.
    pub queue: Tracked<crate::actors::queue::CollectionQueue>,
    pub queue_settings: crate::actors::queue::QueueSettings,
}
