//! Small shared helpers: a seeded random generator, UTC timestamps and durations as the
//! scenario format writes them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// SplitMix64: small, fast and reproducible across versions, which is what seeded fault
/// selection needs (the seed is printed in the report so a run can be replayed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A seed from the clock and the process id, for runs that do not name one. Below 2^53,
    /// so that it survives every JSON reader (`report.json` is read by JavaScript too, where
    /// larger integers are rounded) and can be copied back into `seed:` to replay the run.
    pub fn fresh_seed() -> u64 {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut r = Rng(t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32));
        r.next_u64() >> (64 - Self::FRESH_SEED_BITS)
    }

    /// Bits of a [`Rng::fresh_seed`]: a JSON number is exact up to 2^53.
    pub const FRESH_SEED_BITS: u32 = 53;

    /// The generator of `label` (a fault's name) under `seed`: each label draws from its own,
    /// so that what one draws does not depend on the order in which labels are drawn.
    pub fn derive(seed: u64, label: &str) -> Self {
        // FNV-1a: stable across builds and platforms, unlike the std hasher.
        let h = label.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let mut r = Rng(seed ^ h);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `k` distinct items of `items`, in a random order (partial Fisher–Yates).
    pub fn choose<T: Clone>(&mut self, items: &[T], k: usize) -> Vec<T> {
        let mut v: Vec<T> = items.to_vec();
        let k = k.min(v.len());
        for i in 0..k {
            let j = i + self.below((v.len() - i) as u64) as usize;
            v.swap(i, j);
        }
        v.truncate(k);
        v
    }
}

/// Renders a duration the way the format writes it: `250ms`, `20s`, `1m30s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return if ms < 1000 { format!("{ms}ms") } else { format!("{:.1}s", d.as_secs_f64()) };
    }
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// Civil date and time (UTC) of `t`: (year, month, day, hour, minute, second).
pub fn civil_utc(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, (rem / 3600) as u32, (rem % 3600 / 60) as u32, (rem % 60) as u32)
}

/// RFC 3339 UTC timestamp, e.g. `2026-11-22T03:04:05Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil_utc(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Compact UTC timestamp for directory names, e.g. `20261122T030405Z`.
pub fn compact_utc(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil_utc(t);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Where siege keeps state that outlives a process: the fault journal, a background lab's
/// address. `SIEGE_HOME` if set (tests use a temporary one), else `$XDG_STATE_HOME/siege`, else
/// `~/.local/state/siege`.
pub fn state_dir() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("SIEGE_HOME") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return std::path::PathBuf::from(d).join("siege");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    std::path::PathBuf::from(home).join(".local/state/siege")
}

/// The failpoint `SIEGE_FAILPOINT` names, read once at the edge and passed to the run (debug
/// builds only; always `None` in release builds).
pub fn failpoint_from_env() -> Option<String> {
    #[cfg(debug_assertions)]
    return std::env::var("SIEGE_FAILPOINT").ok().filter(|v| !v.is_empty());
    #[cfg(not(debug_assertions))]
    None
}

/// Panics here when `set` (see [`failpoint_from_env`]) names `point`, in debug builds only
/// (release builds compile it away): the integration tests use it to check, on a real process,
/// that a panic in the engine still reverts every injected fault.
///
/// The points: `after-inject` (a panic right after a fault is injected) and, with
/// [`failpoint_wait`], `slow-revert` (the first revert attempt waits 30 s).
pub fn failpoint(set: Option<&str>, point: &str) {
    #[cfg(debug_assertions)]
    if set == Some(point) {
        panic!("failpoint {point}");
    }
    #[cfg(not(debug_assertions))]
    let _ = (set, point);
}

/// Waits 30 s here when `set` names `point`, in debug builds only: a slow step (a revert) that
/// tests can interrupt.
pub async fn failpoint_wait(set: Option<&str>, point: &str) {
    #[cfg(debug_assertions)]
    if set == Some(point) {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    }
    #[cfg(not(debug_assertions))]
    let _ = (set, point);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_316_645);
        assert_eq!(rfc3339(t), "2026-11-22T03:04:05Z");
        assert_eq!(compact_utc(t), "20261122T030405Z");
    }

    #[test]
    fn fresh_seeds_are_exact_in_json() {
        let limit = 1u64 << 53;
        let seeds: Vec<u64> = (0..200).map(|_| Rng::fresh_seed()).collect();
        assert!(seeds.iter().all(|s| *s < limit), "{seeds:?}");
        // Still spread over the range, not stuck in its low bits.
        assert!(seeds.iter().any(|s| *s >= limit / 2), "{seeds:?}");
        for s in seeds {
            let json = serde_json::to_string(&serde_json::json!({ "seed": s })).unwrap();
            let back: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(back["seed"].as_f64().map(|f| f as u64), Some(s), "a double holds it exactly");
        }
    }

    #[test]
    fn seeded_choice_is_reproducible_and_distinct() {
        let items: Vec<u32> = (0..10).collect();
        let a = Rng::new(42).choose(&items, 5);
        let b = Rng::new(42).choose(&items, 5);
        assert_eq!(a, b);
        let mut s = a.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 5);
    }
}

/// `p` from the working directory, without `.` and `..` where they can be resolved.
pub fn absolute(p: &Path) -> PathBuf {
    normalize(&std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
}

/// `to` as a path relative to the directory `from` (both absolute and normalised).
/// The path to `to` from the directory `from` (absolute paths); `to` itself when they share no
/// more than the root.
pub fn relative_to(from: &Path, to: &Path) -> PathBuf {
    let (f, t): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    // Sharing only the root (`/`), a relative path would climb out of everything: absolute.
    if common <= 1 {
        return to.to_path_buf();
    }
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}
