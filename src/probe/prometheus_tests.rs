//! The prometheus probe on two real node_exporter scrapes (tests/fixtures), on odd
//! documents, at its series cap, and over HTTP (the parser's own tests are beside it,
//! in `exposition_parser_tests.rs`).

use std::collections::HashSet;

use super::*;
use crate::probe::SampleKind;

/// Two scrapes of Debian 12's `prometheus-node-exporter` 1.5, three seconds apart.
const SCRAPE_1: &str = include_str!("../../tests/fixtures/node_exporter_1.prom");
const SCRAPE_2: &str = include_str!("../../tests/fixtures/node_exporter_2.prom");

/// The value on the line of `text` that starts with `series` (written as the
/// exporter writes it: labels sorted, as [`ExpositionSample::series`] does).
fn value_in(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} is not in the document"))
        .trim()
        .parse()
        .unwrap()
}

/// The lines of `text` for metric `name`, with labels.
fn lines_of<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.lines()
        .filter(move |line| line.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
}

/// The value of label `label` on an exposition line, read from the text.
fn label_in<'a>(line: &'a str, label: &str) -> &'a str {
    let start = line.find(&format!("{label}=\"")).unwrap() + label.len() + 2;
    let len = line[start..].find('"').unwrap();
    &line[start..start + len]
}

fn line_value(line: &str) -> f64 {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// CPU seconds `(idle, total)` in `text`, of core `core` or of every core.
fn cpu_times(text: &str, core: Option<&str>) -> (f64, f64) {
    lines_of(text, "node_cpu_seconds_total")
        .filter(|line| core.is_none_or(|core| label_in(line, "cpu") == core))
        .fold((0.0, 0.0), |(idle, total), line| {
            let value = line_value(line);
            let is_idle = matches!(label_in(line, "mode"), "idle" | "iowait");
            (idle + if is_idle { value } else { 0.0 }, total + value)
        })
}

/// The busy share of the CPU time between two scrapes, computed from the text.
fn busy_percent_between(before: &str, after: &str, core: Option<&str>) -> f64 {
    let ((idle_1, total_1), (idle_2, total_2)) = (cpu_times(before, core), cpu_times(after, core));
    100.0 * (1.0 - (idle_2 - idle_1) / (total_2 - total_1))
}

/// The network rates between two scrapes, computed from the text: the rate series
/// and its bytes per second, by the exporter's clock.
fn network_rates_between(before: &str, after: &str) -> Vec<(String, f64)> {
    let elapsed = value_in(after, "node_time_seconds") - value_in(before, "node_time_seconds");
    let mut rates = Vec::new();
    for (counter, rate) in [
        (
            "node_network_receive_bytes_total",
            series::NETWORK_RECEIVE_BYTES_PER_SECOND,
        ),
        (
            "node_network_transmit_bytes_total",
            series::NETWORK_TRANSMIT_BYTES_PER_SECOND,
        ),
    ] {
        for line in lines_of(after, counter) {
            let device = label_in(line, "device");
            let written = format!("{counter}{{device=\"{device}\"}}");
            let delta = value_in(after, &written) - value_in(before, &written);
            rates.push((series(rate, &[("interface", device)]), delta / elapsed));
        }
    }
    rates
}

/// Every reading a poll stores: the canonical series and the raw ones.
fn stored(mapped: &Mapped) -> Metrics {
    let mut all = mapped.metrics.clone();
    for (name, value) in mapped.raw.iter() {
        assert!(
            all.insert(name.to_string(), value).is_none(),
            "{name} twice"
        );
    }
    all
}

fn map(text: &str, previous: Option<&Counters>, received: Instant) -> (Metrics, Counters) {
    let mapped = to_metrics(parse_exposition(text).unwrap(), previous, received);
    assert_eq!(mapped.cut_series, 0);
    (stored(&mapped), mapped.counters)
}

/// The sample lines of `text`: `(series as written, value)`.
fn sample_lines(text: &str) -> Vec<(&str, f64)> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series, value.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_node_exporter_scrape_parses() {
    let parsed = parse_exposition(SCRAPE_1).unwrap();
    let sample_lines = SCRAPE_1
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .count();
    assert_eq!(parsed.skipped_lines, 0);
    assert_eq!(parsed.samples.len(), sample_lines);
    assert_eq!(
        parsed.value("node_memory_MemTotal_bytes"),
        Some(value_in(SCRAPE_1, "node_memory_MemTotal_bytes"))
    );
    let kind = |series: &str| {
        parsed
            .samples
            .iter()
            .find(|s| s.series() == series)
            .map(crate::probe::ExpositionSample::kind)
    };
    assert_eq!(
        kind(r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#),
        Some(SampleKind::Counter)
    );
    assert_eq!(kind("node_load1"), Some(SampleKind::Gauge));
    assert_eq!(
        kind("node_netstat_Icmp6_InErrors"),
        Some(SampleKind::Untyped)
    );
    assert_eq!(
        kind(r#"go_gc_duration_seconds{quantile="0.5"}"#),
        Some(SampleKind::Quantile)
    );
    assert_eq!(kind("go_gc_duration_seconds_sum"), Some(SampleKind::Sum));
    assert_eq!(
        kind("go_gc_duration_seconds_count"),
        Some(SampleKind::Count)
    );
}

#[test]
fn the_first_scrape_maps_memory_disks_load_and_uptime_but_no_rates() {
    let (metrics, _) = map(SCRAPE_1, None, Instant::now());

    let total = value_in(SCRAPE_1, "node_memory_MemTotal_bytes");
    let available = value_in(SCRAPE_1, "node_memory_MemAvailable_bytes");
    assert_eq!(metrics[series::MEMORY_TOTAL_BYTES], total);
    assert_eq!(metrics[series::MEMORY_USED_BYTES], total - available);
    assert_eq!(
        metrics[series::MEMORY_USAGE_PERCENT],
        series::percentage((total - available) / total * 100.0)
    );
    let swap_total = value_in(SCRAPE_1, "node_memory_SwapTotal_bytes");
    assert_eq!(metrics[series::SWAP_TOTAL_BYTES], swap_total);
    assert!((0.0..=100.0).contains(&metrics[series::SWAP_USAGE_PERCENT]));

    let mut mounts = 0;
    for line in lines_of(SCRAPE_1, "node_filesystem_size_bytes") {
        let mount = label_in(line, "mountpoint");
        let size = line_value(line);
        let percent = metrics.get(&series(series::DISK_USAGE_PERCENT, &[("mount", mount)]));
        if size > 0.0 {
            mounts += 1;
            let percent = percent.unwrap_or_else(|| panic!("no disk series for {mount}"));
            assert!((0.0..=100.0).contains(percent), "{mount}: {percent}");
            assert_eq!(
                metrics[&series(series::DISK_TOTAL_BYTES, &[("mount", mount)])],
                size
            );
            // As df counts it, from the fixture's free and available bytes.
            let of = |name: &str| {
                lines_of(SCRAPE_1, name)
                    .find(|l| label_in(l, "mountpoint") == mount)
                    .map(line_value)
                    .unwrap()
            };
            let free = of("node_filesystem_free_bytes");
            let available = of("node_filesystem_avail_bytes");
            let used = size - free;
            assert_eq!(
                metrics[&series(series::DISK_USED_BYTES, &[("mount", mount)])],
                used
            );
            assert_eq!(
                *percent,
                series::percentage(used * 100.0 / (used + available))
            );
        } else {
            assert_eq!(percent, None, "{mount} has size 0");
        }
    }
    assert!(mounts > 0, "the fixture lists no file system");

    assert_eq!(metrics[series::LOAD1], value_in(SCRAPE_1, "node_load1"));
    assert_eq!(metrics[series::LOAD5], value_in(SCRAPE_1, "node_load5"));
    assert_eq!(metrics[series::LOAD15], value_in(SCRAPE_1, "node_load15"));
    assert_eq!(
        metrics[series::UPTIME_SECONDS],
        value_in(SCRAPE_1, "node_time_seconds") - value_in(SCRAPE_1, "node_boot_time_seconds")
    );

    assert!(!metrics.contains_key(series::CPU_USAGE_PERCENT));
    assert!(!metrics
        .keys()
        .any(|k| k.starts_with(series::CPU_CORE_USAGE_PERCENT)
            || k.starts_with(series::NETWORK_RECEIVE_BYTES_PER_SECOND)
            || k.starts_with(series::NETWORK_TRANSMIT_BYTES_PER_SECOND)));
}

#[test]
fn the_second_scrape_adds_cpu_usage_and_network_rates() {
    let start = Instant::now();
    let (_, counters) = map(SCRAPE_1, None, start);
    let (metrics, _) = map(SCRAPE_2, Some(&counters), start + Duration::from_secs(3));

    let expected = series::percentage(busy_percent_between(SCRAPE_1, SCRAPE_2, None));
    let cpu = metrics[series::CPU_USAGE_PERCENT];
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");
    assert!((cpu - expected).abs() < 1e-6, "{cpu} != {expected}");
    for line in lines_of(SCRAPE_2, "node_cpu_seconds_total") {
        let core = label_in(line, "cpu");
        let key = series(series::CPU_CORE_USAGE_PERCENT, &[("core", core)]);
        let usage = metrics.get(&key).unwrap_or_else(|| panic!("no {key}"));
        assert!((0.0..=100.0).contains(usage), "{key}: {usage}");
    }

    let rates = network_rates_between(SCRAPE_1, SCRAPE_2);
    for rate in [
        series::NETWORK_RECEIVE_BYTES_PER_SECOND,
        series::NETWORK_TRANSMIT_BYTES_PER_SECOND,
    ] {
        let interfaces = rates
            .iter()
            .filter(|(key, _)| key.starts_with(rate))
            .count();
        assert!(interfaces > 0, "the fixture lists no interface");
    }
    for (key, expected) in rates {
        let got = metrics[&key];
        assert!(got >= 0.0, "{key}: {got}");
        assert_eq!(got, series::per_second(expected), "{key}");
    }
}

#[test]
fn counters_that_went_down_yield_no_rates() {
    let scrape = |cpu0: f64, cpu1: f64, eth0: f64, wlan0: f64| {
        format!(
            "node_cpu_seconds_total{{cpu=\"0\",mode=\"idle\"}} {cpu0}\n\
             node_cpu_seconds_total{{cpu=\"0\",mode=\"user\"}} {cpu0}\n\
             node_cpu_seconds_total{{cpu=\"1\",mode=\"idle\"}} {cpu1}\n\
             node_cpu_seconds_total{{cpu=\"1\",mode=\"user\"}} {cpu1}\n\
             node_network_receive_bytes_total{{device=\"eth0\"}} {eth0}\n\
             node_network_receive_bytes_total{{device=\"wlan0\"}} {wlan0}\n"
        )
    };
    let start = Instant::now();
    let (_, counters) = map(&scrape(100.0, 100.0, 5000.0, 5000.0), None, start);
    // Core 1 and eth0 start over (a CPU taken offline and back, a recreated
    // interface); core 0 and wlan0 count on.
    let later = start + Duration::from_secs(1);
    let (metrics, _) = map(&scrape(110.0, 3.0, 100.0, 6000.0), Some(&counters), later);
    let core = |n: &str| series(series::CPU_CORE_USAGE_PERCENT, &[("core", n)]);
    let receive = |i: &str| {
        series(
            series::NETWORK_RECEIVE_BYTES_PER_SECOND,
            &[("interface", i)],
        )
    };
    assert_eq!(metrics.get(&core("0")), Some(&50.0));
    assert_eq!(metrics.get(&core("1")), None);
    // The total counts only the cores that counted on.
    assert_eq!(metrics.get(series::CPU_USAGE_PERCENT), Some(&50.0));
    assert_eq!(metrics.get(&receive("wlan0")), Some(&1000.0));
    assert_eq!(metrics.get(&receive("eth0")), None);

    // Everything went down, as after a reboot: no rate at all.
    let rebooted = scrape(1.0, 1.0, 10.0, 10.0);
    let (metrics, _) = map(&rebooted, Some(&counters), later);
    let rates = canonical(&metrics, &rebooted);
    assert!(rates.is_empty(), "{rates:?}");
}

#[test]
fn rates_use_our_clock_when_the_exporter_tells_no_time() {
    let start = Instant::now();
    let (_, counters) = map(
        "node_network_receive_bytes_total{device=\"eth0\"} 1000\n",
        None,
        start,
    );
    let (metrics, _) = map(
        "node_network_receive_bytes_total{device=\"eth0\"} 3000\n",
        Some(&counters),
        start + Duration::from_secs(2),
    );
    let key = series(
        series::NETWORK_RECEIVE_BYTES_PER_SECOND,
        &[("interface", "eth0")],
    );
    assert_eq!(metrics.get(&key), Some(&1000.0));
    // No time passed: no rate rather than an infinite one.
    let (metrics, _) = map(
        "node_network_receive_bytes_total{device=\"eth0\"} 3000\n",
        Some(&counters),
        start,
    );
    assert_eq!(metrics.get(&key), None);
}

#[test]
fn temperatures_are_named_by_chip_and_sensor_or_by_zone() {
    let text = "node_hwmon_temp_celsius{chip=\"platform_coretemp_0\",sensor=\"temp1\"} 41.5\n\
                node_thermal_zone_temp{type=\"acpitz\",zone=\"0\"} 27.8\n";
    let (metrics, _) = map(text, None, Instant::now());
    let sensor = |name: &str| {
        metrics
            .get(&series(series::TEMPERATURE_CELSIUS, &[("sensor", name)]))
            .copied()
    };
    assert_eq!(sensor("platform_coretemp_0/temp1"), Some(41.5));
    assert_eq!(sensor("thermal_zone0/acpitz"), Some(27.8));
    assert_eq!(canonical(&metrics, text).len(), 2, "{metrics:?}");
}

#[test]
fn every_sample_of_a_node_exporter_scrape_is_stored_raw() {
    let (metrics, _) = map(SCRAPE_1, None, Instant::now());
    let lines = sample_lines(SCRAPE_1);
    for (series, value) in &lines {
        assert_eq!(metrics.get(*series), Some(value), "{series}");
    }
    // The sources of the canonical series, the summary's quantiles and sums included.
    for name in NODE_SERIES {
        let stored = metrics.keys().any(|k| series::name(k) == *name);
        let written = lines.iter().any(|(s, _)| series::name(s) == *name);
        assert_eq!(stored, written, "{name}");
    }
    assert!(metrics.contains_key(r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#));
    assert!(metrics.contains_key(r#"go_gc_duration_seconds{quantile="0.5"}"#));
    assert!(metrics.contains_key("go_gc_duration_seconds_sum"));
    assert_eq!(
        metrics["go_goroutines"],
        value_in(SCRAPE_1, "go_goroutines")
    );
}

/// The canonical series of a scrape: those it does not write itself.
fn canonical(metrics: &Metrics, text: &str) -> BTreeMap<String, f64> {
    let written: HashSet<&str> = sample_lines(text).into_iter().map(|(s, _)| s).collect();
    metrics
        .iter()
        .filter(|(key, _)| !written.contains(key.as_str()))
        .map(|(key, value)| (key.clone(), *value))
        .collect()
}

#[test]
fn the_fixture_maps_to_the_canonical_series_its_text_gives() {
    let start = Instant::now();
    let (first, counters) = map(SCRAPE_1, None, start);
    let (second, _) = map(SCRAPE_2, Some(&counters), start + Duration::from_secs(3));

    // Computed from the text alone, as the agent and `df` count.
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    for (total, free, [total_key, used_key, percent_key]) in [
        (
            "node_memory_MemTotal_bytes",
            "node_memory_MemAvailable_bytes",
            [
                series::MEMORY_TOTAL_BYTES,
                series::MEMORY_USED_BYTES,
                series::MEMORY_USAGE_PERCENT,
            ],
        ),
        (
            "node_memory_SwapTotal_bytes",
            "node_memory_SwapFree_bytes",
            [
                series::SWAP_TOTAL_BYTES,
                series::SWAP_USED_BYTES,
                series::SWAP_USAGE_PERCENT,
            ],
        ),
    ] {
        let (total, free) = (value_in(SCRAPE_2, total), value_in(SCRAPE_2, free));
        let percent = if total > 0.0 {
            (total - free) * 100.0 / total
        } else {
            0.0
        };
        expected.insert(total_key.into(), total);
        expected.insert(used_key.into(), total - free);
        expected.insert(percent_key.into(), percent);
    }
    for line in lines_of(SCRAPE_2, "node_filesystem_size_bytes") {
        let (mount, size) = (label_in(line, "mountpoint"), line_value(line));
        if size <= 0.0 {
            continue;
        }
        let labels = &line["node_filesystem_size_bytes".len()..line.rfind(' ').unwrap()];
        let free = value_in(SCRAPE_2, &format!("node_filesystem_free_bytes{labels}"));
        let avail = value_in(SCRAPE_2, &format!("node_filesystem_avail_bytes{labels}"));
        let used = size - free;
        let mount = [("mount", mount)];
        expected.insert(series(series::DISK_TOTAL_BYTES, &mount), size);
        expected.insert(series(series::DISK_USED_BYTES, &mount), used);
        expected.insert(
            series(series::DISK_USAGE_PERCENT, &mount),
            used * 100.0 / (used + avail),
        );
    }
    for (name, load) in [
        (series::LOAD1, "node_load1"),
        (series::LOAD5, "node_load5"),
        (series::LOAD15, "node_load15"),
    ] {
        expected.insert(name.into(), value_in(SCRAPE_2, load));
    }
    expected.insert(
        series::UPTIME_SECONDS.into(),
        value_in(SCRAPE_2, "node_time_seconds") - value_in(SCRAPE_2, "node_boot_time_seconds"),
    );
    expected.insert(
        series::CPU_USAGE_PERCENT.into(),
        busy_percent_between(SCRAPE_1, SCRAPE_2, None),
    );
    for line in lines_of(SCRAPE_2, "node_cpu_seconds_total") {
        let core = label_in(line, "cpu");
        let key = series(series::CPU_CORE_USAGE_PERCENT, &[("core", core)]);
        expected.insert(key, busy_percent_between(SCRAPE_1, SCRAPE_2, Some(core)));
    }
    expected.extend(network_rates_between(SCRAPE_1, SCRAPE_2));
    // Stored to a hundredth of a percent and a whole byte a second.
    for (key, value) in expected.iter_mut() {
        if key.contains("_percent") {
            *value = series::percentage(*value);
        } else if key.contains("_per_second") {
            *value = series::per_second(*value);
        }
    }

    let got = canonical(&second, SCRAPE_2);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, value) in &expected {
        let close = (got[key] - value).abs() <= 1e-9 * value.abs().max(1.0);
        assert!(close, "{key}: {} != {value}", got[key]);
    }
    // The first scrape: the same but for the rates, which need two.
    let first = canonical(&first, SCRAPE_1);
    assert!(first.contains_key(series::MEMORY_USAGE_PERCENT));
    assert!(!first
        .keys()
        .any(|k| k.starts_with("cpu_") || k.starts_with("network_")));
}

#[test]
fn the_raw_series_cap_keeps_the_first_series_and_every_canonical_one() {
    let extra = 100;
    let mut text = String::from("# TYPE filler gauge\n");
    // Written in descending order, so exposition order is not the sorted order.
    for n in (0..MAX_RAW_SERIES + extra).rev() {
        text.push_str(&format!("filler{{n=\"{n:05}\"}} {n}\n"));
    }
    text.push_str(
        "node_memory_MemTotal_bytes 1000\n\
         node_memory_MemAvailable_bytes 250\n\
         node_load1 0.5\n\
         node_filesystem_size_bytes{device=\"/dev/sda1\",fstype=\"ext4\",mountpoint=\"/\"} 100\n\
         node_filesystem_avail_bytes{device=\"/dev/sda1\",fstype=\"ext4\",mountpoint=\"/\"} 40\n",
    );
    let mapped = to_metrics(parse_exposition(&text).unwrap(), None, Instant::now());
    let metrics = stored(&mapped);
    assert_eq!(mapped.cut_series, extra + 5);
    let raw = metrics.keys().filter(|k| k.starts_with("filler")).count();
    assert_eq!(raw, MAX_RAW_SERIES);
    let kept = |n: usize| metrics.contains_key(&format!("filler{{n=\"{n:05}\"}}"));
    assert!(
        kept(MAX_RAW_SERIES + extra - 1),
        "the first series was dropped"
    );
    assert!(kept(extra), "the {MAX_RAW_SERIES}th series was dropped");
    assert!(!kept(extra - 1), "a series past the cap was kept");
    // The sources past the cap are cut, the canonical series computed from them are not.
    assert!(!metrics.contains_key("node_load1"));
    assert_eq!(metrics[series::MEMORY_USAGE_PERCENT], 75.0);
    assert_eq!(metrics[series::LOAD1], 0.5);
    assert_eq!(
        metrics[&series(series::DISK_USAGE_PERCENT, &[("mount", "/")])],
        60.0
    );
}

#[test]
fn a_raw_series_named_like_a_canonical_one_yields_to_it() {
    let mapped = to_metrics(
        parse_exposition(
            "load1 99\n\
             node_load1 0.5\n\
             memory_usage_percent 1\n\
             other 2\n",
        )
        .unwrap(),
        None,
        Instant::now(),
    );
    assert_eq!(mapped.cut_series, 0);
    let metrics = stored(&mapped);
    assert_eq!(metrics[series::LOAD1], 0.5);
    // No canonical memory series without the node_exporter's: the raw one stays.
    assert_eq!(metrics[series::MEMORY_USAGE_PERCENT], 1.0);
    assert_eq!(metrics["node_load1"], 0.5);
    assert_eq!(metrics["other"], 2.0);
    assert_eq!(metrics.len(), 4, "{metrics:?}");
}

#[test]
fn keys_move_into_the_metrics_as_the_series_writer_writes_them() {
    let (metrics, _) = map(
        "odd{path=\"C:\\\\DIR\",list=\"a,b=c}\", empty=\"\",} 1.5\n\
         # TYPE rpc summary\n\
         rpc{quantile=\"0.5\"} 4773\n\
         rpc_sum 1.7560473e+07\n\
         rpc_count 2693\n\
         # TYPE latency histogram\n\
         latency_bucket{le=\"+Inf\"} 144320\n",
        None,
        Instant::now(),
    );
    let keys: Vec<&str> = metrics.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            r#"latency_bucket{le="+Inf"}"#,
            series(
                "odd",
                &[("empty", ""), ("list", "a,b=c}"), ("path", r"C:\DIR")]
            )
            .as_str(),
            "rpc_count",
            "rpc_sum",
            r#"rpc{quantile="0.5"}"#,
        ]
    );
}

/// Serves fixture 1 then fixture 2 at `/metrics`, bytes that are not UTF-8 at
/// `/latin1`, and a word at `/garbage`.
fn serve() -> std::net::SocketAddr {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let scrapes = Arc::new(AtomicUsize::new(0));
    let server = HttpServer::new(move || {
        let scrapes = Arc::clone(&scrapes);
        App::new()
            .route(
                "/metrics",
                web::get().to(move || {
                    let n = scrapes.fetch_add(1, Ordering::SeqCst);
                    let body = if n == 0 { SCRAPE_1 } else { SCRAPE_2 };
                    async move { HttpResponse::Ok().body(body) }
                }),
            )
            .route(
                "/latin1",
                web::get()
                    .to(|| async { HttpResponse::Ok().body(&b"temp{place=\"caf\xe9\"} 1\n"[..]) }),
            )
            .route(
                "/garbage",
                web::get().to(|| async { HttpResponse::Ok().body("up") }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let address = server.addrs()[0];
    actix_rt::spawn(server.run());
    address
}

fn device(address: String) -> DeviceSpec {
    DeviceSpec {
        id: 1,
        company_id: 1,
        name: "node".into(),
        company: "acme".into(),
        address,
        kind: crate::domain::DeviceKind::Prometheus,
        expected_status: None,
    }
}

#[actix_rt::test]
async fn the_probe_reads_an_exposition_over_http() {
    let address = serve();
    let probe = PrometheusProbe::new(std::sync::Arc::default());
    let timeout = Duration::from_secs(5);
    let node = device(format!("http://{address}"));

    let first = probe.poll(&node, timeout).await;
    assert!(first.up, "{first:?}");
    assert_eq!(first.status_code, Some(200));
    assert_eq!(first.error, None);
    assert!(first.metrics.contains_key(series::MEMORY_USAGE_PERCENT));
    assert!(!first.metrics.contains_key(series::CPU_USAGE_PERCENT));
    // Every sample is stored, besides the canonical series: as raw series, in
    // exposition order.
    let lines = sample_lines(SCRAPE_1);
    let first_raw = first.raw.clone().unwrap();
    let read: Vec<(&str, f64)> = first_raw.iter().collect();
    assert_eq!(read, lines);

    // The next bodies have the same series: read by their values against the first
    // one's shape, the raw series named by the same list.
    for n in 0..2 {
        let next = probe.poll(&node, timeout).await;
        assert!(next.up, "{next:?}");
        // The same body twice tells no time passed: no rate the second time.
        let cpu = next.metrics.get(series::CPU_USAGE_PERCENT);
        assert_eq!(cpu.is_some(), n == 0, "{cpu:?}");
        assert!(cpu.is_none_or(|cpu| (0.0..=100.0).contains(cpu)), "{cpu:?}");
        let raw = next.raw.unwrap();
        assert!(std::sync::Arc::ptr_eq(&raw.names, &first_raw.names));
        assert_eq!(raw.iter().collect::<Vec<_>>(), sample_lines(SCRAPE_2));
    }

    let latin1 = probe
        .poll(&device(format!("http://{address}/latin1")), timeout)
        .await;
    assert!(!latin1.up);
    assert_eq!(latin1.status_code, Some(200));
    let error = latin1.error.unwrap();
    assert!(error.contains("not UTF-8"), "{error}");

    let garbage = probe
        .poll(&device(format!("http://{address}/garbage")), timeout)
        .await;
    assert!(!garbage.up);
    assert!(garbage.metrics.is_empty());
    let error = garbage.error.unwrap();
    assert_eq!(
        error,
        "answered something that is not a Prometheus text exposition: \
         line 1 is not a sample, a comment or a blank line: `up`"
    );
}
