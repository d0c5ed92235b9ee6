//! `vigil bench SCENARIO`: benchmarks of whole processes, each run beside its peer in
//! the same run where one exists (Prometheus, node_exporter, single-row inserts, the
//! seed's per-device path), printed as a Markdown table and written as JSON under
//! `target/bench/`. Not part of `cargo test`; `--smoke` runs a scenario at a small size
//! in seconds, so CI catches a benchmark that broke.
//!
//! A benchmark runs this binary's own subcommands as processes (`vigil coordinator`,
//! `vigil monitor-server`, `vigil agent`, `vigil fleet`) and Debian's peers, and
//! measures them from `/proc`; one that
//! measures a part rather than a process (`ingest`: the metrics writer) runs it here.
//!
//! - `vs_prometheus`: one monitor server polling a fleet, beside Prometheus scraping it;
//! - `monitors`: 10k–100k monitors in one monitor server, and its peak poll rate;
//! - `start_all`: a company start across monitor servers, beside the per-device path;
//! - `ingest`: the metrics writer, beside single-row inserts, and the history query;
//! - `store`: a week of a fleet written, rolled up and read, beside the polls alone;
//! - `agent`: `vigil agent` per scrape, beside node_exporter;
//! - `api`: the REST API's reads under wrk.

mod agent;
mod api;
mod cluster;
mod fleet;
mod gorilla;
mod ingest;
mod monitors;
mod process;
mod prometheus;
mod report;
mod settings;
mod start_all;
mod store;
mod vs_prometheus;

use std::str::FromStr;

pub use self::report::{Better, Report, Row};
pub use self::settings::BenchSettings;

/// The scenarios, by the name `vigil bench` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    VsPrometheus,
    Monitors,
    StartAll,
    Ingest,
    Store,
    Agent,
    Api,
}

impl Scenario {
    pub const ALL: &'static [Scenario] = &[
        Scenario::VsPrometheus,
        Scenario::Monitors,
        Scenario::StartAll,
        Scenario::Ingest,
        Scenario::Store,
        Scenario::Agent,
        Scenario::Api,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::VsPrometheus => "vs-prometheus",
            Scenario::Monitors => "monitors",
            Scenario::StartAll => "start-all",
            Scenario::Ingest => "ingest",
            Scenario::Store => "store",
            Scenario::Agent => "agent",
            Scenario::Api => "api",
        }
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .iter()
            .copied()
            .find(|s| s.name() == value)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario {value:?}; the scenarios are {} (or all)",
                    names.join(", ")
                )
            })
    }
}

/// Runs `scenarios` one after the other, printing and writing each report.
pub async fn run(scenarios: &[Scenario], settings: &BenchSettings) -> anyhow::Result<()> {
    for &scenario in scenarios {
        tracing::info!(
            scenario = scenario.name(),
            smoke = settings.smoke,
            "benchmark begins"
        );
        let report = match scenario {
            Scenario::VsPrometheus => vs_prometheus::run(settings).await?,
            Scenario::Monitors => monitors::run(settings).await?,
            Scenario::StartAll => start_all::run(settings).await?,
            Scenario::Ingest => ingest::run(settings).await?,
            Scenario::Store => store::run(settings).await?,
            Scenario::Agent => agent::run(settings).await?,
            Scenario::Api => api::run(settings).await?,
        };
        let name = if settings.smoke {
            format!("{}-smoke", scenario.name())
        } else {
            scenario.name().to_string()
        };
        let path = report.write(&settings.out, &name)?;
        println!("{}", report.markdown());
        println!("(written to {})\n", path.display());
    }
    Ok(())
}
