//! How a benchmark runs: its size, where its reports go, the databases it runs on. A
//! leaf module, so every scenario reads it without importing the dispatcher.

use std::path::PathBuf;

/// How a benchmark runs.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    /// Small sizes, seconds per scenario: for CI.
    pub smoke: bool,
    /// Where the JSON reports (and the processes' logs, under `logs/`) go.
    pub out: PathBuf,
    /// A PostgreSQL server to run the database-bound scenarios on as well as SQLite.
    pub postgres: Option<String>,
    /// Overrides the scenario's number of devices.
    pub devices: Option<usize>,
}

impl BenchSettings {
    /// The databases a scenario runs on: SQLite, then PostgreSQL when given.
    pub fn backends(&self) -> Vec<Option<String>> {
        let mut backends = vec![None];
        if let Some(url) = &self.postgres {
            backends.push(Some(url.clone()));
        }
        backends
    }

    /// Where the processes of one run write their logs.
    pub fn logs(&self, run: &str) -> PathBuf {
        self.out.join("logs").join(run)
    }
}
