//! `vigil bench agent`: CPU time, bytes and memory per scrape of `vigil agent` beside
//! Debian's `prometheus-node-exporter`, both processes on this host in the same run,
//! their `/metrics` scraped at the same rate at the same moments; then the agent's
//! `/metrics.json` at that rate.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::future::join_all;

use super::process::{self, free_address, Spawned, Usage};
use super::report::{median, Better, Report, Row};
use super::settings::BenchSettings;

/// Debian's package of the peer, and its program's name.
const NODE_EXPORTER: &str = "prometheus-node-exporter";
/// Scrapes per second of each endpoint, the same for both processes.
const SCRAPES_PER_SECOND: u32 = 10;
/// Untimed scrapes of each endpoint first (the first answers build caches).
const WARMUP_SCRAPES: usize = 5;
/// Longest one scrape may take.
const SCRAPE_WITHIN: Duration = Duration::from_secs(10);
/// Largest answer read (node_exporter's is about 100 KiB).
const MAX_SCRAPE_BYTES: usize = 64 * 1024 * 1024;
const MIB: f64 = 1024.0 * 1024.0;

struct Sizes {
    /// How long each endpoint is scraped.
    window: Duration,
    /// How long both run unscraped, for what the agent's own timer costs.
    idle: Duration,
}

impl Sizes {
    fn of(settings: &BenchSettings) -> Sizes {
        if settings.smoke {
            Sizes {
                window: Duration::from_secs(2),
                idle: Duration::from_secs(1),
            }
        } else {
            Sizes {
                window: Duration::from_secs(30),
                idle: Duration::from_secs(10),
            }
        }
    }
}

pub async fn run(settings: &BenchSettings) -> anyhow::Result<Report> {
    let sizes = Sizes::of(settings);
    let node_exporter = process::require(NODE_EXPORTER, NODE_EXPORTER)?;
    let mut report = Report::new("agent");
    report.param("scrapes_per_second", SCRAPES_PER_SECOND);
    report.param("window_s", sizes.window.as_secs());
    report.param("idle_s", sizes.idle.as_secs());
    let logs = settings.logs("agent");
    let agent_address = free_address()?;
    let mut agent = Spawned::vigil(
        "agent",
        &["agent".into(), "--listen".into(), agent_address.to_string()],
        &[],
        &logs,
    )?;
    let exporter_address = free_address()?;
    let mut exporter = Spawned::program(
        "node-exporter",
        &node_exporter,
        &[format!("--web.listen-address={exporter_address}")],
        &[],
        &logs,
    )?;
    let urls = Urls {
        agent: format!("http://{agent_address}/metrics"),
        agent_json: format!("http://{agent_address}/metrics.json"),
        exporter: format!("http://{exporter_address}/metrics"),
    };
    // The agent answers 503 until its first sample is in: ready means sampled.
    agent.ready(&urls.agent).await?;
    exporter.ready(&urls.exporter).await?;
    let measured = measure(&agent, &exporter, &urls, &sizes).await;
    agent.stop().await;
    exporter.stop().await;
    let m = measured?;

    report.row(
        Row::new(
            "/metrics: CPU per scrape",
            "ms",
            Better::Lower,
            m.agent.cpu_ms_per_scrape(),
        )
        .peer("node_exporter", m.exporter.cpu_ms_per_scrape())
        .ratio_at_most(1.0),
    );
    report.row(
        Row::new(
            "/metrics: bytes per scrape",
            "bytes",
            Better::Lower,
            m.agent.bytes_per_scrape(),
        )
        .peer("node_exporter", m.exporter.bytes_per_scrape()),
    );
    report.row(
        Row::new(
            "/metrics: series per scrape",
            "series",
            Better::Higher,
            m.agent.tally.series as f64,
        )
        .peer("node_exporter", m.exporter.tally.series as f64),
    );
    report.row(
        Row::new(
            "/metrics: median scrape time",
            "ms",
            Better::Lower,
            m.agent.median_ms(),
        )
        .peer("node_exporter", m.exporter.median_ms()),
    );
    report.row(
        Row::new(
            "resident memory after the /metrics scrapes",
            "MiB",
            Better::Lower,
            m.agent.rss_bytes as f64 / MIB,
        )
        .peer("node_exporter", m.exporter.rss_bytes as f64 / MIB),
    );
    let per_second = |cpu: Duration| cpu.as_secs_f64() * 1000.0 / sizes.idle.as_secs_f64();
    report.row(
        Row::new(
            "CPU while nobody scrapes",
            "ms/s",
            Better::Lower,
            per_second(m.agent_idle_cpu),
        )
        .peer("node_exporter", per_second(m.exporter_idle_cpu)),
    );
    report.row(Row::new(
        "/metrics.json: CPU per scrape",
        "ms",
        Better::Lower,
        m.json.cpu_ms_per_scrape(),
    ));
    report.row(Row::new(
        "/metrics.json: bytes per scrape",
        "bytes",
        Better::Lower,
        m.json.bytes_per_scrape(),
    ));
    report.row(Row::new(
        "/metrics.json: median scrape time",
        "ms",
        Better::Lower,
        m.json.median_ms(),
    ));
    report.note(format!(
        "`vigil agent --listen ADDR` (sampling on its own timer, every second by default) \
         beside `{NODE_EXPORTER} --web.listen-address=ADDR` (Debian's default collectors, \
         which collect at each scrape), both running throughout. Their /metrics were \
         scraped together, {SCRAPES_PER_SECOND} times a second for {} s, uncompressed (the \
         client asks for no encoding); then the agent's /metrics.json alone at that rate \
         and for that long.",
        sizes.window.as_secs()
    ));
    report.note(
        "CPU per scrape = the process's CPU time (user + system, all threads, from /proc, \
         10 ms ticks) over the window ÷ the scrapes in it. The agent's own sampling timer \
         runs during the window and its cost is included, which is fair: node_exporter \
         does its sampling inside the scrape. \"CPU while nobody scrapes\" is that timer's \
         cost alone.",
    );
    Ok(report)
}

struct Urls {
    agent: String,
    agent_json: String,
    exporter: String,
}

/// What one endpoint's scrapes cost its process.
struct Scraped {
    tally: Tally,
    cpu: Duration,
    rss_bytes: u64,
}

impl Scraped {
    fn of(tally: Tally, before: &Usage, after: &Usage) -> Scraped {
        Scraped {
            tally,
            cpu: after.cpu_since(before),
            rss_bytes: after.rss_bytes,
        }
    }

    fn cpu_ms_per_scrape(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / self.tally.scrapes.max(1) as f64
    }

    fn bytes_per_scrape(&self) -> f64 {
        self.tally.bytes as f64 / self.tally.scrapes.max(1) as f64
    }

    fn median_ms(&self) -> f64 {
        median(&self.tally.times).as_secs_f64() * 1000.0
    }
}

struct Measured {
    agent: Scraped,
    exporter: Scraped,
    json: Scraped,
    agent_idle_cpu: Duration,
    exporter_idle_cpu: Duration,
}

async fn measure(
    agent: &Spawned,
    exporter: &Spawned,
    urls: &Urls,
    sizes: &Sizes,
) -> anyhow::Result<Measured> {
    let client = awc::Client::builder().timeout(SCRAPE_WITHIN).finish();
    let all = [
        urls.agent.as_str(),
        urls.exporter.as_str(),
        urls.agent_json.as_str(),
    ];
    for _ in 0..WARMUP_SCRAPES {
        for url in all {
            scrape(&client, url).await?;
        }
    }

    let (agent_before, exporter_before) = (agent.usage()?, exporter.usage()?);
    actix_rt::time::sleep(sizes.idle).await;
    let (agent_idle, exporter_idle) = (agent.usage()?, exporter.usage()?);

    let mut tallies = scrape_for(&client, &[&urls.agent, &urls.exporter], sizes.window).await?;
    let (agent_after, exporter_after) = (agent.usage()?, exporter.usage()?);
    let (Some(exporter_tally), Some(agent_tally)) = (tallies.pop(), tallies.pop()) else {
        bail!("a tally per endpoint was expected");
    };

    let json_tally = scrape_for(&client, &[&urls.agent_json], sizes.window)
        .await?
        .pop()
        .unwrap_or_default();
    let json_after = agent.usage()?;
    Ok(Measured {
        agent: Scraped::of(agent_tally, &agent_idle, &agent_after),
        exporter: Scraped::of(exporter_tally, &exporter_idle, &exporter_after),
        json: Scraped::of(json_tally, &agent_after, &json_after),
        agent_idle_cpu: agent_idle.cpu_since(&agent_before),
        exporter_idle_cpu: exporter_idle.cpu_since(&exporter_before),
    })
}

/// The scrapes of one endpoint.
#[derive(Debug, Clone, Default)]
struct Tally {
    scrapes: u64,
    bytes: u64,
    /// Samples in the last answer (lines of a text exposition that are not comments).
    series: usize,
    times: Vec<Duration>,
}

/// One scrape of `url`: its answer's bytes and how long it took.
async fn scrape(client: &awc::Client, url: &str) -> anyhow::Result<(Vec<u8>, Duration)> {
    let began = Instant::now();
    let mut answer = client
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    if !answer.status().is_success() {
        bail!("GET {url} answered {}", answer.status());
    }
    let body = answer
        .body()
        .limit(MAX_SCRAPE_BYTES)
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    Ok((body.to_vec(), began.elapsed()))
}

/// Scrapes every one of `urls` `SCRAPES_PER_SECOND` times a second for `window`, all of
/// them at each tick; answers a tally per url, in order.
async fn scrape_for(
    client: &awc::Client,
    urls: &[&str],
    window: Duration,
) -> anyhow::Result<Vec<Tally>> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / SCRAPES_PER_SECOND);
    // A late scrape delays the next ones rather than bunching them up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tallies = vec![Tally::default(); urls.len()];
    let began = Instant::now();
    while began.elapsed() < window {
        tick.tick().await;
        let answers = join_all(urls.iter().map(|url| scrape(client, url))).await;
        for (tally, answer) in tallies.iter_mut().zip(answers) {
            let (body, took) = answer?;
            tally.scrapes += 1;
            tally.bytes += body.len() as u64;
            tally.series = series_in(&body);
            tally.times.push(took);
        }
    }
    Ok(tallies)
}

/// The samples of a text exposition: its lines that are neither blank nor comments.
fn series_in(text: &[u8]) -> usize {
    text.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_the_lines_that_are_not_comments() {
        let text = b"# HELP up Whether up.\n# TYPE up gauge\nup 1\nload1{cpu=\"0\"} 0.5\n\n";
        assert_eq!(series_in(text), 2);
        assert_eq!(series_in(b"{\"cpu\": 1}"), 1);
        assert_eq!(series_in(b""), 0);
    }
}
