//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (or the settings file's `log`),
//! `info` by default.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(default_filter: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_filter.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests, embedding) keeps the first subscriber; that is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
