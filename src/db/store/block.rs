//! How a block keeps a device's polls over a closed stretch of time: as columns, the
//! polls' times in one and each series' values in its own, each compressed with
//! [pco](https://docs.rs/pco) (chosen over Gorilla-style XOR by measurement: on the
//! store benchmark's agent-shaped fleet 1.7 bytes a reading against 5.4 at a day of
//! polls a minute, 2.2 against 3.3 for values of `f32` precision; BENCHMARKS.md).
//!
//! Layout: a version byte; the polls' count; the times column; the series' count; then
//! per series, sorted by name id, a varint of the difference from the previous id, the
//! count of polls it has a reading in, a bitmap of those polls when not every poll,
//! and its values column. A column is a kind byte and then: for a constant column its
//! one value (`codec::put_value`); for a compressed one its length and pco's bytes.

use std::collections::HashMap;

use pco::data_types::Number;
use pco::standalone::{simple_compress, simple_decompress_into};
use pco::ChunkConfig;

use super::codec::{
    get_value, get_varint, put_value, put_varint, unzigzag, whole, zigzag, DecodeError,
};

const VERSION: u8 = 1;
/// Polls a block may hold: sealing makes none larger (`seal::MAX_BLOCK_POLLS`); a
/// count beyond this is corrupt, and decoding never allocates for more.
pub const MAX_POLLS: usize = 1 << 20;
const CONSTANT: u8 = 0;
const PCO: u8 = 1;
/// Values one by one as `codec::put_value` writes them (pco refused the column).
const PLAIN: u8 = 2;

/// A device's polls as columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Columns {
    /// When each poll was taken, in the order given.
    pub times: Vec<i64>,
    /// Sorted by name id, each id once.
    pub series: Vec<Column>,
}

/// One series over the polls of a block.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name_id: i64,
    /// The polls (by index) it has a reading in, ascending; `None`: every poll.
    pub polls: Option<Vec<u32>>,
    /// One per poll it has a reading in.
    pub values: Vec<f64>,
}

impl Columns {
    /// The polls `(at_ms, readings sorted by name id)`, as columns.
    pub fn of_polls<'a>(polls: impl IntoIterator<Item = (i64, &'a [(i64, f64)])>) -> Columns {
        let mut times = Vec::new();
        let mut by_id: HashMap<i64, (Vec<u32>, Vec<f64>)> = HashMap::new();
        for (index, (at_ms, readings)) in polls.into_iter().enumerate() {
            times.push(at_ms);
            for &(id, value) in readings {
                let (polls, values) = by_id.entry(id).or_default();
                // A block holds at most a few thousand polls.
                polls.push(index as u32);
                values.push(value);
            }
        }
        let count = times.len();
        let mut series: Vec<Column> = by_id
            .into_iter()
            .map(|(name_id, (polls, values))| Column {
                name_id,
                polls: (polls.len() < count).then_some(polls),
                values,
            })
            .collect();
        series.sort_by_key(|c| c.name_id);
        Columns { times, series }
    }

    pub fn polls(&self) -> usize {
        self.times.len()
    }

    /// Readings held, all series.
    pub fn samples(&self) -> usize {
        self.series.iter().map(|c| c.values.len()).sum()
    }

    /// Calls `each(at_ms, readings)` for every poll, in the order kept, its readings
    /// sorted by name id.
    pub fn each_poll<E>(
        &self,
        mut each: impl FnMut(i64, &[(i64, f64)]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut next = vec![0usize; self.series.len()];
        let mut row = Vec::with_capacity(self.series.len());
        for (index, at_ms) in self.times.iter().enumerate() {
            row.clear();
            for (column, cursor) in self.series.iter().zip(next.iter_mut()) {
                let present = match &column.polls {
                    None => true,
                    Some(polls) => polls.get(*cursor) == Some(&(index as u32)),
                };
                if present {
                    if let Some(value) = column.values.get(*cursor) {
                        row.push((column.name_id, *value));
                    }
                    *cursor += 1;
                }
            }
            each(*at_ms, &row)?;
        }
        Ok(())
    }
}

/// Encodes `columns`.
pub fn encode(columns: &Columns) -> Vec<u8> {
    let count = columns.polls();
    let mut out = vec![VERSION];
    put_varint(&mut out, count as u64);
    put_times(&mut out, &columns.times);
    put_varint(&mut out, columns.series.len() as u64);
    let mut previous = 0i64;
    for column in &columns.series {
        put_varint(&mut out, column.name_id.wrapping_sub(previous) as u64);
        previous = column.name_id;
        put_varint(&mut out, column.values.len() as u64);
        if let Some(polls) = &column.polls {
            let mut bitmap = vec![0u8; count.div_ceil(8)];
            for &poll in polls {
                if let Some(byte) = bitmap.get_mut(poll as usize / 8) {
                    *byte |= 1 << (poll % 8);
                }
            }
            out.extend_from_slice(&bitmap);
        }
        put_values(&mut out, &column.values);
    }
    out
}

/// The columns `encode` wrote.
pub fn decode(bytes: &[u8]) -> Result<Columns, DecodeError> {
    let mut at = 0;
    match bytes.first() {
        Some(&VERSION) => at += 1,
        _ => return Err(DecodeError("not a block of a known version")),
    }
    let count = get_varint(bytes, &mut at)?;
    if count > MAX_POLLS as u64 {
        return Err(DecodeError("more polls than a block holds"));
    }
    let count = count as usize;
    let times = get_times(bytes, &mut at, count)?;
    let series_count = get_varint(bytes, &mut at)?;
    if series_count > bytes.len() as u64 {
        return Err(DecodeError("series count larger than the data"));
    }
    let mut series = Vec::with_capacity(series_count as usize);
    let mut previous = 0i64;
    for _ in 0..series_count {
        let name_id = previous.wrapping_add(get_varint(bytes, &mut at)? as i64);
        previous = name_id;
        let present = get_varint(bytes, &mut at)?;
        if present > count as u64 {
            return Err(DecodeError("a series in more polls than the block has"));
        }
        let present = present as usize;
        let polls = if present < count {
            let bitmap = bytes
                .get(at..at + count.div_ceil(8))
                .ok_or(DecodeError("bitmap cut short"))?;
            at += bitmap.len();
            let polls: Vec<u32> = (0..count as u32)
                .filter(|poll| bitmap[*poll as usize / 8] & (1 << (poll % 8)) != 0)
                .collect();
            if polls.len() != present {
                return Err(DecodeError("bitmap does not match the series' count"));
            }
            Some(polls)
        } else {
            None
        };
        let values = get_values(bytes, &mut at, present)?;
        series.push(Column {
            name_id,
            polls,
            values,
        });
    }
    if at != bytes.len() {
        return Err(DecodeError("bytes left after the last series"));
    }
    Ok(Columns { times, series })
}

fn put_times(out: &mut Vec<u8>, times: &[i64]) {
    put_column(
        out,
        times,
        |a, b| a == b,
        |out, t| put_varint(out, zigzag(t)),
    );
}

fn get_times(bytes: &[u8], at: &mut usize, count: usize) -> Result<Vec<i64>, DecodeError> {
    get_column(bytes, at, count, |bytes, at| {
        get_varint(bytes, at).map(unzigzag)
    })
}

fn put_values(out: &mut Vec<u8>, values: &[f64]) {
    put_column(out, values, |a, b| a.to_bits() == b.to_bits(), put_flagged);
}

fn get_values(bytes: &[u8], at: &mut usize, count: usize) -> Result<Vec<f64>, DecodeError> {
    get_column(bytes, at, count, get_flagged)
}

/// A column: one value when all are `same`, pco's bytes otherwise (or, should pco
/// refuse them, each value as `put_one` writes it).
fn put_column<T: Number>(
    out: &mut Vec<u8>,
    numbers: &[T],
    same: impl Fn(&T, &T) -> bool,
    put_one: impl Fn(&mut Vec<u8>, T),
) {
    match numbers {
        [] => out.push(CONSTANT),
        [first, rest @ ..] if rest.iter().all(|n| same(n, first)) => {
            out.push(CONSTANT);
            put_one(out, *first);
        }
        _ => match simple_compress(numbers, &ChunkConfig::default()) {
            Ok(compressed) => {
                out.push(PCO);
                put_varint(out, compressed.len() as u64);
                out.extend_from_slice(&compressed);
            }
            Err(_) => {
                out.push(PLAIN);
                for &n in numbers {
                    put_one(out, n);
                }
            }
        },
    }
}

/// The `count` numbers of a column `put_column` wrote, each single one read by
/// `get_one`.
fn get_column<T: Number>(
    bytes: &[u8],
    at: &mut usize,
    count: usize,
    get_one: impl Fn(&[u8], &mut usize) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    match take_kind(bytes, at)? {
        CONSTANT if count == 0 => Ok(Vec::new()),
        CONSTANT => Ok(vec![get_one(bytes, at)?; count]),
        PCO => decompress(take_compressed(bytes, at)?, count),
        PLAIN => (0..count).map(|_| get_one(bytes, at)).collect(),
        _ => Err(DecodeError("unknown column kind")),
    }
}

/// A value with a byte before it saying whether it is kept as a whole number.
fn put_flagged(out: &mut Vec<u8>, value: f64) {
    let whole = whole(value);
    out.push(u8::from(whole.is_some()));
    put_value(out, value, whole);
}

fn get_flagged(bytes: &[u8], at: &mut usize) -> Result<f64, DecodeError> {
    let whole = take_kind(bytes, at)? == 1;
    get_value(bytes, at, whole)
}

/// A pco column of `count` numbers, read into a buffer of that size: a corrupt length
/// in pco's own header cannot make it allocate more.
fn decompress<T: Number>(compressed: &[u8], count: usize) -> Result<Vec<T>, DecodeError> {
    let mut numbers = vec![T::default(); count];
    let progress = simple_decompress_into(compressed, &mut numbers)
        .map_err(|_| DecodeError("compressed column corrupt"))?;
    if progress.n_processed != count || !progress.finished {
        return Err(DecodeError("compressed column of another length"));
    }
    Ok(numbers)
}

fn take_kind(bytes: &[u8], at: &mut usize) -> Result<u8, DecodeError> {
    let kind = *bytes.get(*at).ok_or(DecodeError("column cut short"))?;
    *at += 1;
    Ok(kind)
}

fn take_compressed<'a>(bytes: &'a [u8], at: &mut usize) -> Result<&'a [u8], DecodeError> {
    let len = get_varint(bytes, at)?;
    let len = usize::try_from(len).map_err(|_| DecodeError("column length out of range"))?;
    let compressed = bytes
        .get(*at..at.saturating_add(len))
        .ok_or(DecodeError("column cut short"))?;
    *at += len;
    Ok(compressed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every poll of `columns`, as `(at_ms, readings)`.
    fn polls_of(columns: &Columns) -> Vec<(i64, Vec<(i64, f64)>)> {
        let mut polls = Vec::new();
        columns
            .each_poll(|at, row| {
                polls.push((at, row.to_vec()));
                Ok::<_, ()>(())
            })
            .unwrap();
        polls
    }

    fn bits(polls: &[(i64, Vec<(i64, f64)>)]) -> Vec<(i64, Vec<(i64, u64)>)> {
        polls
            .iter()
            .map(|(at, row)| (*at, row.iter().map(|(id, v)| (*id, v.to_bits())).collect()))
            .collect()
    }

    #[test]
    fn a_days_steady_series_take_a_few_bytes_and_moving_ones_compress() {
        // A day of polls a minute: `up` steady, a size steady, a counter growing,
        // a percentage moving in hundredths.
        let polls: Vec<(i64, Vec<(i64, f64)>)> = (0..1440i64)
            .map(|k| {
                let wave = ((k as f64) / 90.0).sin();
                (
                    1_800_000_000_000 + k * 60_000 + k % 3,
                    vec![
                        (1, 1.0),
                        (2, 8_589_934_592.0),
                        (3, (1_000_000 + k * 4_096) as f64),
                        (4, ((40.0 + 20.0 * wave) * 100.0).round() / 100.0),
                    ],
                )
            })
            .collect();
        let columns = Columns::of_polls(polls.iter().map(|(at, r)| (*at, r.as_slice())));
        assert_eq!((columns.polls(), columns.samples()), (1440, 4 * 1440));
        let bytes = encode(&columns);
        // The poll layout takes 2–9 bytes a reading; here it is a fraction of one.
        assert!(bytes.len() < 1440 * 4 / 2, "{} bytes", bytes.len());
        let back = decode(&bytes).unwrap();
        assert_eq!(back, columns);
        assert_eq!(bits(&polls_of(&back)), bits(&polls));
    }

    #[test]
    fn series_missing_from_some_polls_come_back_in_their_own_polls() {
        let polls = vec![
            (10, vec![(1, 1.0), (5, 2.5)]),
            (20, vec![(1, 1.0)]),
            (30, vec![]),
            (25, vec![(5, -0.0), (9, f64::MAX)]),
        ];
        let columns = Columns::of_polls(polls.iter().map(|(at, r)| (*at, r.as_slice())));
        let back = decode(&encode(&columns)).unwrap();
        assert_eq!(bits(&polls_of(&back)), bits(&polls));
        assert_eq!(back.series[0].polls, Some(vec![0, 1]));
        let empty = Columns::default();
        assert_eq!(decode(&encode(&empty)).unwrap(), empty);
    }

    #[test]
    fn bytes_not_written_by_encode_are_an_error() {
        let polls = [
            (10, vec![(1, 1.5), (2, 7.0)]),
            (20, vec![(1, 2.5), (2, 8.0)]),
        ];
        let bytes = encode(&Columns::of_polls(
            polls.iter().map(|(at, r)| (*at, r.as_slice())),
        ));
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 0]).is_err());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
            (0u32..10_000).prop_map(|n| f64::from(n) / 100.0),
            Just(0.0),
        ]
    }

    proptest! {
        #[test]
        fn any_polls_come_back_bit_for_bit(
            polls in proptest::collection::vec(
                (any::<i64>(), proptest::collection::btree_map(0i64..40, value(), 0..8)),
                0..60,
            )
        ) {
            let polls: Vec<(i64, Vec<(i64, f64)>)> = polls
                .into_iter()
                .map(|(at, row)| (at, row.into_iter().collect()))
                .collect();
            let columns = Columns::of_polls(polls.iter().map(|(at, r)| (*at, r.as_slice())));
            let back = decode(&encode(&columns)).unwrap();
            prop_assert_eq!(bits(&polls_of(&back)), bits(&polls));
        }

        #[test]
        fn a_block_with_bytes_changed_decodes_or_fails_cleanly(
            changes in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
        ) {
            let polls: Vec<(i64, Vec<(i64, f64)>)> = (0..300i64)
                .map(|k| (k * 1000, vec![(1, (k * 7 % 13) as f64 / 4.0), (2, (k * k) as f64)]))
                .collect();
            let mut bytes = encode(&Columns::of_polls(polls.iter().map(|(at, r)| (*at, r.as_slice()))));
            for (at, byte) in changes {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            let _ = decode(&bytes);
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut with_version = vec![VERSION];
            with_version.extend_from_slice(&bytes);
            let _ = decode(&with_version);
        }
    }
}
