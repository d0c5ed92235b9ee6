//! A reader of the Prometheus text exposition format (version 0.0.4), written by hand
//! for the `prometheus` probe: a monitor server reads hundreds of node_exporter-sized
//! bodies a second, so parsing must cost little CPU and about one allocation per sample.
//!
//! Each sample holds its series key, written exactly as [`crate::metrics::series`]
//! writes a series (`name{k="v",…}`, labels sorted by name, values escaped), and the
//! length of its metric name; labels are read back from the key on demand. A label set
//! that is already written that way (as exporters write it) is copied as it stands;
//! any other (labels out of order, spaces, a trailing comma, escapes the format does
//! not define) is rebuilt. Repeated series are found by a hash table of indices into
//! the samples, so no key is held twice.
//!
//! The grammar read: `# TYPE name type` lines give a family its type; every other line
//! starting with `#` is a comment (`# HELP` included); a sample line is a metric name
//! `[a-zA-Z_:][a-zA-Z0-9_:]*`, an optional label set `{k="v",…}` (values may hold
//! `\\`, `\"` and `\n` escapes, and any `}` or `,`; `{}` and a trailing comma are
//! allowed; spaces and tabs around tokens are tolerated), the value (`NaN`, `+Inf`
//! and `-Inf` as the format writes them) and an optional timestamp in milliseconds,
//! which is ignored.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry, HashTable};

/// Bytes of exposition per sample a node_exporter body holds is about 110 (HELP and
/// TYPE lines included); guessing a little fewer reserves room for every sample of
/// such a body at once, without growing the list as it fills.
const BYTES_PER_SAMPLE_ESTIMATE: usize = 80;

/// Why a line is not a sample when it does not even start like one.
const NOT_A_LINE: &str = "not a sample, a comment or a blank line";

/// What a sample is, from the `# TYPE` line of its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    Counter,
    Gauge,
    /// No `# TYPE` line, or a type this parser does not distinguish.
    Untyped,
    /// A histogram's `_bucket` sample (label `le`).
    Bucket,
    /// A summary's quantile sample (label `quantile`).
    Quantile,
    /// A histogram's or summary's `_sum`.
    Sum,
    /// A histogram's or summary's `_count`.
    Count,
}

/// One sample line of an exposition. Two samples are equal when their series, value
/// and kind are, however their lines wrote them.
#[derive(Debug, Clone)]
pub struct ExpositionSample {
    /// The series: the metric name, then the label set as
    /// [`crate::metrics::series::series`] writes it (absent when there are no labels).
    key: String,
    /// Where the metric name ends in `key`.
    name_len: usize,
    value: f64,
    kind: SampleKind,
    /// What the line wrote before its value (name and label set), when that is not
    /// `key`: labels out of order, blanks, `{}`.
    written: Option<Box<str>>,
}

impl ExpositionSample {
    /// The series key, to read its name and labels.
    pub fn key(&self) -> SeriesKey<'_> {
        SeriesKey {
            key: &self.key,
            name_len: self.name_len,
        }
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        self.key().name()
    }

    /// The sample as a Vigil series name: `name{label="value",…}`, labels sorted and
    /// escaped as the exposition format escapes them.
    pub fn series(&self) -> &str {
        &self.key
    }

    /// [`Self::series`], handed over without a copy.
    pub fn into_series(self) -> String {
        self.key
    }

    /// What the sample's line starts with, up to the blank before the value: the
    /// series as the exporter wrote it.
    pub fn written(&self) -> &str {
        self.written.as_deref().unwrap_or(&self.key)
    }

    pub fn value(&self) -> f64 {
        self.value
    }

    pub fn kind(&self) -> SampleKind {
        self.kind
    }

    /// The inside of the braces of [`Self::series`], empty when there are no labels:
    /// two samples have the same labels exactly when this is the same.
    pub fn label_set(&self) -> &str {
        self.key().label_set()
    }

    /// The labels, sorted by name, values unescaped.
    pub fn labels(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
        self.key().labels()
    }

    /// The value of label `name`, unescaped.
    pub fn label(&self, name: &str) -> Option<Cow<'_, str>> {
        self.key().label(name)
    }
}

impl PartialEq for ExpositionSample {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.name_len == other.name_len
            && self.value.to_bits() == other.value.to_bits()
            && self.kind == other.kind
    }
}

/// A series key as the parser writes it (`name{k="v",…}`, labels sorted), with where
/// its metric name ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesKey<'a> {
    key: &'a str,
    name_len: usize,
}

impl<'a> SeriesKey<'a> {
    /// `key` as the parser writes keys; `name_len` where its metric name ends.
    pub(super) fn new(key: &'a str, name_len: usize) -> Self {
        SeriesKey { key, name_len }
    }

    /// The metric name.
    pub fn name(self) -> &'a str {
        &self.key[..self.name_len]
    }

    /// The whole key.
    pub fn series(self) -> &'a str {
        self.key
    }

    /// The inside of the braces, empty when there are no labels: two keys have the
    /// same labels exactly when this is the same.
    pub fn label_set(self) -> &'a str {
        match self.key.len() - self.name_len {
            0 => "",
            _ => &self.key[self.name_len + 1..self.key.len() - 1],
        }
    }

    /// The labels, sorted by name, values unescaped.
    pub fn labels(self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> {
        RawLabels(self.label_set()).map(|(name, raw)| (name, unescape(raw)))
    }

    /// The value of label `name`, unescaped.
    pub fn label(self, name: &str) -> Option<Cow<'a, str>> {
        RawLabels(self.label_set())
            .find(|(key, _)| *key == name)
            .map(|(_, raw)| unescape(raw))
    }
}

/// The `(name, escaped value)` pairs of a label set written as the series keys write
/// it: `k="v",k2="v2"`.
struct RawLabels<'a>(&'a str);

impl<'a> Iterator for RawLabels<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, after) = self.0.split_once("=\"")?;
        let end = closing_quote(after)?;
        let rest = &after[end + 1..];
        self.0 = rest.strip_prefix(',').unwrap_or(rest);
        Some((name, &after[..end]))
    }
}

/// Where the quoted text that `s` starts inside ends: the first `"` no backslash
/// escapes.
fn closing_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some(i),
            // The escaped character is skipped whatever it is; a `"` or `\` cannot be
            // the continuation byte of a longer UTF-8 character.
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// A label value as a series key writes it, unescaped.
fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(escaped) => out.push(escaped),
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// A parsed text exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedExposition {
    /// In exposition order. Samples with a non-finite value (`NaN`, `±Inf`) are left
    /// out; a repeated series keeps its first sample.
    pub samples: Vec<ExpositionSample>,
    /// Lines that are neither blank, nor comments, nor samples this parser reads (see
    /// [`parse_exposition`]); they are skipped.
    pub skipped_lines: usize,
}

impl ParsedExposition {
    /// The value of `series`, written as [`ExpositionSample::series`] writes it.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.series() == series)
            .map(|s| s.value)
    }
}

/// Parses a Prometheus text exposition.
///
/// Lines that cannot be read are skipped and counted, as long as the document holds
/// at least one sample: one odd line of a third-party exporter must not hide the
/// rest. A document with unreadable lines and no sample is not an exposition: the
/// error quotes its first unreadable line. A document of only blanks and comments is
/// an empty exposition.
pub fn parse_exposition(text: &str) -> Result<ParsedExposition, String> {
    let mut reader = Reader::new(text.len() / BYTES_PER_SAMPLE_ESTIMATE);
    let mut first_bad: Option<(usize, &str, &str)> = None;
    for (number, line) in lines(text) {
        if let Err(why) = reader.read_line(line) {
            reader.parsed.skipped_lines += 1;
            if first_bad.is_none() {
                first_bad = Some((number, why, line));
            }
        }
    }
    match first_bad {
        Some((number, why, line)) if reader.parsed.samples.is_empty() => {
            Err(format!("line {number} is {why}: `{}`", snippet(line)))
        }
        _ => Ok(reader.parsed),
    }
}

/// The lines of `text` that are not blank, trimmed, with their numbers from 1: lines
/// as `str::lines` splits them, but found with `memchr`'s vector search (half of a
/// node_exporter body is HELP text, which is only ever skipped).
pub(super) fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = 0;
    let mut number = 0;
    std::iter::from_fn(move || {
        while start < text.len() {
            let end =
                memchr::memchr(b'\n', &text.as_bytes()[start..]).map_or(text.len(), |n| start + n);
            // A `\r` before the `\n` goes with the blanks.
            let line = text[start..end].trim();
            start = end + 1;
            number += 1;
            if !line.is_empty() {
                return Some((number, line));
            }
        }
        None
    })
}

/// What a trimmed, non-blank line is, read on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LineKind {
    /// A comment, `# TYPE` and `# HELP` lines included.
    Comment,
    /// A sample with a finite value.
    Sample,
    /// A sample whose value is `NaN` or infinite: left out.
    NotFinite,
    /// Not a line this parser reads: skipped.
    Unreadable,
}

/// What `line` (trimmed, not blank) is. Read without the lines before it, so nothing
/// is told about the sample's kind.
pub(super) fn line_kind(line: &str) -> LineKind {
    if line.starts_with('#') {
        return LineKind::Comment;
    }
    match Reader::new(0).read_sample(line) {
        Ok(Some(_)) => LineKind::Sample,
        Ok(None) => LineKind::NotFinite,
        Err(_) => LineKind::Unreadable,
    }
}

/// The start of a line, for an error message.
fn snippet(line: &str) -> String {
    const MAX_CHARS: usize = 60;
    match line.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

/// A family's type, from its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FamilyType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl FamilyType {
    fn parse(word: &str) -> FamilyType {
        match word {
            "counter" => FamilyType::Counter,
            "gauge" => FamilyType::Gauge,
            "histogram" => FamilyType::Histogram,
            "summary" => FamilyType::Summary,
            _ => FamilyType::Untyped,
        }
    }
}

/// One label of the sample line being read, as written there.
#[derive(Debug, Clone, Copy)]
struct LabelSpan<'t> {
    name: &'t str,
    /// Between the quotes, escapes as written.
    raw_value: &'t str,
    /// Backslashes of `raw_value` that start no escape the format defines: each is
    /// written doubled in the key, as the value holds it.
    stray_backslashes: usize,
}

/// What a label set's text says about how to write it in a key.
struct LabelSet<'t> {
    /// Between the braces, as written.
    inner: &'t str,
    /// Whether `inner` is already written as the key writes it.
    canonical: bool,
}

/// The state of one parse.
struct Reader<'t> {
    parsed: ParsedExposition,
    /// Family types by name, borrowed from the text.
    families: HashMap<&'t str, FamilyType, RandomState>,
    /// The family of the last `# TYPE` line: exporters write a family's samples right
    /// after it, so most samples find their type here without a lookup.
    last_family: Option<(&'t str, FamilyType)>,
    /// Every sample's key hash and index in `parsed.samples`, to find repeated series
    /// without a second copy of any key.
    seen: HashTable<(u64, usize)>,
    hasher: RandomState,
    /// The labels of the line being read; kept to spare an allocation per line.
    labels: Vec<LabelSpan<'t>>,
}

impl<'t> Reader<'t> {
    fn new(samples_estimate: usize) -> Self {
        Reader {
            parsed: ParsedExposition {
                samples: Vec::with_capacity(samples_estimate),
                skipped_lines: 0,
            },
            // A node_exporter types a family for about every second sample.
            families: HashMap::with_capacity_and_hasher(
                samples_estimate / 2,
                RandomState::default(),
            ),
            last_family: None,
            seen: HashTable::with_capacity(samples_estimate),
            hasher: RandomState::default(),
            labels: Vec::new(),
        }
    }

    /// Reads one trimmed, non-blank line.
    fn read_line(&mut self, line: &'t str) -> Result<(), &'static str> {
        if let Some(comment) = line.strip_prefix('#') {
            self.read_comment(comment);
            return Ok(());
        }
        let Some(sample) = self.read_sample(line)? else {
            return Ok(());
        };
        let hash = self.hasher.hash_one(sample.key.as_str());
        let samples = &mut self.parsed.samples;
        match self.seen.entry(
            hash,
            |&(_, index)| samples[index].key == sample.key,
            |&(hash, _)| hash,
        ) {
            // A repeated series keeps its first sample.
            Entry::Occupied(_) => {}
            Entry::Vacant(entry) => {
                entry.insert((hash, samples.len()));
                samples.push(sample);
            }
        }
        Ok(())
    }

    /// Notes the family type of a `# TYPE` line; any other comment says nothing.
    fn read_comment(&mut self, comment: &'t str) {
        let Some(after) = trim_blanks(comment).strip_prefix("TYPE") else {
            return;
        };
        if !after.starts_with([' ', '\t']) {
            return;
        }
        // `name kind`, read from the end: the type is a short word, the name need
        // not be scanned. A name that is not a metric name (or holds a blank) is
        // noted all the same: no sample's name is equal to it.
        let Some(blank) = after.rfind([' ', '\t']) else {
            return;
        };
        let kind = &after[blank + 1..];
        let name = trim_blanks(after[..blank].trim_end_matches([' ', '\t']));
        if name.is_empty() {
            return;
        }
        let kind = FamilyType::parse(kind);
        self.families.insert(name, kind);
        self.last_family = Some((name, kind));
    }

    /// The sample of a line that is not a comment; `None` when its value is not
    /// finite.
    fn read_sample(&mut self, line: &'t str) -> Result<Option<ExpositionSample>, &'static str> {
        // The name ends where the label set or the blanks before the value start;
        // `up`, or `name.x 1`, is not a sample.
        let name_len = memchr::memchr3(b'{', b' ', b'\t', line.as_bytes()).ok_or(NOT_A_LINE)?;
        let name = &line[..name_len];
        if !is_metric_name(name) {
            return Err(NOT_A_LINE);
        }
        let rest = trim_blanks(&line[name_len..]);
        self.labels.clear();
        let (label_set, rest) = match rest.strip_prefix('{') {
            Some(inside) => {
                let (set, rest) = self.read_label_set(inside)?;
                (Some(set), rest)
            }
            None => (None, rest),
        };
        let written = match label_set {
            Some(_) => &line[..line.len() - rest.len()],
            None => name,
        };
        let value = read_value_and_timestamp(rest)?;
        if !value.is_finite() {
            return Ok(None);
        }
        let kind = self.kind_of(name);
        let key = match label_set {
            None => name.to_string(),
            Some(_) if self.labels.is_empty() => name.to_string(),
            Some(LabelSet {
                inner,
                canonical: true,
            }) => {
                let mut key = String::with_capacity(name.len() + inner.len() + 2);
                key.push_str(name);
                key.push('{');
                key.push_str(inner);
                key.push('}');
                key
            }
            Some(_) => self.rebuilt_key(name)?,
        };
        let written = (written != key).then(|| written.into());
        Ok(Some(ExpositionSample {
            key,
            name_len,
            value,
            kind,
            written,
        }))
    }

    /// Reads the label set that `s` starts inside of (after its `{`) into
    /// `self.labels`; returns it and what follows its `}`.
    fn read_label_set(&mut self, s: &'t str) -> Result<(LabelSet<'t>, &'t str), &'static str> {
        let bytes = s.as_bytes();
        let mut canonical = true;
        let mut at = 0;
        loop {
            let token = skip_blanks(bytes, at);
            canonical &= token == at;
            at = token;
            match bytes.get(at) {
                None => return Err("a sample whose label set is not closed"),
                Some(b'}') => {
                    // `{}` or a trailing comma: not how a key writes it.
                    canonical &= !self.labels.is_empty() && bytes[at - 1] != b',';
                    let set = LabelSet {
                        inner: &s[..at],
                        canonical,
                    };
                    return Ok((set, &s[at + 1..]));
                }
                Some(_) => {}
            }
            let name_end = at + label_name_len(&s[at..]);
            if name_end == at {
                return Err("a sample with an invalid label name");
            }
            let name = &s[at..name_end];
            at = skip_blanks(bytes, name_end);
            canonical &= at == name_end;
            if bytes.get(at) != Some(&b'=') {
                return Err("a sample with a label name not followed by `=`");
            }
            let quote = skip_blanks(bytes, at + 1);
            canonical &= quote == at + 1;
            if bytes.get(quote) != Some(&b'"') {
                return Err("a sample with a label value not in double quotes");
            }
            let value_start = quote + 1;
            let (value_len, stray_backslashes) = quoted_len(&bytes[value_start..])
                .ok_or("a sample with an unterminated label value")?;
            let value_end = value_start + value_len;
            canonical &=
                stray_backslashes == 0 && self.labels.last().is_none_or(|last| last.name < name);
            self.labels.push(LabelSpan {
                name,
                raw_value: &s[value_start..value_end],
                stray_backslashes,
            });
            let after = value_end + 1;
            at = skip_blanks(bytes, after);
            canonical &= at == after;
            match bytes.get(at) {
                Some(b',') => at += 1,
                Some(b'}') => {}
                None => return Err("a sample whose label set is not closed"),
                Some(_) => return Err("a sample with labels not separated by commas"),
            }
        }
    }

    /// The key of a sample whose label set is not written as a key writes it: labels
    /// sorted by name, separated by bare commas, escapes as the format defines them.
    fn rebuilt_key(&mut self, name: &str) -> Result<String, &'static str> {
        let labels = &mut self.labels;
        labels.sort_unstable_by(|a, b| a.name.cmp(b.name));
        if labels.windows(2).any(|pair| pair[0].name == pair[1].name) {
            return Err("a sample with a repeated label");
        }
        // `name{`, `k="v"` and a `,` or the `}` per label.
        let len = name.len()
            + 1
            + labels
                .iter()
                .map(|l| l.name.len() + 4 + l.raw_value.len() + l.stray_backslashes)
                .sum::<usize>();
        let mut key = String::with_capacity(len);
        key.push_str(name);
        key.push('{');
        for (i, label) in labels.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(label.name);
            key.push_str("=\"");
            write_escaped(&mut key, label.raw_value);
            key.push('"');
        }
        key.push('}');
        Ok(key)
    }

    /// The kind of sample `name`, from the `# TYPE` lines read so far (its labels are
    /// in `self.labels`).
    fn kind_of(&self, name: &str) -> SampleKind {
        let family = |family: &str| match self.last_family {
            Some((last, kind)) if last == family => Some(kind),
            _ => self.families.get(family).copied(),
        };
        match family(name) {
            Some(FamilyType::Counter) => return SampleKind::Counter,
            Some(FamilyType::Gauge) => return SampleKind::Gauge,
            Some(FamilyType::Summary) if self.labels.iter().any(|l| l.name == "quantile") => {
                return SampleKind::Quantile
            }
            _ => {}
        }
        for (suffix, kind) in [
            ("_bucket", SampleKind::Bucket),
            ("_sum", SampleKind::Sum),
            ("_count", SampleKind::Count),
        ] {
            let Some(base) = name.strip_suffix(suffix) else {
                continue;
            };
            match family(base) {
                Some(FamilyType::Histogram) => return kind,
                Some(FamilyType::Summary) if kind != SampleKind::Bucket => return kind,
                _ => {}
            }
        }
        SampleKind::Untyped
    }
}

/// Appends a label value written between quotes in an exposition to a key, with the
/// escapes the format defines kept and any other backslash doubled: the value holds
/// that backslash as a character, which a key writes escaped.
fn write_escaped(out: &mut String, raw: &str) {
    let bytes = raw.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        if matches!(bytes.get(i + 1), Some(b'\\' | b'"' | b'n')) {
            i += 2;
            continue;
        }
        // `i` is at an ASCII backslash: a character boundary.
        out.push_str(&raw[copied..=i]);
        out.push('\\');
        i += 1;
        copied = i;
    }
    out.push_str(&raw[copied..]);
}

/// The length of the quoted text `bytes` starts inside of (after its `"`), and how
/// many of its backslashes start no escape the format defines; `None` when the quote
/// is not closed.
fn quoted_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut stray = 0;
    let mut i = 0;
    loop {
        match bytes.get(i)? {
            b'"' => return Some((i, stray)),
            b'\\' => {
                let escaped = bytes.get(i + 1)?;
                stray += usize::from(!matches!(escaped, b'\\' | b'"' | b'n'));
                i += 2;
            }
            _ => i += 1,
        }
    }
}

/// Whether `name` is a metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_metric_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    // Every byte is checked without a branch, so the check runs on vectors: names
    // are most of what a sample line holds.
    bytes.first().is_some_and(|c| !c.is_ascii_digit())
        && bytes.iter().fold(true, |ok, &c| {
            ok & (c.is_ascii_alphanumeric() | (c == b'_') | (c == b':'))
        })
}

/// The length of the label name `s` starts with: `[a-zA-Z_][a-zA-Z0-9_]*`; 0 when it
/// starts with none.
fn label_name_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => bytes
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .unwrap_or(bytes.len()),
        _ => 0,
    }
}

/// The blanks a line may hold between tokens.
fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn trim_blanks(s: &str) -> &str {
    let blanks = s.bytes().take_while(|&b| is_blank(b)).count();
    &s[blanks..]
}

/// The value of a sample line from what follows its name and label set: blanks, the
/// value, and an optional timestamp (whole milliseconds, ignored).
pub(super) fn read_value_and_timestamp(rest: &str) -> Result<f64, &'static str> {
    let (value, rest) = split_token(trim_blanks(rest));
    if value.is_empty() {
        return Err("a sample without a value");
    }
    let value = read_value(value).ok_or("a sample whose value is not a number")?;
    let (timestamp, rest) = split_token(trim_blanks(rest));
    if !timestamp.is_empty() && timestamp.parse::<i64>().is_err() {
        return Err("a sample whose timestamp is not a whole number of milliseconds");
    }
    if !trim_blanks(rest).is_empty() {
        return Err("a sample with more than a value and a timestamp");
    }
    Ok(value)
}

/// A sample's value. Most values exporters write are whole numbers (counts, bytes,
/// flags): those are read digit by digit, as exactly as the general reader, which
/// reads the rest (`NaN`, `+Inf` and `-Inf` as the format writes them too).
fn read_value(token: &str) -> Option<f64> {
    /// Up to 15 digits the number is below 2^53: exact in an f64.
    const EXACT_DIGITS: usize = 15;
    let bytes = token.as_bytes();
    if !bytes.is_empty() && bytes.len() <= EXACT_DIGITS && bytes.iter().all(u8::is_ascii_digit) {
        let whole = bytes
            .iter()
            .fold(0_u64, |n, &digit| n * 10 + u64::from(digit - b'0'));
        // Exact: below 2^53.
        return Some(whole as f64);
    }
    token.parse().ok()
}

/// The first position from `at` on that is not a blank.
fn skip_blanks(bytes: &[u8], at: usize) -> usize {
    bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| !is_blank(b)))
        .map_or(bytes.len(), |n| at + n)
}

/// Splits `s` (starting at a token) at the blank ending its first token.
fn split_token(s: &str) -> (&str, &str) {
    let end = s.bytes().position(is_blank).unwrap_or(s.len());
    s.split_at(end)
}

#[cfg(test)]
#[path = "exposition_parser_tests.rs"]
mod tests;
