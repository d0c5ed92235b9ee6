//! Reading an exposition against the one read before from the same endpoint. An
//! exporter writes the same series in the same order, each written the same way, at
//! every scrape; only the values move. So a later body is read by checking that each
//! sample line starts as the last body's line at its place did and reading its value:
//! no key is built, nothing is hashed, nothing is allocated but the list of values.
//! A body whose series differ in any way is not read here (the caller reads it in full
//! with [`super::parse_exposition`] and keeps its shape for the next); what is read
//! here is exactly what a full read would give.

use std::sync::Arc;

use super::exposition_parser::{
    line_kind, lines, read_value_and_timestamp, LineKind, ParsedExposition, SeriesKey,
};

/// The series of an exposition, in its order, and how its lines wrote each.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpositionShape {
    /// The series keys, as [`super::ExpositionSample::series`] writes them.
    keys: Arc<[Box<str>]>,
    /// Where each key's metric name ends.
    name_lens: Box<[u32]>,
    /// The keys whose line wrote them otherwise (labels out of order, blanks, `{}`),
    /// by index in increasing order, with what the line started with.
    written: Box<[(u32, Box<str>)]>,
}

/// The values of an exposition read against a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapedValues {
    /// One per key of the shape, in its order; all finite.
    pub values: Vec<f64>,
    /// Lines skipped as unreadable, as [`ParsedExposition::skipped_lines`].
    pub skipped_lines: usize,
}

impl ExpositionShape {
    /// The shape of `parsed` and its values, in exposition order; the keys move into
    /// the shape.
    pub fn of(parsed: ParsedExposition) -> (ExpositionShape, ShapedValues) {
        let count = parsed.samples.len();
        let mut keys = Vec::with_capacity(count);
        let mut name_lens = Vec::with_capacity(count);
        let mut values = Vec::with_capacity(count);
        let mut written = Vec::new();
        for (index, sample) in parsed.samples.into_iter().enumerate() {
            if sample.written() != sample.series() {
                // An exposition is at most a few MiB: its indices fit.
                written.push((index as u32, sample.written().into()));
            }
            name_lens.push(sample.name().len() as u32);
            values.push(sample.value());
            keys.push(sample.into_series().into_boxed_str());
        }
        let shape = ExpositionShape {
            keys: keys.into(),
            name_lens: name_lens.into(),
            written: written.into(),
        };
        let values = ShapedValues {
            values,
            skipped_lines: parsed.skipped_lines,
        };
        (shape, values)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in exposition order: one list shared by every reading of this shape.
    pub fn keys(&self) -> &Arc<[Box<str>]> {
        &self.keys
    }

    /// Key `index`, to read its name and labels.
    pub fn key(&self, index: usize) -> SeriesKey<'_> {
        SeriesKey::new(&self.keys[index], self.name_lens[index] as usize)
    }

    /// The values of `text`, if it holds this shape's series, in its order, written
    /// the same way (with non-finite samples and unreadable lines anywhere, left out
    /// and counted as a full read leaves them); `None` otherwise.
    pub fn read(&self, text: &str) -> Option<ShapedValues> {
        // An exposition without samples is an error when it has unreadable lines: a
        // full read says which.
        if self.is_empty() {
            return None;
        }
        let mut values = Vec::with_capacity(self.len());
        let mut skipped_lines = 0;
        let mut written = self.written.iter().peekable();
        for (_, line) in lines(text) {
            if line.starts_with('#') {
                continue;
            }
            let index = values.len();
            if let Some(key) = self.keys.get(index) {
                let start = match written.peek() {
                    Some((at, text)) if *at as usize == index => text,
                    _ => key,
                };
                let value = line
                    .strip_prefix(&**start)
                    .filter(|rest| rest.starts_with([' ', '\t']))
                    .and_then(|rest| read_value_and_timestamp(rest).ok())
                    .filter(|value| value.is_finite());
                if let Some(value) = value {
                    values.push(value);
                    if start != key {
                        written.next();
                    }
                    continue;
                }
            }
            // Not the next series: fine if a full read would leave the line out too.
            match line_kind(line) {
                LineKind::NotFinite | LineKind::Comment => {}
                LineKind::Unreadable => skipped_lines += 1,
                LineKind::Sample => return None,
            }
        }
        (values.len() == self.len()).then_some(ShapedValues {
            values,
            skipped_lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_exposition;
    use super::*;

    /// What a full read of `text` gives: keys and values.
    fn full(text: &str) -> (Vec<String>, Vec<f64>, usize) {
        let parsed = parse_exposition(text).unwrap();
        let skipped = parsed.skipped_lines;
        let (keys, values) = parsed
            .samples
            .iter()
            .map(|s| (s.series().to_string(), s.value()))
            .unzip();
        (keys, values, skipped)
    }

    fn shape_of(text: &str) -> ExpositionShape {
        ExpositionShape::of(parse_exposition(text).unwrap()).0
    }

    /// Reads `later` against the shape of `first`, and checks the answer against a
    /// full read of `later`.
    fn read_against(first: &str, later: &str) -> Option<ShapedValues> {
        let shape = shape_of(first);
        let read = shape.read(later);
        if let Some(read) = &read {
            let (keys, values, skipped) = full(later);
            let shape_keys: Vec<String> = shape.keys().iter().map(|k| k.to_string()).collect();
            assert_eq!(shape_keys, keys, "{later:?}");
            assert_eq!(read.values, values, "{later:?}");
            assert_eq!(read.skipped_lines, skipped, "{later:?}");
        }
        read
    }

    const FIRST: &str = "# HELP a An a.\n\
         # TYPE a counter\n\
         a 1\n\
         b{x=\"1\",y=\"2\"} 2 1700000000000\n\
         c{y=\"2\", x=\"1\"} 3\n\
         d{} 4\n\
         e\t5\n";

    #[test]
    fn a_later_body_of_the_same_series_is_read_by_its_values() {
        let later = "# HELP a An a.\n\
             # TYPE a counter\n\
             a 10\n\
             b{x=\"1\",y=\"2\"} 20.5 1700000001000\n\
             c{y=\"2\", x=\"1\"} -3e2\n\
             d{} 40\n\
             e\t50\n";
        let read = read_against(FIRST, later).unwrap();
        assert_eq!(read.values, [10.0, 20.5, -300.0, 40.0, 50.0]);
        // Comments, blanks and timestamps may change; the series may not.
        let other_comments =
            "\n\na 1\n# anything\nb{x=\"1\",y=\"2\"} 2\r\n  c{y=\"2\", x=\"1\"} 3\nd{} 4\ne 5";
        assert!(read_against(FIRST, other_comments).is_some());
    }

    #[test]
    fn a_body_whose_series_differ_is_not_read() {
        for later in [
            // One series fewer, one more, two swapped.
            "a 1\nb{x=\"1\",y=\"2\"} 2\nc{y=\"2\", x=\"1\"} 3\nd{} 4\n",
            "a 1\nb{x=\"1\",y=\"2\"} 2\nc{y=\"2\", x=\"1\"} 3\nd{} 4\ne 5\nf 6\n",
            "b{x=\"1\",y=\"2\"} 2\na 1\nc{y=\"2\", x=\"1\"} 3\nd{} 4\ne 5\n",
            // Another label value; the same labels written otherwise; a longer name.
            "a 1\nb{x=\"1\",y=\"3\"} 2\nc{y=\"2\", x=\"1\"} 3\nd{} 4\ne 5\n",
            "a 1\nb{y=\"2\",x=\"1\"} 2\nc{y=\"2\", x=\"1\"} 3\nd{} 4\ne 5\n",
            "ab 1\nb{x=\"1\",y=\"2\"} 2\nc{y=\"2\", x=\"1\"} 3\nd{} 4\ne 5\n",
            // A value that is not a number, a second timestamp.
            "a x\nb{x=\"1\",y=\"2\"} 2\nc{y=\"2\", x=\"1\"} 3\nd{} 4\ne 5\n",
            "a 1 2 3\nb{x=\"1\",y=\"2\"} 2\nc{y=\"2\", x=\"1\"} 3\nd{} 4\ne 5\n",
            // A series that turned NaN is left out by a full read: another shape.
            "a NaN\nb{x=\"1\",y=\"2\"} 2\nc{y=\"2\", x=\"1\"} 3\nd{} 4\ne 5\n",
            "",
        ] {
            assert_eq!(read_against(FIRST, later), None, "{later:?}");
        }
    }

    #[test]
    fn lines_a_full_read_leaves_out_are_left_out_here_too() {
        let later = "a 1\nz NaN\nb{x=\"1\",y=\"2\"} 2\nnot a line\nc{y=\"2\", x=\"1\"} 3\n\
             d{} 4\ny +Inf\ne 5\n";
        let read = read_against(FIRST, later).unwrap();
        assert_eq!(read.skipped_lines, 1);
        // A repeat of a series read already is kept out by a full read: not here.
        let repeated = "a 1\na 7\nb{x=\"1\",y=\"2\"} 2\nc{y=\"2\", x=\"1\"} 3\nd{} 4\ne 5\n";
        assert_eq!(read_against(FIRST, repeated), None);
        // An empty shape reads nothing: a full read tells an error from an empty body.
        assert_eq!(
            ExpositionShape::of(parse_exposition("# only\n").unwrap())
                .0
                .read("x"),
            None
        );
    }

    #[test]
    fn the_shape_keeps_each_key_with_its_name_and_labels() {
        let shape = shape_of(FIRST);
        assert_eq!(shape.len(), 5);
        assert_eq!(shape.key(2).series(), "c{x=\"1\",y=\"2\"}");
        assert_eq!(shape.key(2).name(), "c");
        assert_eq!(shape.key(2).label("y").as_deref(), Some("2"));
        assert_eq!(shape.key(3).series(), "d");
        assert_eq!(shape.key(3).label_set(), "");
    }
}
