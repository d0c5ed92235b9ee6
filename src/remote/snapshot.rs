//! [`Snapshot`]: a live look at every monitor server, taken at once.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;

use super::client::{MonitorServerClient, RemoteError, REQUEST_TIMEOUT};
use super::wire::ServerInfo;
use crate::db::models::MonitorServer;

/// Every monitor server's `/info` with its monitors' epochs, fetched concurrently: who
/// is up, and what runs where under which epoch.
pub struct Snapshot {
    pub servers: Vec<MonitorServer>,
    infos: HashMap<i64, Result<ServerInfo, RemoteError>>,
}

impl Snapshot {
    pub async fn take(client: &MonitorServerClient, servers: Vec<MonitorServer>) -> Snapshot {
        Snapshot::take_within(client, servers, REQUEST_TIMEOUT).await
    }

    /// [`Snapshot::take`], a server that does not answer `within` taken as down.
    pub async fn take_within(
        client: &MonitorServerClient,
        servers: Vec<MonitorServer>,
        within: Duration,
    ) -> Snapshot {
        let mut answers = join_all(
            servers
                .iter()
                .map(|server| client.info_with_epochs(server, within)),
        )
        .await;
        for info in answers.iter_mut().flatten() {
            info.device_ids.sort_unstable();
            if let Some(monitors) = &mut info.monitors {
                monitors.sort_unstable_by_key(|m| m.device_id);
            }
        }
        let infos = servers.iter().map(|s| s.id).zip(answers).collect();
        Snapshot { servers, infos }
    }

    pub fn info(&self, server_id: i64) -> Option<&Result<ServerInfo, RemoteError>> {
        self.infos.get(&server_id)
    }

    /// Why a server could not be asked, or `None` when it answered.
    pub fn down_reason(&self, server_id: i64) -> Option<String> {
        match self.infos.get(&server_id) {
            Some(Ok(_)) => None,
            Some(Err(error)) => Some(error.to_string()),
            None => Some("not part of this snapshot".into()),
        }
    }

    /// The servers that report running `device_id`, in id order.
    pub fn holders(&self, device_id: i64) -> Vec<&MonitorServer> {
        self.servers
            .iter()
            .filter(|s| {
                matches!(self.infos.get(&s.id), Some(Ok(info)) if info.device_ids.binary_search(&device_id).is_ok())
            })
            .collect()
    }

    /// The servers that report running `device_id`, in id order, each with the epoch
    /// its copy runs under (`None` from a server too old to say).
    pub fn copies(&self, device_id: i64) -> Vec<(&MonitorServer, Option<i64>)> {
        self.holders(device_id)
            .into_iter()
            .map(|server| {
                let epoch = match self.infos.get(&server.id) {
                    Some(Ok(ServerInfo {
                        monitors: Some(monitors),
                        ..
                    })) => monitors
                        .binary_search_by_key(&device_id, |m| m.device_id)
                        .ok()
                        .map(|i| monitors[i].epoch),
                    _ => None,
                };
                (server, epoch)
            })
            .collect()
    }
}
