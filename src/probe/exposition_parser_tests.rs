//! The exposition parser on the grammar's corners: label sets written every way the
//! format allows, escapes, timestamps, repeated series, family types, and text that
//! is not an exposition.

use super::*;
use crate::metrics::series::series;

/// The one sample of `text`.
fn only(text: &str) -> ExpositionSample {
    let parsed = parse_exposition(text).unwrap();
    assert_eq!(parsed.skipped_lines, 0, "{text:?}");
    assert_eq!(parsed.samples.len(), 1, "{text:?}: {:?}", parsed.samples);
    parsed.samples.into_iter().next().unwrap()
}

fn keys(parsed: &ParsedExposition) -> Vec<&str> {
    parsed
        .samples
        .iter()
        .map(ExpositionSample::series)
        .collect()
}

#[test]
fn what_is_not_an_exposition_is_an_error() {
    for garbage in [
        "up",
        "<!DOCTYPE html>\n<html><body>Not Found</body></html>\n",
        "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n</body>\n</html>\n",
        "{\"cpu_usage_percent\": 3}",
        "hello world",
        "metric{label=unquoted} 1",
        "metric{label=\"unterminated} 1",
        "metric{label=\"v\" 1",
        "metric{label=\"v\"}",
        "metric 1 2 3",
        "metric 1 1.5",
        "metric one",
        "metric.name 1",
        "1metric 1",
        "\u{1}\u{2}\u{fffd}garbage\u{0}",
    ] {
        let err = parse_exposition(garbage).unwrap_err();
        assert!(err.starts_with("line 1 is "), "{garbage:?}: {err}");
    }
    let err = parse_exposition("# HELP x x\n\nnot an exposition\n").unwrap_err();
    assert!(
        err.contains("line 3") && err.contains("`not an exposition`"),
        "{err}"
    );
    assert_eq!(
        parse_exposition("up").unwrap_err(),
        "line 1 is not a sample, a comment or a blank line: `up`"
    );
    // A long line is quoted by its start.
    let long = format!("<p>{}</p>", "x".repeat(200));
    let err = parse_exposition(&long).unwrap_err();
    assert!(err.ends_with("…`") && err.len() < 200, "{err}");
    // Blanks and comments only: an exposition without samples.
    for empty in [
        "",
        "\n\n",
        "# HELP nothing here\n# TYPE nothing gauge\n",
        "  \t\n",
    ] {
        assert_eq!(parse_exposition(empty), Ok(ParsedExposition::default()));
    }
}

#[test]
fn one_unreadable_line_is_skipped_not_fatal() {
    let parsed =
        parse_exposition("a 1\nthis is not a sample\nb{x=\"1\",x=\"2\"} 3\nc 2\n").unwrap();
    assert_eq!(keys(&parsed), ["a", "c"]);
    assert_eq!(parsed.skipped_lines, 2);
}

#[test]
fn escapes_round_trip() {
    let line = r#"odd{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\"",list="a,b=c",brace="x}y{",empty=""} 1.5"#;
    let sample = only(line);
    assert_eq!(sample.label("path").as_deref(), Some(r"C:\DIR\FILE.TXT"));
    assert_eq!(
        sample.label("error").as_deref(),
        Some("Cannot find file:\n\"FILE.TXT\"")
    );
    assert_eq!(sample.label("list").as_deref(), Some("a,b=c"));
    assert_eq!(sample.label("brace").as_deref(), Some("x}y{"));
    assert_eq!(sample.label("empty").as_deref(), Some(""));
    assert_eq!(sample.label("missing"), None);
    let names: Vec<&str> = sample.labels().map(|(k, _)| k).collect();
    assert_eq!(names, ["brace", "empty", "error", "list", "path"]);

    let written = sample.series().to_string();
    assert_eq!(
        written,
        r#"odd{brace="x}y{",empty="",error="Cannot find file:\n\"FILE.TXT\"",list="a,b=c",path="C:\\DIR\\FILE.TXT"}"#
    );
    // The key reads back as the same sample.
    assert_eq!(only(&format!("{written} 1.5\n")), sample);
}

#[test]
fn a_backslash_that_starts_no_escape_is_kept_as_a_character() {
    // Not an escape the format defines: the value holds the backslash as written,
    // and the key writes it escaped, as the series writer does.
    let sample = only(r#"win{dir="C:\temp",tab="a\tb",end="x\\"} 1"#);
    assert_eq!(sample.label("dir").as_deref(), Some(r"C:\temp"));
    assert_eq!(sample.label("tab").as_deref(), Some(r"a\tb"));
    assert_eq!(sample.label("end").as_deref(), Some(r"x\"));
    assert_eq!(
        sample.series(),
        series(
            "win",
            &[("dir", r"C:\temp"), ("end", r"x\"), ("tab", r"a\tb")]
        )
    );
    assert_eq!(only(&format!("{} 1", sample.series())), sample);
}

#[test]
fn keys_are_written_as_the_series_writer_writes_them() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("load1 0.5", &[]),
        (
            r#"disk{mount="/",device="sda1"} 1"#,
            &[("device", "sda1"), ("mount", "/")],
        ),
        (
            r#"disk{device="sda1",mount="/"} 1"#,
            &[("device", "sda1"), ("mount", "/")],
        ),
        (
            r#"t{b="2",a="1",c="3"} 1"#,
            &[("a", "1"), ("b", "2"), ("c", "3")],
        ),
        (r#"q{s="say \"hi\"\n"} 1"#, &[("s", "say \"hi\"\n")]),
        (r#"u{s="ünïcødé ✓"} 1"#, &[("s", "ünïcødé ✓")]),
        (
            r#"Z{_b="1",B="2",a_1="3"} 1"#,
            &[("B", "2"), ("_b", "1"), ("a_1", "3")],
        ),
    ];
    for (line, labels) in cases {
        let sample = only(line);
        let name = line.split(['{', ' ']).next().unwrap();
        assert_eq!(sample.series(), series(name, labels), "{line}");
        assert_eq!(sample.name(), name);
        let read: Vec<(&str, String)> = sample.labels().map(|(k, v)| (k, v.into_owned())).collect();
        let expected: Vec<(&str, String)> =
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        assert_eq!(read, expected, "{line}");
    }
}

#[test]
fn timestamps_are_ignored() {
    let parsed = parse_exposition(
        "a 1 1395066363000\n\
         b{x=\"y\"} 2 -5\n\
         c +Inf 1395066363000\n\
         d 4\n",
    )
    .unwrap();
    assert_eq!(parsed.skipped_lines, 0);
    assert_eq!(keys(&parsed), ["a", "b{x=\"y\"}", "d"]);
    assert_eq!(parsed.value("a"), Some(1.0));
    assert_eq!(parsed.value("b{x=\"y\"}"), Some(2.0));
    // A timestamp that is not milliseconds, or more after it: not a sample line.
    let parsed = parse_exposition("a 1 1.5\nb 2 3 4\nc 3 now\nd 4\n").unwrap();
    assert_eq!(keys(&parsed), ["d"]);
    assert_eq!(parsed.skipped_lines, 3);
}

#[test]
fn spaces_around_tokens_are_tolerated() {
    for line in [
        r#"a{b="1",c="2"} 3"#,
        r#"a { b = "1" , c = "2" } 3"#,
        "a{b=\"1\",\tc=\"2\"}\t3\t123",
        r#"  a{c="2",b="1"}   3   "#,
        r#"a{ c="2", b="1", }3"#,
    ] {
        let sample = only(line);
        assert_eq!(sample.series(), r#"a{b="1",c="2"}"#, "{line:?}");
        assert_eq!(sample.value(), 3.0, "{line:?}");
    }
    // Spaces inside a value are the value's.
    let sample = only(r#"a{b=" 1 "} 3"#);
    assert_eq!(sample.label("b").as_deref(), Some(" 1 "));
}

#[test]
fn a_trailing_comma_and_an_empty_label_set_are_allowed() {
    assert_eq!(only(r#"a{b="1",} 3"#).series(), r#"a{b="1"}"#);
    let empty = only("a{} 3");
    assert_eq!(empty.series(), "a");
    assert_eq!(empty.label_set(), "");
    assert_eq!(empty.labels().count(), 0);
    // `a{}` and `a` are the same series.
    let parsed = parse_exposition("a{} 1\na 2\n").unwrap();
    assert_eq!(keys(&parsed), ["a"]);
    assert_eq!(parsed.value("a"), Some(1.0));
}

#[test]
fn names_with_colons_parse() {
    let parsed = parse_exposition(
        "# TYPE job:http_requests:rate5m gauge\n\
         job:http_requests:rate5m{job=\"api\"} 12.5\n\
         :leading_colon 1\n\
         _underscore 2\n",
    )
    .unwrap();
    assert_eq!(
        keys(&parsed),
        [
            r#"job:http_requests:rate5m{job="api"}"#,
            ":leading_colon",
            "_underscore"
        ]
    );
    assert_eq!(parsed.samples[0].kind(), SampleKind::Gauge);
    assert_eq!(parsed.samples[0].name(), "job:http_requests:rate5m");
}

#[test]
fn a_repeated_series_keeps_its_first_sample() {
    let parsed = parse_exposition(
        "a{x=\"1\",y=\"2\"} 1\n\
         a 3\n\
         a{y=\"2\",x=\"1\"} 2\n\
         a{ x=\"1\" , y=\"2\" } 5\n\
         a 4\n\
         a{x=\"1\"} 6\n",
    )
    .unwrap();
    assert_eq!(parsed.skipped_lines, 0);
    assert_eq!(keys(&parsed), [r#"a{x="1",y="2"}"#, "a", r#"a{x="1"}"#]);
    let values: Vec<f64> = parsed.samples.iter().map(ExpositionSample::value).collect();
    assert_eq!(values, [1.0, 3.0, 6.0]);
}

#[test]
fn many_series_are_told_apart() {
    // More series than the table starts with room for, so it grows while it is read.
    let text: String = (0..5000)
        .map(|n| format!("m{{n=\"{}\"}} {n}\n", n % 2500))
        .collect();
    let parsed = parse_exposition(&text).unwrap();
    assert_eq!(parsed.samples.len(), 2500);
    for (n, sample) in parsed.samples.iter().enumerate() {
        assert_eq!(sample.value(), n as f64);
    }
}

#[test]
fn non_finite_values_are_left_out() {
    let parsed = parse_exposition("a NaN\nb +Inf\nc -Inf\nd 4\ne{x=\"1\"} NaN 123\n").unwrap();
    assert_eq!(parsed.skipped_lines, 0);
    assert_eq!(keys(&parsed), ["d"]);
    // Only non-finite values and a broken line: no sample, so not an exposition.
    assert!(parse_exposition("a NaN\nbroken line\n").is_err());
}

#[test]
fn values_are_read_as_the_format_writes_them() {
    for (text, value) in [
        ("a 1", 1.0),
        ("a -1.5e-3", -1.5e-3),
        ("a 2.70553174016e+11", 2.70553174016e+11),
        ("a +7", 7.0),
        ("a .5", 0.5),
        ("a 0", 0.0),
    ] {
        assert_eq!(only(text).value(), value, "{text}");
    }
}

#[test]
fn family_types_give_each_sample_its_kind() {
    let parsed = parse_exposition(
        "before_type 1\n\
         # TYPE before_type counter\n\
         # HELP http_requests_total The total number of HTTP requests.\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
         # TYPE temperature gauge\n\
         temperature 21\n\
         # TYPE latency histogram\n\
         latency_bucket{le=\"0.05\"} 24054\n\
         latency_bucket{le=\"+Inf\"} 144320\n\
         latency_sum 53423\n\
         latency_count 144320\n\
         # TYPE rpc summary\n\
         rpc{quantile=\"0.5\"} 4773\n\
         rpc_sum 1.7560473e+07\n\
         rpc_count 2693\n\
         rpc_bucket 1\n\
         # TYPE other untyped\n\
         other 1\n\
         # TYPE strange gaugehistogram\n\
         strange 1\n\
         latency_bucket{le=\"1\"} 144000\n",
    )
    .unwrap();
    assert_eq!(parsed.skipped_lines, 0);
    let kinds: Vec<(&str, SampleKind)> = parsed
        .samples
        .iter()
        .map(|s| (s.series(), s.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("before_type", SampleKind::Untyped),
            (
                r#"http_requests_total{code="200",method="post"}"#,
                SampleKind::Counter
            ),
            ("temperature", SampleKind::Gauge),
            (r#"latency_bucket{le="0.05"}"#, SampleKind::Bucket),
            (r#"latency_bucket{le="+Inf"}"#, SampleKind::Bucket),
            ("latency_sum", SampleKind::Sum),
            ("latency_count", SampleKind::Count),
            (r#"rpc{quantile="0.5"}"#, SampleKind::Quantile),
            ("rpc_sum", SampleKind::Sum),
            ("rpc_count", SampleKind::Count),
            ("rpc_bucket", SampleKind::Untyped),
            ("other", SampleKind::Untyped),
            ("strange", SampleKind::Untyped),
            // A family's samples after another family's: its type is remembered.
            (r#"latency_bucket{le="1"}"#, SampleKind::Bucket),
        ]
    );
}

#[test]
fn label_sets_compare_as_written_in_the_key() {
    let parsed = parse_exposition(
        "size{device=\"sda\",mountpoint=\"/\"} 1\n\
         free{mountpoint=\"/\", device=\"sda\"} 2\n\
         plain 3\n",
    )
    .unwrap();
    let [size, free, plain] = &parsed.samples[..] else {
        panic!("{parsed:?}");
    };
    assert_eq!(size.label_set(), free.label_set());
    assert_eq!(size.label_set(), r#"device="sda",mountpoint="/""#);
    assert_eq!(plain.label_set(), "");
    assert_eq!(plain.clone().into_series(), "plain");
}
