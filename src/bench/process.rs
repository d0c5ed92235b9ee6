//! Processes a benchmark runs and measures: Vigil's own subcommands and the peers
//! (Prometheus, node_exporter, wrk), each with its output in a log file, its CPU time
//! and resident memory read from `/proc`, and stopped when dropped.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a process may take to answer its health check after it was started.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a process may take to exit after SIGTERM before it is killed.
const EXIT_WITHIN: Duration = Duration::from_secs(20);
/// How often a process that is expected to exit is looked at.
const EXIT_CHECK: Duration = Duration::from_millis(20);

/// A child process, killed when dropped.
pub struct Spawned {
    name: String,
    child: Child,
    log: PathBuf,
}

/// CPU time and memory of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User and system time of all its threads since it started.
    pub cpu: Duration,
    pub rss_bytes: u64,
}

impl Usage {
    /// CPU time spent from `earlier` to this reading.
    pub fn cpu_since(&self, earlier: &Usage) -> Duration {
        self.cpu.saturating_sub(earlier.cpu)
    }
}

impl Spawned {
    /// Runs this very binary with `args` (`vigil fleet …`, `vigil monitor-server …`).
    pub fn vigil(
        name: &str,
        args: &[String],
        env: &[(&str, &str)],
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot tell which binary this is")?;
        Self::program(name, &exe, args, env, logs)
    }

    /// Runs `program` with `args`, its output going to `logs/<name>.log`.
    pub fn program(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        logs: &Path,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {} ({name})", program.display()))?;
        tracing::info!(process = name, pid = child.id(), log = %log.display(), "started");
        Ok(Spawned {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its CPU time and resident memory now.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        usage_of(self.pid())
    }

    /// Fails with the end of its log if it has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }

    /// Waits until `url` answers 2xx, failing if the process exits first.
    pub async fn ready(&mut self, url: &str) -> anyhow::Result<()> {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(2))
            .finish();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            self.check_running()?;
            if let Ok(answer) = client.get(url).send().await {
                if answer.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("{} did not answer {url} within {READY_WITHIN:?}", self.name);
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for the exit (killing it after a while).
    pub async fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + EXIT_WITHIN;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            actix_rt::time::sleep(EXIT_CHECK).await;
        }
        tracing::warn!(process = self.name, "did not exit after SIGTERM; killed");
    }

    /// Waits for a process that ends by itself (wrk) and answers its log; fails with the
    /// end of the log if it exits with an error or is still running after `within`.
    pub async fn finish(mut self, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!(
                        "{} exited ({status}); the end of {}:\n{}",
                        self.name,
                        self.log.display(),
                        tail(&self.log)
                    );
                }
                return std::fs::read_to_string(&self.log)
                    .with_context(|| format!("cannot read {}", self.log.display()));
            }
            if Instant::now() > deadline {
                bail!("{} did not finish within {within:?}", self.name);
            }
            actix_rt::time::sleep(EXIT_CHECK).await;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// CPU time (all threads, user and system) and resident memory of process `pid`.
pub fn usage_of(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Fields 14 and 15 of proc(5), utime and stime; the list starts at field 3.
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("unreadable /proc/{pid}/stat"))
    };
    let ticks = ticks(11)? + ticks(12)?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Usage {
        cpu: Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_second),
        rss_bytes: rss_kib * 1024,
    })
}

/// A loopback address with a port free right now, for a process to listen on.
pub fn free_address() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free port on 127.0.0.1")?;
    Ok(listener.local_addr()?)
}

/// The path of `program` if it is installed (searched in PATH).
pub fn installed(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// `program`'s path, or an error that says which Debian package brings it.
pub fn require(program: &str, package: &str) -> anyhow::Result<PathBuf> {
    installed(program)
        .with_context(|| format!("{program} is not installed: apt-get install -y {package}"))
}
