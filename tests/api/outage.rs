//! PostgreSQL restarted under a running cluster of real processes: the nodes log, retry
//! (with backoff and jitter), and resume on their own; no node is judged dead for the
//! database's absence; what the API acknowledged before is still there, and what it
//! refused during the outage it said so (503).
//!
//! The restart needs a PostgreSQL server of the test's own (restarting the shared one
//! would break the tests running beside it): `initdb` in a scratch directory, run as the
//! `postgres` user with `runuser`, on a free port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{call, eventually, TestFleet};
use crate::processes::{
    admin_client, coordinator_process, fast_membership, monitor_server_process, start_company_of,
};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL server of this test's own; stopped and removed on drop.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// A fresh server, or `None` (with the reason) where one cannot be made here.
    fn start() -> Result<PrivatePostgres, String> {
        if !Path::new(BIN).join("initdb").exists() {
            return Err(format!("{BIN}/initdb is not installed"));
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&root.stdout).trim() != "0" {
            return Err(
                "initdb must run as the postgres user, and only root can switch to it".into(),
            );
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        run("chown", &["postgres", &dir.path().display().to_string()])?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let data = data_dir(dir.path());
        as_postgres(
            &format!("{BIN}/initdb"),
            &["-D", &data, "-A", "trust", "-U", "postgres"],
        )?;
        let server = PrivatePostgres { dir, port };
        server.pg_ctl("start")?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, action: &str) -> Result<(), String> {
        let data = data_dir(self.dir.path());
        let log = self.dir.path().join("postgres.log").display().to_string();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec!["-D", &data, "-w", "-t", "30", "-l", &log, "-o", &options];
        if action == "stop" {
            args.extend(["-m", "fast"]);
        }
        args.push(action);
        as_postgres(&format!("{BIN}/pg_ctl"), &args)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl("stop");
    }
}

fn data_dir(dir: &Path) -> String {
    PathBuf::from(dir).join("data").display().to_string()
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn as_postgres(program: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["-u", "postgres", "--", program];
    all.extend_from_slice(args);
    run("runuser", &all)
}

/// The node ids of the cluster and whether each is live, as the coordinator sees them.
async fn nodes(http: &awc::Client, api: &str) -> Option<Vec<(i64, bool)>> {
    let view = call(http, Method::GET, &format!("{api}/cluster"), None).await;
    if view.status != StatusCode::OK {
        return None;
    }
    let mut nodes: Vec<(i64, bool)> = view.body["nodes"]
        .as_array()?
        .iter()
        .map(|n| (n["id"].as_i64().unwrap_or(0), n["live"] == true))
        .collect();
    nodes.sort_unstable();
    Some(nodes)
}

#[actix_rt::test]
async fn the_cluster_rides_out_a_postgresql_restart() {
    let pg = match PrivatePostgres::start() {
        Ok(pg) => pg,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but no private PostgreSQL can be started: {why}")
        }
        Err(why) => {
            let line =
                format!("skipped outage::the_cluster_rides_out_a_postgresql_restart: {why}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            return;
        }
    };
    let db = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let http = admin_client(&db, dir.path());
    let fleet = TestFleet::calm(2);
    let (mut coordinator, api) = coordinator_process(&db, dir.path()).await;
    fast_membership(&http, &api).await;
    // Polls (and so writes) all through the outage, whatever its phase.
    let fast_polls = json!({"poll_interval_ms": 200});
    let answer = call(
        &http,
        Method::PUT,
        &format!("{api}/config"),
        Some(fast_polls),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let mut servers = Vec::new();
    for _ in 0..2 {
        servers.push(monitor_server_process(&db, dir.path()).await);
    }
    let devices = start_company_of(&http, &api, &fleet, 2).await;
    let members = eventually("three live nodes", || async {
        let nodes = nodes(&http, &api).await?;
        (nodes.len() == 3 && nodes.iter().all(|(_, live)| *live)).then_some(nodes)
    })
    .await;

    // Down for eleven seconds (many heartbeats and looks), longer than two pool
    // checkouts wait, so every node's reads and writes fail at least once whatever the
    // timing.
    pg.pg_ctl("stop").unwrap();
    let refused = call(
        &http,
        Method::POST,
        &format!("{api}/companies"),
        Some(json!({"name": "during"})),
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert_eq!(refused.body["code"], "database_unavailable", "{refused:?}");
    actix_rt::time::sleep(Duration::from_secs(11)).await;
    pg.pg_ctl("start").unwrap();
    let back = chrono::Utc::now();

    // The same three nodes, live again: no one was judged dead for the database.
    let after = eventually("the same three nodes are live again", || async {
        let nodes = nodes(&http, &api).await?;
        (nodes.iter().all(|(_, live)| *live) && nodes.len() == 3).then_some(nodes)
    })
    .await;
    assert_eq!(after, members);
    // What was acknowledged is there; what was refused is not.
    let listed = call(&http, Method::GET, &format!("{api}/companies"), None).await;
    let names: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["acme"], "{listed:?}");
    // Both devices still monitored, and their polls stored again after the restart.
    for device in &devices {
        eventually("the device's readings are stored again", || async {
            let latest = call(
                &http,
                Method::GET,
                &format!("{api}/devices/{device}/metrics/latest"),
                None,
            )
            .await;
            let at: chrono::DateTime<chrono::Utc> =
                serde_json::from_value::<Value>(latest.body["at"].clone())
                    .ok()?
                    .as_str()?
                    .parse()
                    .ok()?;
            (at > back).then_some(())
        })
        .await;
    }
    // The nodes said what happened.
    let (server, _) = &mut servers[0];
    server.line_containing("heartbeat failed").await;
    server
        .line_containing("heartbeat reaches the database again")
        .await;
    server.line_containing("metrics writes succeed again").await;
    coordinator
        .line_containing("the cluster is readable again")
        .await;
}
