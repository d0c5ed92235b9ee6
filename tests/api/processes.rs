//! Real processes of the `vigil` binary: startup errors are one line and exit code 2;
//! `vigil serve` monitors this host and stops cleanly on SIGTERM; a coordinator and two
//! monitor-server processes share one database, and a killed server shows as down.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};
use vigil::domain::DeviceKind;

use crate::helpers::{
    call, client_with, create_in_bulk, eventually, Backend, TestFleet, TEST_CLUSTER_TOKEN,
};

crate::on_both_backends!(a_killed_monitor_server_process_shows_down_while_the_other_stays_up);

/// How long a process may take to do what a test waits for before the test gives up.
/// A bound against hanging, not a performance claim.
pub(crate) const GIVE_UP: Duration = Duration::from_secs(30);
/// How long a process may take to give up on a database that refuses connections.
const CONNECT_FAILURE_BOUND: Duration = Duration::from_secs(10);
/// How long `vigil serve` may take to stop after SIGTERM.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);

/// Settings a developer's shell may carry that would change what the child does.
const INHERITED_SETTINGS: &[&str] = &[
    "RUST_LOG",
    "VIGIL_DB",
    "VIGIL_LISTEN",
    "VIGIL_DB_POOL_SIZE",
    "VIGIL_CONFIG",
    "VIGIL_MONITOR_SERVERS",
    "VIGIL_ADVERTISE",
    "VIGIL_AGENT_INTERVAL_MS",
    "VIGIL_CLUSTER_TOKEN",
    "VIGIL_CLUSTER_TOKEN_FILE",
    "VIGIL_DENY_NETWORKS",
    "VIGIL_RATE_LIMIT",
    "VIGIL_RATE_LIMIT_BURST",
];

/// A running `vigil` child whose stderr is read line by line on a thread. Dropping it
/// kills the child, so no test leaves a process behind, whatever assertion fails.
pub(crate) struct Process {
    child: Child,
    lines: Receiver<String>,
    /// Every stderr line read so far, for failure messages.
    seen: Vec<String>,
}

impl Process {
    /// Starts `vigil ARGS` in `dir` (so no `vigil.toml` or `vigil.db` of the caller's is
    /// used), with `RUST_LOG` set to `log` or unset.
    pub(crate) fn spawn(args: &[&str], dir: &Path, log: Option<&str>) -> Process {
        Process::spawn_with_env(args, dir, log, &[])
    }

    /// Like [`Process::spawn`], with these environment variables set.
    fn spawn_with_env(
        args: &[&str],
        dir: &Path,
        log: Option<&str>,
        env: &[(&str, &str)],
    ) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for name in INHERITED_SETTINGS {
            command.env_remove(name);
        }
        if let Some(log) = log {
            command.env("RUST_LOG", log);
        }
        // Every node of a test cluster shares one cluster token unless a test says otherwise.
        command.env("VIGIL_CLUSTER_TOKEN", TEST_CLUSTER_TOKEN);
        command.envs(env.iter().copied());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start vigil {args:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Process {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Moves what stderr has given so far into `seen`; false once stderr is closed.
    fn drain(&mut self) -> bool {
        loop {
            match self.lines.try_recv() {
                Ok(line) => self.seen.push(line),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Waits for the first stderr line containing `needle` (seen before or after).
    pub(crate) async fn line_containing(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + GIVE_UP;
        loop {
            let open = self.drain();
            if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(
                open && Instant::now() < deadline,
                "no stderr line containing {needle:?} (stderr {}):\n{}",
                if open { "still open" } else { "closed" },
                self.seen.join("\n")
            );
            actix_rt::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the process to exit within `bound`, then for the rest of its stderr.
    pub(crate) async fn exit_within(&mut self, bound: Duration) -> ExitStatus {
        let deadline = Instant::now() + bound;
        let status = loop {
            self.drain();
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {bound:?}; stderr:\n{}",
                self.seen.join("\n")
            );
            actix_rt::time::sleep(Duration::from_millis(25)).await;
        };
        let deadline = Instant::now() + GIVE_UP;
        while self.drain() {
            assert!(Instant::now() < deadline, "stderr stayed open after exit");
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        status
    }

    /// Sends SIGTERM and waits for a clean exit (status 0) within [`SHUTDOWN_BOUND`].
    pub(crate) async fn stops_cleanly_on_sigterm(&mut self) {
        self.signal("TERM");
        let status = self.exit_within(SHUTDOWN_BOUND).await;
        assert!(
            status.success(),
            "exit {status} after SIGTERM:\n{}",
            self.seen.join("\n")
        );
    }

    /// Sends a signal with the `kill` command.
    pub(crate) fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {} failed", self.pid());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `field=` in a tracing line, e.g. `address` in `... address=127.0.0.1:4000`.
pub(crate) fn field<'a>(line: &'a str, field: &str) -> &'a str {
    let key = format!(" {field}=");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("no {field}= in {line:?}"))
        + key.len();
    line[start..].split_whitespace().next().unwrap()
}

/// Runs `vigil ARGS` to its end and returns its exit code and stderr lines.
async fn run_to_exit(args: &[&str], bound: Duration) -> (Option<i32>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::spawn(args, dir.path(), None);
    let status = process.exit_within(bound).await;
    (status.code(), std::mem::take(&mut process.seen))
}

#[actix_rt::test]
async fn bad_settings_exit_with_code_2_and_one_line_on_stderr() {
    for (args, says) in [
        (
            &["coordinator", "--db", "mysql://x"][..],
            "database URL must start with sqlite:// or postgres://",
        ),
        (
            &["coordinator", "--db", "sqlite://"][..],
            "sqlite URL names no file",
        ),
        (&["coordinator", "--listen", "nonsense"][..], "--listen"),
        (
            &["monitor-server", "--db", "mysql://x"][..],
            "sqlite:// or postgres://",
        ),
        (&["serve", "--listen", "nonsense"][..], "HOST:PORT"),
        (
            &[
                "coordinator",
                "--cluster-token-file",
                "/nonexistent/cluster-token",
            ][..],
            "--cluster-token-file /nonexistent/cluster-token: cannot read it",
        ),
        (
            &["token", "create", "--role", "root", "--db", "sqlite://t.db"][..],
            "--role: unknown role \"root\"",
        ),
        (
            &[
                "token",
                "create",
                "--role",
                "viewer",
                "--db",
                "sqlite://t.db",
            ][..],
            "a viewer token is for one company",
        ),
        (
            &[
                "token",
                "create",
                "--role",
                "operator",
                "--company",
                "7",
                "--db",
                "sqlite://t.db",
            ][..],
            "company 7 does not exist",
        ),
        (
            &["token", "revoke", "99", "--db", "sqlite://t.db"][..],
            "no token 99",
        ),
    ] {
        let (code, stderr) = run_to_exit(args, GIVE_UP).await;
        assert_eq!(code, Some(2), "vigil {args:?}: stderr {stderr:?}");
        assert_eq!(stderr.len(), 1, "vigil {args:?}: stderr {stderr:?}");
        assert!(
            stderr[0].starts_with("vigil: "),
            "vigil {args:?}: {stderr:?}"
        );
        assert!(stderr[0].contains(says), "vigil {args:?}: {stderr:?}");
    }
}

/// Runs `vigil token ARGS --db DB` in `dir` to a successful end; returns its stdout.
fn token_command(args: &[&str], db: &str, dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("token")
        .args(args)
        .args(["--db", db])
        .current_dir(dir)
        .env_remove("VIGIL_DB")
        .env_remove("VIGIL_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "vigil token {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[actix_rt::test]
async fn tokens_are_made_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let admin = token_command(
        &["create", "--role", "admin", "--name", "ops"],
        &db,
        dir.path(),
    );
    let admin = admin.trim();
    assert!(admin.starts_with("vgl_") && admin.len() == 68, "{admin}");
    let (_coordinator, api) = coordinator_process(&db, dir.path()).await;
    let http = client_with(admin);
    let company = call(
        &http,
        Method::POST,
        &format!("{api}/companies"),
        Some(json!({"name": "acme"})),
    )
    .await;
    assert_eq!(company.status, StatusCode::CREATED, "{company:?}");
    let company = company.body["id"].as_i64().unwrap().to_string();
    let viewer = token_command(
        &["create", "--role", "viewer", "--company", &company],
        &db,
        dir.path(),
    );
    let viewer = client_with(viewer.trim());
    let seen = call(&viewer, Method::GET, &format!("{api}/companies"), None).await;
    assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
    assert_eq!(seen.body.as_array().unwrap().len(), 1, "{seen:?}");

    let listed = token_command(&["list"], &db, dir.path());
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(
        lines[1].contains("admin") && lines[1].contains("ops"),
        "{listed}"
    );
    assert!(
        lines[2].contains("viewer") && lines[2].contains(&company),
        "{listed}"
    );
    assert!(
        !listed.contains(&admin[10..]),
        "a secret was listed: {listed}"
    );
    let viewer_id = lines[2].split_whitespace().next().unwrap();

    let revoked = token_command(&["revoke", viewer_id], &db, dir.path());
    assert_eq!(revoked.trim(), format!("token {viewer_id} revoked"));
    // The coordinator trusts a token it checked for a second: the revocation, made in
    // the database by another process, is seen within that second.
    let revoked_at = Instant::now();
    loop {
        let answer = call(&viewer, Method::GET, &format!("{api}/companies"), None).await;
        if answer.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert!(
            revoked_at.elapsed() < vigil::http::token_cache::TTL + Duration::from_millis(500),
            "the revoked token still works {:?} after its revocation",
            revoked_at.elapsed()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn an_unreachable_postgres_exits_with_code_2_and_says_it_cannot_connect() {
    // Nothing listens on port 1: the connection is refused at once, and the process
    // must say so rather than hang, retry forever or panic.
    for command in ["coordinator", "monitor-server", "serve"] {
        let args = [
            command,
            "--listen",
            "127.0.0.1:0",
            "--db",
            "postgres://postgres@127.0.0.1:1/nope",
        ];
        let (code, stderr) = run_to_exit(&args, CONNECT_FAILURE_BOUND).await;
        assert_eq!(code, Some(2), "vigil {command}: stderr {stderr:?}");
        assert_eq!(stderr.len(), 1, "vigil {command}: stderr {stderr:?}");
        assert!(
            stderr[0].starts_with("vigil: ") && stderr[0].contains("cannot connect"),
            "vigil {command}: {stderr:?}"
        );
        assert!(
            !stderr[0].contains("panicked") && !stderr[0].contains("RUST_BACKTRACE"),
            "vigil {command}: {stderr:?}"
        );
    }
}

#[actix_rt::test]
async fn serve_monitors_this_host_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let mut serve = Process::spawn(
        &["serve", "--listen", "127.0.0.1:0", "--db", &db],
        dir.path(),
        Some("info"),
    );
    let line = serve.line_containing("Vigil is serving http://").await;
    let (_, rest) = line.split_once("Vigil is serving http://").unwrap();
    let url = rest.split_whitespace().next().unwrap();
    let (address, token) = url
        .split_once("/?token=")
        .unwrap_or_else(|| panic!("no token in the address printed: {line}"));
    // The token printed is the one kept beside the database.
    let kept = std::fs::read_to_string(dir.path().join("vigil.db.admin-token")).unwrap();
    assert_eq!(kept.trim(), token);
    let http = client_with(token);
    let base = format!("http://{address}");
    let anonymous = call(
        &awc::Client::default(),
        Method::GET,
        &format!("{base}/api/v1/devices"),
        None,
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");

    let companies = call(
        &http,
        Method::GET,
        &format!("{base}/api/v1/companies"),
        None,
    )
    .await;
    assert_eq!(companies.status, StatusCode::OK, "{companies:?}");
    let local: Vec<&Value> = companies
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "local")
        .collect();
    assert_eq!(local.len(), 1, "{companies:?}");
    let local = local[0]["id"].clone();

    // Judged from this host's real readings: any state but pending or unreachable.
    let this_host = eventually("this host is monitored and judged", || async {
        let devices = call(&http, Method::GET, &format!("{base}/api/v1/devices"), None).await;
        assert_eq!(devices.status, StatusCode::OK, "{devices:?}");
        let hosts: Vec<Value> = devices
            .body
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["company_id"] == local)
            .cloned()
            .collect();
        assert_eq!(hosts.len(), 1, "{devices:?}");
        let state = hosts[0]["monitoring"]["state"].as_str()?;
        ["normal", "alert", "critical"]
            .contains(&state)
            .then(|| hosts[0].clone())
    })
    .await;
    assert_eq!(this_host["kind"], "agent");
    assert_eq!(
        this_host["monitoring"]["failures"], 0,
        "serve waits for the agent's first sample: {this_host}"
    );
    let agent = this_host["address"].as_str().unwrap();
    assert!(
        agent.starts_with("http://127.0.0.1:") && agent.ends_with("/metrics.json"),
        "{this_host}"
    );
    let metrics = &this_host["monitoring"]["last_result"]["metrics"];
    for series in [
        "cpu_usage_percent",
        "memory_usage_percent",
        "memory_total_bytes",
    ] {
        assert!(
            metrics[series].is_number(),
            "{series} missing from {metrics}"
        );
    }

    // The first README promise: this host's history within seconds.
    let id = this_host["id"].as_i64().unwrap();
    let history = eventually("this host's history is stored", || async {
        let history = call(
            &http,
            Method::GET,
            &format!("{base}/api/v1/devices/{id}/metrics?minutes=5"),
            None,
        )
        .await;
        let names: Vec<String> = history.body["series"]
            .as_array()?
            .iter()
            .filter_map(|s| s["name"].as_str().map(String::from))
            .collect();
        let has = |name: &str| names.iter().any(|n| n == name);
        (has("cpu_usage_percent")
            && has("memory_usage_percent")
            && has("network_receive_bytes_per_second")
            && has("disk_usage_percent"))
        .then_some(history.body)
    })
    .await;
    assert!(history["bucket_ms"].as_i64().unwrap() >= 1, "{history}");

    serve.signal("TERM");
    let status = serve.exit_within(SHUTDOWN_BOUND).await;
    assert!(
        status.success(),
        "vigil serve exited with {status} after SIGTERM; stderr:\n{}",
        serve.seen.join("\n")
    );
    assert!(
        serve.seen.iter().any(|l| l.contains("SIGTERM received")),
        "{}",
        serve.seen.join("\n")
    );
    // Both monitor servers wrote what their writers held before the process ended.
    let flushed = serve
        .seen
        .iter()
        .filter(|l| l.contains("metrics written"))
        .count();
    assert_eq!(flushed, 2, "{}", serve.seen.join("\n"));
}

async fn a_killed_monitor_server_process_shows_down_while_the_other_stays_up(backend: Backend) {
    // Dropped last: the processes are killed before their database goes.
    let scratch = crate::helpers::scratch(backend);
    let db = scratch.url_arg();
    let dir = tempfile::tempdir().unwrap();
    let fleet = TestFleet::calm(2);
    let http = admin_client(&db, dir.path());

    let listen = ["--listen", "127.0.0.1:0", "--db", &db];
    let mut coordinator = Process::spawn(
        &[&["coordinator"][..], &listen[..]].concat(),
        dir.path(),
        Some("info"),
    );
    let line = coordinator.line_containing("coordinator listening").await;
    let api = format!("http://{}/api/v1", field(&line, "address"));
    // One after the other: each registers once the one before is up.
    let mut servers = Vec::new();
    for _ in 0..2 {
        let mut server = Process::spawn(
            &[&["monitor-server"][..], &listen[..]].concat(),
            dir.path(),
            Some("info"),
        );
        let line = server.line_containing("monitor server listening").await;
        let id: i64 = field(&line, "server.id").parse().unwrap();
        servers.push((server, id));
    }
    let ids: Vec<i64> = servers.iter().map(|(_, id)| *id).collect();

    let devices = start_company_of(&http, &api, &fleet, 2).await;

    let placed = eventually("both devices are polled and normal", || async {
        let listed = call(&http, Method::GET, &format!("{api}/devices"), None).await;
        assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
        let monitoring: Vec<(i64, Option<i64>, bool)> = listed
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["id"].as_i64().unwrap(),
                    d["monitoring"]["server_id"].as_i64(),
                    d["monitoring"]["state"] == "normal",
                )
            })
            .collect();
        monitoring
            .iter()
            .all(|(_, _, normal)| *normal)
            .then_some(monitoring)
    })
    .await;
    let mut on: Vec<i64> = placed.iter().filter_map(|(_, server, _)| *server).collect();
    assert_eq!(
        placed.iter().map(|(id, ..)| *id).collect::<Vec<_>>(),
        devices
    );
    on.sort_unstable();
    assert_eq!(on, ids, "one device on each server: {placed:?}");
    // Each polled at its fleet device: the agent probe read the fleet's document.
    let listed = call(&http, Method::GET, &format!("{api}/devices"), None).await;
    for device in listed.body.as_array().unwrap() {
        let cpu = &device["monitoring"]["last_result"]["metrics"]["cpu_usage_percent"];
        assert!(cpu.is_f64(), "{device}");
    }

    // kill -9: no goodbye, the coordinator finds out by calling.
    let (mut killed, killed_id) = servers.remove(0);
    killed.signal("KILL");
    killed.exit_within(GIVE_UP).await;
    let (_, alive_id) = &servers[0];
    let listed = call(&http, Method::GET, &format!("{api}/monitor-servers"), None).await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    let status_of = |id: i64| {
        listed
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("server {id} not listed: {listed:?}"))
            .clone()
    };
    let down = status_of(killed_id);
    assert_eq!(down["status"], "down", "{listed:?}");
    assert_eq!(down["running_monitors"], Value::Null, "{listed:?}");
    let up = status_of(*alive_id);
    assert_eq!(up["status"], "up", "{listed:?}");
    assert_eq!(up["running_monitors"], 1, "{listed:?}");
}

#[actix_rt::test]
async fn settings_come_from_flags_then_vigil_variables_then_vigil_toml() {
    let http = awc::Client::default();
    // From the environment alone.
    let dir = tempfile::tempdir().unwrap();
    let from_env = dir.path().join("from-env.db");
    let db = format!("sqlite://{}", from_env.display());
    let mut coordinator = Process::spawn_with_env(
        &["coordinator"],
        dir.path(),
        Some("info"),
        &[("VIGIL_DB", db.as_str()), ("VIGIL_LISTEN", "127.0.0.1:0")],
    );
    let line = coordinator.line_containing("coordinator listening").await;
    let health = call(
        &http,
        Method::GET,
        &format!("http://{}/healthz", field(&line, "address")),
        None,
    )
    .await;
    assert_eq!(health.status, StatusCode::OK, "{health:?}");
    assert!(from_env.is_file(), "VIGIL_DB was not used");
    drop(coordinator);

    // ./vigil.toml fills what neither flags nor variables give; a flag beats a variable.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vigil.toml"),
        "db = \"sqlite://from-file.db\"\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let mut coordinator = Process::spawn_with_env(
        &["coordinator", "--listen", "127.0.0.1:0"],
        dir.path(),
        Some("info"),
        &[("VIGIL_LISTEN", "not an address")],
    );
    let line = coordinator.line_containing("coordinator listening").await;
    let health = call(
        &http,
        Method::GET,
        &format!("http://{}/healthz", field(&line, "address")),
        None,
    )
    .await;
    assert_eq!(health.status, StatusCode::OK, "{health:?}");
    assert!(
        dir.path().join("from-file.db").is_file(),
        "vigil.toml was not read"
    );
}

#[actix_rt::test]
async fn a_restarted_monitor_server_keeps_its_id_and_a_new_address_gets_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut ids = Vec::new();
    for advertise in ["127.0.0.1", "127.0.0.1", "localhost"] {
        let mut server = Process::spawn(
            &[
                "monitor-server",
                "--listen",
                &listen,
                "--db",
                &db,
                "--advertise",
                advertise,
            ],
            dir.path(),
            Some("info"),
        );
        let line = server.line_containing("monitor server listening").await;
        assert_eq!(
            field(&line, "advertised"),
            format!("{advertise}:{port}"),
            "{line}"
        );
        ids.push(field(&line, "server.id").parse::<i64>().unwrap());
        server.signal("TERM");
        server.exit_within(GIVE_UP).await;
    }
    assert_eq!(
        ids[0], ids[1],
        "a restart under the same address keeps the id"
    );
    assert_ne!(ids[1], ids[2], "another address is another server");
}

#[actix_rt::test]
async fn the_vigil_agent_process_serves_this_hosts_metrics_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Process::spawn_with_env(
        &["agent", "--listen", "127.0.0.1:0"],
        dir.path(),
        Some("info"),
        &[("VIGIL_AGENT_INTERVAL_MS", "200")],
    );
    let line = agent.line_containing("agent is serving http://").await;
    let (_, rest) = line.split_once("agent is serving http://").unwrap();
    let address = rest.split_whitespace().next().unwrap().to_string();
    let http = awc::Client::default();
    let url = format!("http://{address}/metrics.json");
    let report: vigil::agent::AgentReport =
        eventually("the agent process has a sample", || async {
            let answer = call(&http, Method::GET, &url, None).await;
            (answer.status == StatusCode::OK).then(|| serde_json::from_value(answer.body).unwrap())
        })
        .await;
    assert_eq!(report.hostname, sysinfo::System::host_name().unwrap());
    assert_eq!(
        report.interval_ms, 200,
        "VIGIL_AGENT_INTERVAL_MS was not read"
    );
    assert!(report.memory.total_bytes > 0);

    agent.stops_cleanly_on_sigterm().await;
}

#[actix_rt::test]
async fn bad_agent_settings_exit_with_code_2_and_one_line_on_stderr() {
    assert_refused(&[
        (
            &["agent", "--interval-ms", "5"],
            "--interval-ms must be from 200",
        ),
        (&["agent", "--listen", "nonsense"], "--listen"),
    ])
    .await;
}

/// Runs `vigil ARGS` for each case and checks that it exits with code 2 having written
/// one line to stderr, `vigil: …`, that contains the text given.
pub(crate) async fn assert_refused(cases: &[(&[&str], &str)]) {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in cases {
        let mut process = Process::spawn(args, dir.path(), None);
        let status = process.exit_within(GIVE_UP).await;
        assert_eq!(status.code(), Some(2), "{args:?}: {:?}", process.seen);
        assert_eq!(process.seen.len(), 1, "{args:?}: {:?}", process.seen);
        assert!(process.seen[0].starts_with("vigil: "), "{:?}", process.seen);
        assert!(
            process.seen[0].contains(says),
            "{args:?}: {:?}",
            process.seen
        );
    }
}

/// Creates company "acme" with the first `count` devices of `fleet` as agent devices,
/// in one bulk call, and starts it whole; every device must start. Returns the device
/// ids in order.
pub(crate) async fn start_company_of(
    http: &awc::Client,
    api: &str,
    fleet: &TestFleet,
    count: usize,
) -> Vec<i64> {
    let company = call(
        http,
        Method::POST,
        &format!("{api}/companies"),
        Some(json!({ "name": "acme" })),
    )
    .await;
    assert_eq!(company.status, StatusCode::CREATED, "{company:?}");
    let company = company.body["id"].as_i64().unwrap();
    let list = fleet
        .device_list(company, DeviceKind::Agent, 0..count)
        .await;
    let devices = create_in_bulk(http, api, list).await;
    let started = call(
        http,
        Method::POST,
        &format!("{api}/companies/{company}/start"),
        None,
    )
    .await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    assert_eq!(started.body["started"], count, "{started:?}");
    devices
}

/// An admin token made by `vigil token create` on `db` (the command line's own path),
/// and a client that sends it.
pub(crate) fn admin_client(db: &str, dir: &Path) -> awc::Client {
    let token = token_command(&["create", "--role", "admin", "--name", "test"], db, dir);
    client_with(token.trim())
}

/// The cluster as the coordinator at `api` sees it.
pub(crate) async fn cluster_of(http: &awc::Client, api: &str) -> Value {
    let answer = call(http, Method::GET, &format!("{api}/cluster"), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body
}

/// Starts a coordinator process on `db` and returns it with its API base URL.
pub(crate) async fn coordinator_process(db: &str, dir: &Path) -> (Process, String) {
    let mut coordinator = Process::spawn(
        &["coordinator", "--listen", "127.0.0.1:0", "--db", db],
        dir,
        Some("info"),
    );
    let line = coordinator.line_containing("coordinator listening").await;
    let api = format!("http://{}/api/v1", field(&line, "address"));
    (coordinator, api)
}

/// Starts a monitor-server process on `db` and returns it with its address.
pub(crate) async fn monitor_server_process(db: &str, dir: &Path) -> (Process, String) {
    let mut server = Process::spawn(
        &["monitor-server", "--listen", "127.0.0.1:0", "--db", db],
        dir,
        Some("info"),
    );
    let line = server.line_containing("monitor server listening").await;
    let address = field(&line, "address").to_string();
    (server, address)
}

/// Heartbeats every 100 ms, a look every 500 ms, three missed looks are death (one
/// would take a heartbeat held up by a busy SQLite file under a loaded CI for death).
pub(crate) async fn fast_membership(http: &awc::Client, api: &str) {
    let body = json!({"heartbeat_ms": 100, "validate_ms": 500, "missed_checks": 3});
    let answer = call(http, Method::PUT, &format!("{api}/config"), Some(body)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

#[actix_rt::test]
async fn when_the_master_coordinator_is_killed_the_next_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let http = admin_client(&db, dir.path());
    let (mut first, first_api) = coordinator_process(&db, dir.path()).await;
    fast_membership(&http, &first_api).await;
    let (_second, second_api) = coordinator_process(&db, dir.path()).await;
    let (master, second) = eventually("both coordinators live, the first master", || async {
        let view = cluster_of(&http, &second_api).await;
        let nodes = view["nodes"].as_array()?.clone();
        let second = view["this_node"].as_i64()?;
        (nodes.len() == 2 && nodes.iter().all(|n| n["live"] == true) && view["master"] != second)
            .then(|| (view["master"].as_i64().unwrap(), second))
    })
    .await;
    assert!(master < second);
    first.signal("KILL");
    let _ = first.exit_within(GIVE_UP).await;
    let view = eventually(
        "the second coordinator is master, the first gone",
        || async {
            let view = cluster_of(&http, &second_api).await;
            let nodes = view["nodes"].as_array()?.clone();
            (view["master"] == second && nodes.len() == 1).then_some(view)
        },
    )
    .await;
    assert_eq!(view["nodes"][0]["id"], second, "{view}");
}

#[actix_rt::test]
async fn a_paused_monitor_server_is_removed_and_joins_again_when_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let http = admin_client(&db, dir.path());
    let (_coordinator, api) = coordinator_process(&db, dir.path()).await;
    fast_membership(&http, &api).await;
    let mut server = Process::spawn(
        &["monitor-server", "--listen", "127.0.0.1:0", "--db", &db],
        dir.path(),
        Some("info"),
    );
    let line = server.line_containing("monitor server listening").await;
    let server_id: i64 = field(&line, "server.id").parse().unwrap();
    let server_node = |view: &Value| -> Option<Value> {
        view["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["server_id"] == server_id)
            .cloned()
    };
    let before = eventually("the monitor server is a live node", || async {
        let view = cluster_of(&http, &api).await;
        server_node(&view).filter(|n| n["live"] == true)
    })
    .await;

    server.signal("STOP");
    eventually("the paused server is removed", || async {
        let view = cluster_of(&http, &api).await;
        server_node(&view).is_none().then_some(())
    })
    .await;
    server.signal("CONT");
    let after = eventually("the server joins again under a new id", || async {
        let view = cluster_of(&http, &api).await;
        server_node(&view).filter(|n| n["live"] == true && n["id"] != before["id"])
    })
    .await;
    assert!(
        after["id"].as_i64() > before["id"].as_i64(),
        "{before} {after}"
    );
    server
        .line_containing("removed from the cluster as dead; registering again")
        .await;
}

/// Where Debian's `faketime` package puts the library that shifts a process's clock.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

#[actix_rt::test]
async fn monitor_servers_with_skewed_clocks_are_not_removed() {
    if !crate::helpers::tool_installed(
        "processes::monitor_servers_with_skewed_clocks_are_not_removed",
        LIBFAKETIME,
        "faketime",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let http = admin_client(&db, dir.path());
    let (_coordinator, api) = coordinator_process(&db, dir.path()).await;
    fast_membership(&http, &api).await;
    // One server three hours ahead, one three hours behind.
    let mut servers = Vec::new();
    for offset in ["+3h", "-3h"] {
        let mut server = Process::spawn_with_env(
            &["monitor-server", "--listen", "127.0.0.1:0", "--db", &db],
            dir.path(),
            Some("info"),
            &[
                ("LD_PRELOAD", LIBFAKETIME),
                ("FAKETIME", offset),
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ],
        );
        let line = server.line_containing("monitor server listening").await;
        let id: i64 = field(&line, "server.id").parse().unwrap();
        servers.push((server, id));
    }
    let live_servers = |view: &Value| -> Vec<i64> {
        view["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["live"] == true)
            .filter_map(|n| n["server_id"].as_i64())
            .collect()
    };
    let nodes = eventually("both skewed servers are live", || async {
        let view = cluster_of(&http, &api).await;
        (live_servers(&view).len() == 2).then(|| view["nodes"].clone())
    })
    .await;
    // Ten validation periods later they are the same nodes, still live.
    actix_rt::time::sleep(Duration::from_millis(10 * 500)).await;
    let view = cluster_of(&http, &api).await;
    assert_eq!(live_servers(&view).len(), 2, "{view}");
    let ids = |nodes: &Value| -> Vec<i64> {
        nodes
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["id"].as_i64())
            .collect()
    };
    assert_eq!(
        ids(&view["nodes"]),
        ids(&nodes),
        "no node was removed and rejoined"
    );
    for (server, _) in &servers {
        assert!(
            !server
                .seen
                .iter()
                .any(|l| l.contains("removed from the cluster")),
            "{}",
            server.seen.join("\n")
        );
    }
}

/// What each monitor server at `addresses` runs, device ids in order; `None` while one
/// of them does not answer (a resumed process, a dropped pooled connection).
pub(crate) async fn running_on(http: &awc::Client, addresses: &[String]) -> Option<Vec<Vec<i64>>> {
    let mut running = Vec::new();
    for address in addresses {
        let mut response = http
            .get(format!("http://{address}/monitors"))
            .bearer_auth(TEST_CLUSTER_TOKEN)
            .send()
            .await
            .ok()?;
        let body: Value = response.json().limit(16 << 20).await.ok()?;
        let mut ids: Vec<i64> = body
            .as_array()?
            .iter()
            .filter_map(|m| m["device"]["id"].as_i64())
            .collect();
        ids.sort_unstable();
        running.push(ids);
    }
    Some(running)
}

#[actix_rt::test]
async fn a_killed_monitor_servers_devices_move_to_the_live_ones_and_a_paused_one_fences_itself() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let http = admin_client(&db, dir.path());
    let fleet = TestFleet::calm(9);
    let (_coordinator, api) = coordinator_process(&db, dir.path()).await;
    fast_membership(&http, &api).await;
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(monitor_server_process(&db, dir.path()).await);
    }
    let devices = start_company_of(&http, &api, &fleet, 9).await;
    let addresses: Vec<String> = servers.iter().map(|(_, a)| a.clone()).collect();
    let before = running_on(&http, &addresses).await.unwrap();
    assert!(before.iter().all(|ids| ids.len() == 3), "{before:?}");

    // kill -9 the first: its three devices move to the other two, each run once.
    let (mut killed, _) = servers.remove(0);
    killed.signal("KILL");
    killed.exit_within(GIVE_UP).await;
    let live = &addresses[1..];
    let after = eventually("every device runs on a live server, once", || async {
        let running = running_on(&http, live).await?;
        let mut all: Vec<i64> = running.iter().flatten().copied().collect();
        all.sort_unstable();
        (all == devices).then_some(running)
    })
    .await;
    assert!(
        after.iter().all(|ids| !ids.is_empty()),
        "spread over both: {after:?}"
    );
    let listed = call(&http, Method::GET, &format!("{api}/devices"), None).await;
    for device in listed.body.as_array().unwrap() {
        assert_eq!(device["monitoring_wanted"], true, "{device}");
        assert_ne!(device["monitoring"], Value::Null, "{device}");
    }

    // Pause the second past the validation period: its devices move to the third;
    // when it resumes it stops its own copies before it rejoins.
    let (paused, _) = &servers[0];
    paused.signal("STOP");
    let third = &addresses[2..];
    eventually("every device runs on the third server", || async {
        let running = running_on(&http, third).await?;
        (running[0] == devices).then_some(())
    })
    .await;
    paused.signal("CONT");
    eventually("the resumed server runs nothing", || async {
        let running = running_on(&http, &addresses[1..2]).await?;
        running[0].is_empty().then_some(())
    })
    .await;
    let (paused, _) = &mut servers[0];
    paused
        .line_containing("fenced: stopped every monitor")
        .await;
    // Whatever moves later (a loaded machine may delay a heartbeat past a look), each
    // device settles to run exactly once on the live servers.
    eventually("each device runs exactly once", || async {
        let running = running_on(&http, &addresses[1..]).await?;
        let mut all: Vec<i64> = running.iter().flatten().copied().collect();
        all.sort_unstable();
        (all == devices).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_monitor_server_given_sigterm_hands_its_devices_over_before_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let http = admin_client(&db, dir.path());
    let fleet = TestFleet::calm(4);
    let (_coordinator, api) = coordinator_process(&db, dir.path()).await;
    // Slow membership: a dead server would be noticed only after minutes, so whatever
    // moves within the test was handed over by the server itself.
    let slow = json!({"heartbeat_ms": 1000, "validate_ms": 60000, "missed_checks": 5});
    let answer = call(&http, Method::PUT, &format!("{api}/config"), Some(slow)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let mut servers = Vec::new();
    for _ in 0..2 {
        servers.push(monitor_server_process(&db, dir.path()).await);
    }
    let devices = start_company_of(&http, &api, &fleet, 4).await;
    let addresses: Vec<String> = servers.iter().map(|(_, a)| a.clone()).collect();
    let before = running_on(&http, &addresses).await.unwrap();
    assert!(before.iter().all(|ids| ids.len() == 2), "{before:?}");

    let (mut leaving, _) = servers.remove(0);
    leaving.signal("TERM");
    let status = leaving.exit_within(SHUTDOWN_BOUND).await;
    assert!(status.success(), "{}", leaving.seen.join("\n"));
    assert!(
        leaving
            .seen
            .iter()
            .any(|l| l.contains("devices handed over") && l.contains("moved=2")),
        "{}",
        leaving.seen.join("\n")
    );
    // Already on the other server when the process is gone; recorded there, moved.
    let running = running_on(&http, &addresses[1..]).await.unwrap();
    assert_eq!(running[0], devices, "{running:?}");
    let listed = call(&http, Method::GET, &format!("{api}/devices"), None).await;
    let mut recorded: Vec<Option<i64>> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["monitoring"]["server_id"].as_i64())
        .collect();
    recorded.dedup();
    assert!(
        recorded.len() == 1 && recorded[0].is_some(),
        "every device is recorded on the server that stayed: {listed:?}"
    );
    let events = call(&http, Method::GET, &format!("{api}/events"), None).await;
    let moved = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "moved")
        .count();
    assert_eq!(moved, 2, "{events:?}");
}

/// A stand-in monitor server whose `/info` answers after `delay`: a coordinator call
/// that lists servers takes that long.
fn slow_monitor_server(delay: Duration) -> std::net::SocketAddr {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let server = HttpServer::new(move || {
        App::new().route(
            "/info",
            web::get().to(move || async move {
                actix_rt::time::sleep(delay).await;
                HttpResponse::Ok().json(json!({
                    "server_id": 1, "running_monitors": 0, "max_monitors": 10, "device_ids": []
                }))
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = server.addrs()[0];
    actix_rt::spawn(server.run());
    address
}

#[actix_rt::test]
async fn a_coordinator_given_sigterm_finishes_the_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let http = admin_client(&db, dir.path());
    let slow = slow_monitor_server(Duration::from_millis(1500));
    let store = vigil::db::Db::open(db.parse().unwrap(), 1).await.unwrap();
    store
        .run(move |conn| vigil::db::monitor_servers::register(conn, "127.0.0.1", slow.port()))
        .await
        .unwrap();
    let (mut coordinator, api) = coordinator_process(&db, dir.path()).await;
    // Listing the servers asks the slow one: the answer takes 1.5 s.
    let in_flight = {
        let (http, url) = (http.clone(), format!("{api}/monitor-servers"));
        actix_rt::spawn(async move { call(&http, Method::GET, &url, None).await })
    };
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    coordinator.signal("TERM");
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body[0]["status"], "up", "{answer:?}");
    let status = coordinator.exit_within(SHUTDOWN_BOUND).await;
    assert!(status.success(), "{}", coordinator.seen.join("\n"));
    // Stopped: new calls find no one.
    let refused = http.get(format!("{api}/companies")).send().await;
    assert!(refused.is_err(), "the coordinator still answers");
}
