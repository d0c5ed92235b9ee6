//! Gorilla-style compression (Facebook's Gorilla paper, 2015: timestamps as
//! delta-of-deltas, values as the XOR with the previous value, its leading and
//! trailing zero bits elided), the peer the `store` benchmark holds the blocks' pco
//! columns against: the codec the store uses was chosen by this measurement.

/// Bits written most significant first.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    used: u32,
}

impl Bits {
    fn put(&mut self, value: u64, bits: u32) {
        for bit in (0..bits).rev() {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (value >> bit) & 1 == 1 {
                if let Some(last) = self.bytes.last_mut() {
                    *last |= 0x80 >> (self.used % 8);
                }
            }
            self.used += 1;
        }
    }
}

/// The values' bytes, XOR-compressed.
pub fn values(values: &[f64]) -> Vec<u8> {
    let mut out = Bits::default();
    let mut previous = 0u64;
    // The window of meaningful bits last written: (leading zeros, trailing zeros).
    let mut window: Option<(u32, u32)> = None;
    for (n, value) in values.iter().enumerate() {
        let bits = value.to_bits();
        if n == 0 {
            out.put(bits, 64);
            previous = bits;
            continue;
        }
        let xor = bits ^ previous;
        previous = bits;
        if xor == 0 {
            out.put(0, 1);
            continue;
        }
        let (leading, trailing) = (xor.leading_zeros().min(31), xor.trailing_zeros());
        match window {
            Some((l, t)) if leading >= l && trailing >= t => {
                out.put(0b10, 2);
                out.put(xor >> t, 64 - l - t);
            }
            _ => {
                let meaningful = 64 - leading - trailing;
                out.put(0b11, 2);
                out.put(u64::from(leading), 5);
                // 64 meaningful bits are written as 0: six bits hold 0..=63.
                out.put(u64::from(meaningful % 64), 6);
                out.put(xor >> trailing, meaningful);
                window = Some((leading, trailing));
            }
        }
    }
    out.bytes
}

/// The times' bytes: the first whole, then delta-of-deltas in Gorilla's buckets.
pub fn times(times: &[i64]) -> Vec<u8> {
    let mut out = Bits::default();
    let (mut previous, mut delta) = (0i64, 0i64);
    for (n, &time) in times.iter().enumerate() {
        if n == 0 {
            out.put(time as u64, 64);
        } else {
            let d = time.wrapping_sub(previous);
            let dod = d.wrapping_sub(delta);
            delta = d;
            match dod {
                0 => out.put(0, 1),
                -63..=64 => {
                    out.put(0b10, 2);
                    out.put(dod as u64, 7);
                }
                -255..=256 => {
                    out.put(0b110, 3);
                    out.put(dod as u64, 9);
                }
                -2047..=2048 => {
                    out.put(0b1110, 4);
                    out.put(dod as u64, 12);
                }
                _ => {
                    out.put(0b1111, 4);
                    out.put(dod as u64, 64);
                }
            }
        }
        previous = time;
    }
    out.bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Reader<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl Reader<'_> {
        fn get(&mut self, bits: u32) -> Option<u64> {
            let mut value = 0u64;
            for _ in 0..bits {
                let byte = self.bytes.get(self.at / 8)?;
                value = (value << 1) | u64::from((byte >> (7 - self.at % 8)) & 1);
                self.at += 1;
            }
            Some(value)
        }
    }

    /// `count` values `values` wrote.
    pub fn decode_values(bytes: &[u8], count: usize) -> Option<Vec<f64>> {
        let mut reader = Reader { bytes, at: 0 };
        let mut out = Vec::with_capacity(count);
        let mut previous = 0u64;
        let mut window = (0u32, 0u32);
        for n in 0..count {
            if n == 0 {
                previous = reader.get(64)?;
            } else if reader.get(1)? == 1 {
                if reader.get(1)? == 1 {
                    let leading = reader.get(5)? as u32;
                    let meaningful = match reader.get(6)? as u32 {
                        0 => 64,
                        m => m,
                    };
                    window = (leading, 64 - leading - meaningful);
                }
                let (leading, trailing) = window;
                previous ^= reader.get(64 - leading - trailing)? << trailing;
            }
            out.push(f64::from_bits(previous));
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn values_come_back_bit_for_bit(values in proptest::collection::vec(
            prop_oneof![any::<f64>(), (0u32..500).prop_map(|n| f64::from(n) / 4.0)], 0..80)
        ) {
            let back = decode_values(&super::values(&values), values.len()).unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&back), bits(&values));
        }
    }

    #[test]
    fn steady_values_and_times_take_a_bit_each() {
        let steady = vec![42.0; 1000];
        assert!(values(&steady).len() < 8 + 1000 / 8 + 1);
        let ticks: Vec<i64> = (0..1000).map(|n| 1_800_000_000_000 + n * 60_000).collect();
        // The first time whole, the first delta whole, then a bit a tick.
        assert!(times(&ticks).len() < 8 + 9 + 1000 / 8 + 1);
    }
}
