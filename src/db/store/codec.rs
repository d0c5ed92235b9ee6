//! How one poll's readings are kept in one row: `(name id, value)` pairs sorted by name
//! id, as a count and then one entry per pair. An entry is a LEB128 varint holding the
//! difference from the previous name id shifted left by one, its low bit set when the
//! value is a whole number; then the value, a zigzag varint when whole (counters, bytes,
//! states: one to five bytes mostly) or its eight IEEE 754 bytes otherwise. A whole
//! number is one that converts back to the same bits, so every value, `-0.0` included,
//! reads back exactly.
//!
//! A rollup period's aggregates (`encode_aggregates`) are kept the same way, with a
//! count and four values per series.

use std::fmt;

/// The bytes of a poll were not written by `encode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub(super) &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stored poll is corrupt: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// A stored row that does not decode, as the query that read it fails.
pub fn corrupt(error: DecodeError) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(Box::new(error))
}

/// Largest whole number kept as a varint: beyond 2^53 not every integer is an f64.
const WHOLE_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Encodes `readings`, which must be sorted by name id with no id twice.
pub fn encode(readings: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + readings.len() * 4);
    put_varint(&mut out, readings.len() as u64);
    let mut previous = 0i64;
    for &(id, value) in readings {
        let delta = id.wrapping_sub(previous) as u64;
        previous = id;
        let whole = whole(value);
        put_varint(&mut out, (delta << 1) | u64::from(whole.is_some()));
        put_value(&mut out, value, whole);
    }
    out
}

/// The readings `encode` wrote, in name id order.
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>, DecodeError> {
    let mut at = 0;
    let count = get_varint(bytes, &mut at)?;
    // Every entry takes at least two bytes: a count beyond that is not ours.
    if count > bytes.len() as u64 {
        return Err(DecodeError("count larger than the data"));
    }
    let mut readings = Vec::with_capacity(count as usize);
    let mut previous = 0i64;
    for _ in 0..count {
        let head = get_varint(bytes, &mut at)?;
        let id = previous.wrapping_add((head >> 1) as i64);
        previous = id;
        readings.push((id, get_value(bytes, &mut at, head & 1 == 1)?));
    }
    if at != bytes.len() {
        return Err(DecodeError("bytes left after the last reading"));
    }
    Ok(readings)
}

/// The readings of one series over one period of a rollup: how many, their least,
/// greatest, sum and the last one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    pub count: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub last: f64,
}

impl Aggregate {
    /// One reading.
    pub fn of(value: f64) -> Self {
        Aggregate {
            count: 1,
            min: value,
            max: value,
            sum: value,
            last: value,
        }
    }

    /// A later reading.
    pub fn add(&mut self, value: f64) {
        self.merge(&Aggregate::of(value));
    }

    /// The readings of a later period.
    pub fn merge(&mut self, later: &Aggregate) {
        self.count += later.count;
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        self.sum += later.sum;
        self.last = later.last;
    }
}

/// Encodes a rollup period's `aggregates`, sorted by name id with no id twice: a
/// count, then per series a varint of the id's difference from the previous one
/// shifted left by five, its low bits saying whether the series was flat (bit 4: one
/// value throughout, its sum that value times the count) and which values are whole
/// numbers (bits 0–3); the count as a varint; then the one value of a flat series, or
/// min, max, sum and last, each as in `encode`. A series polled once in its period, or
/// not moving (`up`, sizes), takes two or three bytes.
pub fn encode_aggregates(aggregates: &[(i64, Aggregate)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + aggregates.len() * 6);
    put_varint(&mut out, aggregates.len() as u64);
    let mut previous = 0i64;
    for (id, a) in aggregates {
        let delta = id.wrapping_sub(previous) as u64;
        previous = *id;
        let flat = a.min.to_bits() == a.max.to_bits()
            && a.last.to_bits() == a.min.to_bits()
            && (a.min * a.count as f64).to_bits() == a.sum.to_bits();
        let all = [a.min, a.max, a.sum, a.last];
        let values: &[f64] = if flat { &all[..1] } else { &all };
        let mut head = u64::from(flat) << 4;
        for (bit, value) in values.iter().enumerate() {
            if whole(*value).is_some() {
                head |= 1 << bit;
            }
        }
        put_varint(&mut out, (delta << 5) | head);
        put_varint(&mut out, a.count as u64);
        for &value in values {
            put_value(&mut out, value, whole(value));
        }
    }
    out
}

/// The aggregates `encode_aggregates` wrote, in name id order.
pub fn decode_aggregates(bytes: &[u8]) -> Result<Vec<(i64, Aggregate)>, DecodeError> {
    let mut at = 0;
    let count = get_varint(bytes, &mut at)?;
    // Every entry takes at least three bytes.
    if count > bytes.len() as u64 {
        return Err(DecodeError("count larger than the data"));
    }
    let mut aggregates = Vec::with_capacity(count as usize);
    let mut previous = 0i64;
    for _ in 0..count {
        let head = get_varint(bytes, &mut at)?;
        let id = previous.wrapping_add((head >> 5) as i64);
        previous = id;
        let count = i64::try_from(get_varint(bytes, &mut at)?)
            .map_err(|_| DecodeError("count out of range"))?;
        let flat = head & (1 << 4) != 0;
        let mut values = [0f64; 4];
        for (bit, value) in values.iter_mut().enumerate().take(if flat { 1 } else { 4 }) {
            *value = get_value(bytes, &mut at, head & (1 << bit) != 0)?;
        }
        if flat {
            let value = values[0];
            values = [value, value, value * count as f64, value];
        }
        let [min, max, sum, last] = values;
        aggregates.push((
            id,
            Aggregate {
                count,
                min,
                max,
                sum,
                last,
            },
        ));
    }
    if at != bytes.len() {
        return Err(DecodeError("bytes left after the last aggregate"));
    }
    Ok(aggregates)
}

/// Writes `value`: a zigzag varint when it is the whole number `whole`, its eight
/// bytes otherwise.
pub(super) fn put_value(out: &mut Vec<u8>, value: f64, whole: Option<i64>) {
    match whole {
        Some(n) => put_varint(out, zigzag(n)),
        None => out.extend_from_slice(&value.to_le_bytes()),
    }
}

/// Reads a value `put_value` wrote, `whole` or not.
pub(super) fn get_value(bytes: &[u8], at: &mut usize, whole: bool) -> Result<f64, DecodeError> {
    if whole {
        return Ok(unzigzag(get_varint(bytes, at)?) as f64);
    }
    let raw = bytes
        .get(*at..*at + 8)
        .ok_or(DecodeError("value cut short"))?;
    *at += 8;
    let mut eight = [0u8; 8];
    eight.copy_from_slice(raw);
    Ok(f64::from_le_bytes(eight))
}

pub(super) fn whole(value: f64) -> Option<i64> {
    if value.abs() > WHOLE_LIMIT {
        return None;
    }
    let n = value as i64;
    ((n as f64).to_bits() == value.to_bits()).then_some(n)
}

pub(super) fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

pub(super) fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(super) fn get_varint(bytes: &[u8], at: &mut usize) -> Result<u64, DecodeError> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or(DecodeError("varint cut short"))?;
        *at += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(DecodeError("varint longer than ten bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn whole_numbers_take_few_bytes_and_every_value_reads_back_exactly() {
        let readings = vec![
            (3, 1.0),
            (4, 0.0),
            (5, -0.0),
            (9, 12_345_678.0),
            (10, 42.5),
            (11, f64::MAX),
            (12, -3.0),
            (1_000_000, 1e300),
        ];
        let bytes = encode(&readings);
        let back = decode(&bytes).unwrap();
        assert_eq!(readings.len(), back.len());
        for (a, b) in readings.iter().zip(&back) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "{a:?} read back as {b:?}");
        }
        // An agent-like poll: 30 series, mostly whole numbers.
        let poll: Vec<(i64, f64)> = (1..=30).map(|i| (i, (i * 1000) as f64)).collect();
        assert!(encode(&poll).len() <= 30 * 4 + 1);
    }

    #[test]
    fn a_flat_series_keeps_one_value_and_reads_back_whole() {
        let flat = [
            (1, Aggregate::of(42.0)),
            (
                2,
                Aggregate {
                    count: 60,
                    min: 1.0,
                    max: 1.0,
                    sum: 60.0,
                    last: 1.0,
                },
            ),
            (3, Aggregate::of(0.37)),
        ];
        let bytes = encode_aggregates(&flat);
        assert!(bytes.len() <= 1 + 3 + 3 + 10, "{} bytes", bytes.len());
        assert_eq!(decode_aggregates(&bytes).unwrap(), flat);
        // Not flat: a sum that is not the value times the count.
        let moving = [(
            1,
            Aggregate {
                count: 3,
                min: 0.1,
                max: 0.1,
                sum: 0.3,
                last: 0.1,
            },
        )];
        assert_eq!(
            decode_aggregates(&encode_aggregates(&moving)).unwrap(),
            moving
        );
    }

    #[test]
    fn bytes_not_written_by_encode_are_an_error_not_a_panic() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[5, 2]).is_err());
        assert!(decode(&[1, 0, 1, 2]).is_err());
        assert!(decode(&[0xff; 12]).is_err());
        let mut good = encode(&[(1, 2.5)]);
        good.push(0);
        assert!(decode(&good).is_err());
    }

    proptest! {
        #[test]
        fn what_is_encoded_decodes_bit_for_bit(
            ids in proptest::collection::btree_set(0i64..5_000_000, 0..200),
            values in proptest::collection::vec(any::<f64>(), 200),
        ) {
            let readings: Vec<(i64, f64)> = ids.into_iter().zip(values).collect();
            let back = decode(&encode(&readings)).unwrap();
            prop_assert_eq!(readings.len(), back.len());
            for (a, b) in readings.iter().zip(&back) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }

        #[test]
        fn aggregates_encode_and_decode_bit_for_bit(
            ids in proptest::collection::btree_set(0i64..5_000_000, 0..100),
            values in proptest::collection::vec((any::<f64>(), any::<f64>(), any::<f64>(), any::<f64>(), 0i64..1_000_000), 100),
        ) {
            let aggregates: Vec<(i64, Aggregate)> = ids
                .into_iter()
                .zip(values)
                .map(|(id, (min, max, sum, last, count))| (id, Aggregate { count, min, max, sum, last }))
                .collect();
            let back = decode_aggregates(&encode_aggregates(&aggregates)).unwrap();
            prop_assert_eq!(aggregates.len(), back.len());
            for (a, b) in aggregates.iter().zip(&back) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.count, b.1.count);
                for (x, y) in [(a.1.min, b.1.min), (a.1.max, b.1.max), (a.1.sum, b.1.sum), (a.1.last, b.1.last)] {
                    prop_assert_eq!(x.to_bits(), y.to_bits());
                }
            }
        }

        #[test]
        fn any_bytes_decode_as_aggregates_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_aggregates(&bytes);
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
