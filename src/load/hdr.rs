//! Latency histograms as text: the HdrHistogram V2 encoding (uncompressed), in base64. Any
//! HdrHistogram library can read it; `report.json` stores one per phase of a run, so that a
//! phase's percentiles come from its merged histogram rather than from averaged percentiles.
//!
//! V2 layout (big-endian): cookie `0x1c849303`, payload length (i32), normalising index offset
//! (i32, 0), significant digits (i32), lowest and highest trackable values (i64), integer to
//! double ratio (f64, 1.0), then the counts array up to the last non-zero count as ZigZag LEB128
//! varints, a run of two or more zero counts written as its negated length.

use hdrhistogram::Histogram;

const COOKIE: u32 = 0x1c84_9303;
const HEADER: usize = 40;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HdrError {
    #[error("not base64")]
    Base64,
    #[error("not an HdrHistogram V2 encoding: {0}")]
    Format(&'static str),
}

/// The bucket layout of a histogram, as HdrHistogram computes it.
struct Layout {
    unit_magnitude: u32,
    sub_bucket_half_count_magnitude: u32,
}

impl Layout {
    fn new(low: u64, sigfig: u8) -> Layout {
        let largest_single_unit = 2 * 10u64.pow(u32::from(sigfig));
        let sub_bucket_count_magnitude = (largest_single_unit as f64).log2().ceil() as u32;
        Layout {
            unit_magnitude: 63 - low.max(1).leading_zeros(),
            sub_bucket_half_count_magnitude: sub_bucket_count_magnitude.max(1) - 1,
        }
    }

    /// The lowest value counted at `index` of the counts array.
    fn value_at(&self, index: usize) -> u64 {
        let half = 1usize << self.sub_bucket_half_count_magnitude;
        let mut bucket = (index >> self.sub_bucket_half_count_magnitude) as i64 - 1;
        let mut sub_bucket = (index & (half - 1)) + half;
        if bucket < 0 {
            sub_bucket -= half;
            bucket = 0;
        }
        (sub_bucket as u64) << (bucket as u32 + self.unit_magnitude)
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_varint(input: &[u8], at: &mut usize) -> Result<i64, HdrError> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *input.get(*at).ok_or(HdrError::Format("truncated counts"))?;
        *at += 1;
        z |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(HdrError::Format("varint too long"))
}

/// The V2 encoding of `h`.
pub fn encode(h: &Histogram<u64>) -> Vec<u8> {
    let counts: Vec<u64> = h.iter_all().map(|v| v.count_at_value()).collect();
    let used = counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
    let mut payload = Vec::new();
    let mut i = 0;
    while i < used {
        let zeros = counts[i..used].iter().take_while(|&&c| c == 0).count();
        if zeros > 1 {
            put_varint(&mut payload, -(zeros as i64));
            i += zeros;
        } else {
            put_varint(&mut payload, counts[i].min(i64::MAX as u64) as i64);
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&COOKIE.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&u32::from(h.sigfig()).to_be_bytes());
    out.extend_from_slice(&h.low().to_be_bytes());
    out.extend_from_slice(&h.high().to_be_bytes());
    out.extend_from_slice(&1.0f64.to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Reads a V2 encoding (as [`encode`] writes it) back into a histogram.
pub fn decode(bytes: &[u8]) -> Result<Histogram<u64>, HdrError> {
    if bytes.len() < HEADER {
        return Err(HdrError::Format("shorter than its header"));
    }
    let u32_at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
    if u32_at(0) != COOKIE {
        return Err(HdrError::Format("wrong cookie"));
    }
    let len = u32_at(4) as usize;
    let sigfig = u8::try_from(u32_at(12)).map_err(|_| HdrError::Format("bad significant digits"))?;
    let (low, high) = (u64_at(16), u64_at(24));
    let payload = bytes.get(HEADER..HEADER + len).ok_or(HdrError::Format("truncated payload"))?;
    let mut h = Histogram::new_with_bounds(low.max(1), high, sigfig).map_err(|_| HdrError::Format("bad bounds"))?;
    let layout = Layout::new(low, sigfig);
    let (mut at, mut index) = (0usize, 0usize);
    while at < payload.len() {
        let v = get_varint(payload, &mut at)?;
        if v < 0 {
            index = index.saturating_add(v.unsigned_abs() as usize);
        } else {
            if v > 0 {
                h.record_n(layout.value_at(index), v as u64).map_err(|_| HdrError::Format("count out of range"))?;
            }
            index += 1;
        }
    }
    Ok(h)
}

/// The histograms of `encodings` (from [`encode`]; empty ones skipped) added together; `None`
/// when there was none.
pub fn merge<'a>(encodings: impl IntoIterator<Item = &'a [u8]>) -> Result<Option<Histogram<u64>>, HdrError> {
    let mut total: Option<Histogram<u64>> = None;
    for e in encodings.into_iter().filter(|e| !e.is_empty()) {
        let h = decode(e)?;
        match &mut total {
            Some(t) => t.add(&h).map_err(|_| HdrError::Format("histograms of different bounds"))?,
            None => total = Some(h),
        }
    }
    Ok(total)
}

/// Highest latency tracked, in microseconds (one hour); longer ones are clamped.
const MAX_US: u64 = 3_600_000_000;

/// An empty histogram with the load driver's bounds (1 µs to 1 h, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    // Constant, valid bounds: creation cannot fail.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant histogram bounds are valid")
}

/// The percentiles of a histogram in microseconds, in milliseconds.
pub fn percentiles(h: &Histogram<u64>) -> super::Latency {
    if h.is_empty() {
        return super::Latency::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    super::Latency {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads standard base64 (padding optional).
pub fn unbase64(text: &str) -> Result<Vec<u8>, HdrError> {
    let digits: Vec<u32> = text
        .trim_end_matches('=')
        .bytes()
        .map(|c| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32).ok_or(HdrError::Base64))
        .collect::<Result<_, _>>()?;
    if digits.len() % 4 == 1 {
        return Err(HdrError::Base64);
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &d)| n | d << (18 - 6 * i));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Ok(out)
}

/// A histogram as `report.json` stores it: [`encode`] in [`base64`].
pub fn to_text(h: &Histogram<u64>) -> String {
    base64(&encode(h))
}

/// Reads what [`to_text`] wrote.
pub fn from_text(text: &str) -> Result<Histogram<u64>, HdrError> {
    decode(&unbase64(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        let mut h = histogram();
        for (v, n) in [(1, 3), (950, 1), (1_024, 7), (2_047, 1), (2_048, 2), (123_456, 5), (3_000_000_000, 1)] {
            h.record_n(v, n).unwrap();
        }
        let back = from_text(&to_text(&h)).unwrap();
        assert_eq!(back, h);
        assert_eq!((back.len(), back.max(), back.value_at_quantile(0.5)), (h.len(), h.max(), h.value_at_quantile(0.5)));
        let empty = histogram();
        assert_eq!(from_text(&to_text(&empty)).unwrap(), empty);
    }

    #[test]
    fn merged_seconds_give_the_percentiles_of_all_their_requests() {
        // 90 fast requests in one second, 10 slow ones in another: the p95 of the two together
        // is slow, though neither second's p95 averaged with the other's would say so.
        let (mut a, mut b) = (histogram(), histogram());
        a.record_n(1_000, 90).unwrap();
        b.record_n(200_000, 10).unwrap();
        let (ea, eb) = (encode(&a), encode(&b));
        let m = merge([ea.as_slice(), &[], eb.as_slice()]).unwrap().unwrap();
        assert_eq!(m.len(), 100);
        let p = percentiles(&m);
        assert!((p.p50 - 1.0).abs() < 0.01 && (p.p95 - 200.0).abs() < 0.2, "{p:?}");
        assert_eq!(merge([&[][..]]).unwrap(), None);
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(unbase64("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(unbase64("Zm9vYmE").unwrap(), b"fooba");
        assert_eq!(unbase64("Zm9v!"), Err(HdrError::Base64));
    }

    #[test]
    fn the_header_is_hdrhistogram_v2() {
        let mut h = histogram();
        h.record(1500).unwrap();
        let b = encode(&h);
        assert_eq!(&b[..4], &[0x1c, 0x84, 0x93, 0x03]);
        assert_eq!(u32::from_be_bytes(b[12..16].try_into().unwrap()), 3);
        assert_eq!(decode(&b[..10]).unwrap_err(), HdrError::Format("shorter than its header"));
        let mut bad = b.clone();
        bad[0] = 0;
        assert_eq!(decode(&bad).unwrap_err(), HdrError::Format("wrong cookie"));
    }
}
