//! What the monitor servers report, read for the API: the monitoring of devices
//! ([`monitoring_of`]) and the load of each server ([`server_views`]), with what they
//! answered a moment ago kept in a [`LiveView`]. Every device read asks the owning
//! servers for the statuses of its devices; under load many requests a second ask for
//! the same ones. An answer about a device is reused for [`FRESH_FOR`] while the
//! device's assignment still names the same server under the same epoch, so a start, a
//! stop or a move (each changes the assignment) shows at once, from whichever
//! coordinator or failover made it; health, last result and counters may be up to
//! [`FRESH_FOR`] old. A server's load is reused as long, and forgotten by any change
//! made through this coordinator's API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::QueryResult;
use futures_util::future::join_all;

use super::views::{MonitorServerView, Monitoring, ServerLoad};
use crate::db::models::MonitorServer;
use crate::db::{self, DbConn};
use crate::remote::MonitorServerClient;

/// How long a server's answer about a device is reused.
pub const FRESH_FOR: Duration = Duration::from_millis(500);

/// Devices remembered at most; past it, stale ones go, and if that is not enough, all.
const MAX_ENTRIES: usize = 200_000;

/// A device's owner as its assignment names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub device_id: i64,
    pub server_id: i64,
    pub epoch: i64,
}

#[derive(Default)]
pub struct LiveView {
    seen: Mutex<HashMap<i64, Seen>>,
    /// By server: how many monitors it ran and its limit, and when it said so.
    loads: Mutex<HashMap<i64, (ServerLoad, Instant)>>,
}

/// What `owner`'s server answered about the device when asked at `at`: its monitoring,
/// or `None` when it did not run the device.
struct Seen {
    owner: Owner,
    monitoring: Option<Monitoring>,
    at: Instant,
}

impl LiveView {
    /// Of `owners`, what is known fresh at `now` (`None`: known not to run), and the
    /// owners whose servers must be asked.
    pub fn recall(
        &self,
        owners: Vec<Owner>,
        now: Instant,
    ) -> (HashMap<i64, Option<Monitoring>>, Vec<Owner>) {
        let Ok(seen) = self.seen.lock() else {
            return (HashMap::new(), owners);
        };
        let mut known = HashMap::new();
        let mut ask = Vec::new();
        for owner in owners {
            match seen.get(&owner.device_id) {
                Some(s) if s.owner == owner && now.saturating_duration_since(s.at) < FRESH_FOR => {
                    known.insert(owner.device_id, s.monitoring.clone());
                }
                _ => ask.push(owner),
            }
        }
        (known, ask)
    }

    /// Keeps what the servers asked at `at` answered about `asked` (a device missing
    /// from `answers` did not run there). Only servers that answered are given here.
    pub fn remember(&self, asked: &[Owner], answers: &HashMap<i64, Monitoring>, at: Instant) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.len() + asked.len() > MAX_ENTRIES {
            seen.retain(|_, s| at.saturating_duration_since(s.at) < FRESH_FOR);
            if seen.len() + asked.len() > MAX_ENTRIES {
                seen.clear();
            }
        }
        for owner in asked {
            seen.insert(
                owner.device_id,
                Seen {
                    owner: *owner,
                    monitoring: answers.get(&owner.device_id).cloned(),
                    at,
                },
            );
        }
    }
}

impl LiveView {
    /// What `server_id` said of its load less than [`FRESH_FOR`] before `now`.
    pub fn load(&self, server_id: i64, now: Instant) -> Option<ServerLoad> {
        let loads = self.loads.lock().ok()?;
        let (load, at) = loads.get(&server_id)?;
        (now.saturating_duration_since(*at) < FRESH_FOR).then_some(*load)
    }

    /// Forgets every server's load: a change made through this coordinator (a start, a
    /// stop, a new limit) shows in the next read.
    pub fn forget_loads(&self) {
        if let Ok(mut loads) = self.loads.lock() {
            loads.clear();
        }
    }

    /// Keeps what `server_id`, asked at `at`, said of its load. A server that did not
    /// answer is not remembered: the next read asks it again.
    pub fn remember_load(&self, server_id: i64, load: ServerLoad, at: Instant) {
        if let Ok(mut loads) = self.loads.lock() {
            loads.insert(server_id, (load, at));
        }
    }
}

/// What a device read needs from the database besides the devices: who owns them, and
/// the servers to ask.
pub struct Owners {
    owned: Vec<Owner>,
    servers: Vec<MonitorServer>,
}

impl Owners {
    /// Reads the owners of `device_ids` (on the caller's connection, so that a handler
    /// reads its devices and their owners in one trip to the database).
    pub fn read(conn: &mut DbConn, device_ids: &[i64]) -> QueryResult<Owners> {
        let assignments = db::assignments::of_devices(conn, device_ids)?;
        Owners::of(
            conn,
            assignments
                .into_iter()
                .map(|a| (a.device_id, a.server_id, a.epoch)),
        )
    }

    /// The owners named by `(device, server, epoch)` triples already read, with the
    /// servers read now.
    pub fn of(
        conn: &mut DbConn,
        owners: impl IntoIterator<Item = (i64, Option<i64>, i64)>,
    ) -> QueryResult<Owners> {
        Ok(Owners {
            owned: owners
                .into_iter()
                .filter_map(|(device_id, server_id, epoch)| {
                    Some(Owner {
                        device_id,
                        server_id: server_id?,
                        epoch,
                    })
                })
                .collect(),
            servers: db::monitor_servers::list(conn)?,
        })
    }
}

/// The monitoring of the devices `owners` names: what `live` knows fresh, and for the
/// rest each owning server asked once; a device whose owner does not run it (or cannot
/// be reached) has no entry.
pub async fn monitoring_of(
    client: &MonitorServerClient,
    live: &LiveView,
    owners: Owners,
) -> HashMap<i64, Monitoring> {
    let asked_at = Instant::now();
    let (known, ask) = live.recall(owners.owned, asked_at);
    let mut monitoring: HashMap<i64, Monitoring> = known
        .into_iter()
        .filter_map(|(device_id, m)| Some((device_id, m?)))
        .collect();
    let mut by_server: HashMap<i64, Vec<Owner>> = HashMap::new();
    for owner in ask {
        by_server.entry(owner.server_id).or_default().push(owner);
    }
    let queries = owners
        .servers
        .iter()
        .filter_map(|server| by_server.get(&server.id).map(|asked| (server, asked)))
        .map(|(server, asked)| async move {
            let ids: Vec<i64> = asked.iter().map(|o| o.device_id).collect();
            (server.id, asked, client.statuses(server, &ids).await)
        });
    for (server_id, asked, answer) in join_all(queries).await {
        let statuses = match answer {
            Ok(statuses) => statuses,
            Err(error) => {
                // Its devices show `monitoring: null`: nothing can be said of them now.
                tracing::warn!(server.id = server_id, %error, "cannot read monitor statuses");
                continue;
            }
        };
        let answered: HashMap<i64, Monitoring> = statuses
            .into_iter()
            .map(|status| {
                let monitoring = Monitoring {
                    server_id,
                    epoch: status.epoch,
                    state: status.state,
                    last_result: status.last_result,
                    polls: status.polls,
                    failures: status.failures,
                    restarts: status.restarts,
                    started_at: status.started_at,
                };
                (status.device.id, monitoring)
            })
            .collect();
        live.remember(asked, &answered, asked_at);
        monitoring.extend(answered);
    }
    monitoring
}

/// Every given server with its live status: what `live` knows fresh, the others asked
/// concurrently (a server that does not answer is down).
pub async fn server_views(
    client: &MonitorServerClient,
    live: &LiveView,
    servers: Vec<MonitorServer>,
) -> Vec<MonitorServerView> {
    let asked_at = Instant::now();
    let loads = join_all(servers.iter().map(|server| async move {
        if let Some(load) = live.load(server.id, asked_at) {
            return Some(load);
        }
        match client.load(server).await {
            Ok(info) => {
                let load = ServerLoad {
                    running_monitors: info.running_monitors,
                    max_monitors: info.max_monitors,
                };
                live.remember_load(server.id, load, asked_at);
                Some(load)
            }
            Err(error) => {
                tracing::debug!(server.id = server.id, %error, "monitor server down");
                None
            }
        }
    }))
    .await;
    servers
        .iter()
        .zip(loads)
        .map(|(server, load)| MonitorServerView::new(server, load))
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::HealthState;

    fn owner(device_id: i64, server_id: i64, epoch: i64) -> Owner {
        Owner {
            device_id,
            server_id,
            epoch,
        }
    }

    fn monitoring(server_id: i64, epoch: i64, polls: u64) -> Monitoring {
        Monitoring {
            server_id,
            epoch,
            state: HealthState::Normal,
            last_result: None,
            polls,
            failures: 0,
            restarts: 0,
            started_at: Utc::now(),
        }
    }

    #[test]
    fn an_answer_is_reused_while_fresh_and_the_owner_unchanged() {
        let live = LiveView::default();
        let now = Instant::now();
        let asked = [owner(1, 10, 3), owner(2, 10, 5)];
        let answers = HashMap::from([(1, monitoring(10, 3, 7))]);
        live.remember(&asked, &answers, now);

        let (known, ask) = live.recall(asked.to_vec(), now + FRESH_FOR / 2);
        assert!(ask.is_empty(), "{ask:?}");
        assert_eq!(known[&1].as_ref().map(|m| m.polls), Some(7));
        // Device 2 was asked and did not run there: known as not running.
        assert!(known[&2].is_none());

        // Past FRESH_FOR, both are asked again.
        let (known, ask) = live.recall(asked.to_vec(), now + FRESH_FOR);
        assert!(known.is_empty());
        assert_eq!(ask, asked.to_vec());
    }

    #[test]
    fn a_new_epoch_or_owner_is_asked_at_once() {
        let live = LiveView::default();
        let now = Instant::now();
        live.remember(
            &[owner(1, 10, 3), owner(2, 10, 5)],
            &HashMap::from([(1, monitoring(10, 3, 7)), (2, monitoring(10, 5, 1))]),
            now,
        );
        // Device 1 was restarted (new epoch), device 2 moved to server 11.
        let now_owned = vec![owner(1, 10, 4), owner(2, 11, 6), owner(3, 10, 1)];
        let (known, ask) = live.recall(now_owned.clone(), now);
        assert!(known.is_empty(), "{:?}", known.keys());
        assert_eq!(ask, now_owned);
    }

    #[test]
    fn a_servers_load_is_reused_while_fresh() {
        let live = LiveView::default();
        let now = Instant::now();
        let load = ServerLoad {
            running_monitors: 3,
            max_monitors: 10,
        };
        assert_eq!(live.load(1, now), None);
        live.remember_load(1, load, now);
        assert_eq!(live.load(1, now + FRESH_FOR / 2), Some(load));
        assert_eq!(live.load(1, now + FRESH_FOR), None);
        assert_eq!(live.load(2, now), None);
        live.remember_load(1, load, now);
        live.forget_loads();
        assert_eq!(live.load(1, now), None);
    }

    #[test]
    fn the_view_stays_within_its_bound() {
        let live = LiveView::default();
        let start = Instant::now();
        let many: Vec<Owner> = (0..MAX_ENTRIES as i64).map(|d| owner(d, 1, 1)).collect();
        live.remember(&many, &HashMap::new(), start);
        // All stale by then: they make room.
        let later = start + FRESH_FOR;
        live.remember(&[owner(-1, 1, 1)], &HashMap::new(), later);
        assert_eq!(live.seen.lock().unwrap().len(), 1);
        // None stale: the view starts over rather than grow past its bound.
        live.remember(&many, &HashMap::new(), later);
        assert_eq!(live.seen.lock().unwrap().len(), MAX_ENTRIES);
        live.remember(&[owner(-2, 1, 1)], &HashMap::new(), later);
        assert_eq!(live.seen.lock().unwrap().len(), 1);
    }
}
