//! Timing samples and their summaries (median, p99), peak resident memory from /proc, and the
//! units figures are printed in. Percentiles are nearest-rank on the sorted samples: no
//! interpolation, so a p99 is always a latency that really happened.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Latencies of one measured operation, in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u64>);

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_nanos() as u64);
    }

    /// Times `f` once and records it.
    pub fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.push(started.elapsed());
        out
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn summary(&self) -> Summary {
        let mut v = self.0.clone();
        v.sort_unstable();
        let rank = |q: f64| -> u64 {
            if v.is_empty() {
                return 0;
            }
            let r = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[r - 1]
        };
        Summary {
            n: v.len() as u64,
            median_ns: rank(0.5),
            p99_ns: rank(0.99),
            max_ns: v.last().copied().unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Summary {
    pub n: u64,
    pub median_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Summary {
    /// A figure measured once (a whole sync, a drain): median, p99 and max are that one time.
    pub fn once(seconds: f64) -> Self {
        let ns = (seconds * 1e9) as u64;
        Self {
            n: 1,
            median_ns: ns,
            p99_ns: ns,
            max_ns: ns,
        }
    }
}

/// Peak resident set size of this process (VmHWM), in bytes.
pub fn self_peak_rss() -> Option<u64> {
    peak_rss_of("self")
}

/// Peak resident set size (VmHWM) of a process by pid or "self", in bytes.
pub fn peak_rss_of(pid: &str) -> Option<u64> {
    status_kib(pid, "VmHWM:").map(|k| k * 1024)
}

/// Bytes this process has caused to be written to storage so far (`write_bytes` of /proc/self/io).
pub fn self_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("write_bytes:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A duration in the unit that keeps three significant figures readable.
pub fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

pub fn fmt_bytes(b: u64) -> String {
    format!("{:.0} MB", b as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_pick_real_samples() {
        let mut s = Samples::default();
        for i in 1..=100u64 {
            s.push(Duration::from_nanos(i));
        }
        let sum = s.summary();
        assert_eq!(sum.n, 100);
        assert_eq!(sum.median_ns, 50);
        assert_eq!(sum.p99_ns, 99);
        assert_eq!(sum.max_ns, 100);
        assert_eq!(Samples::default().summary().median_ns, 0);
    }

    #[test]
    fn units_scale() {
        assert_eq!(fmt_ns(512), "512 ns");
        assert_eq!(fmt_ns(12_340), "12.3 µs");
        assert_eq!(fmt_ns(4_500_000), "4.50 ms");
        assert_eq!(fmt_ns(2_000_000_000), "2.00 s");
    }
}
