//! The results table: one row per figure, each beside the floor measured in the same run and the
//! ratio between them (the figure's cost over the floor's, so above 1 means slower than the floor).
//! Printed as a Markdown table so the same text goes into BENCHMARKS.md, and saved as JSON.

use serde::{Deserialize, Serialize};

use crate::stats::{fmt_bytes, fmt_ns, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Meets its target.
    Met,
    /// Misses its target.
    Missed,
    /// A breakdown or context figure without a target of its own.
    Info,
    /// Could not be measured in this run (the note says why).
    Skipped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub figure: String,
    /// How much was measured, e.g. "20000 checks".
    pub n: String,
    pub median: String,
    pub p99: String,
    /// What the floor is and its median.
    pub floor: String,
    /// Figure cost over floor cost.
    pub ratio: Option<f64>,
    pub peak_rss: Option<u64>,
    pub target: String,
    pub verdict: Verdict,
    /// Raw numbers for anyone post-processing results.json.
    pub raw: Option<Summary>,
}

impl Row {
    pub fn new(id: &str, figure: impl Into<String>) -> Self {
        Self {
            id: id.to_string(),
            figure: figure.into(),
            n: String::new(),
            median: "-".into(),
            p99: "-".into(),
            floor: "-".into(),
            ratio: None,
            peak_rss: None,
            target: "-".into(),
            verdict: Verdict::Info,
            raw: None,
        }
    }

    /// A latency row: median and p99 from the samples.
    pub fn latency(mut self, s: Summary, n_label: &str) -> Self {
        self.n = format!("{} {n_label}", s.n);
        self.median = fmt_ns(s.median_ns);
        self.p99 = fmt_ns(s.p99_ns);
        self.raw = Some(s);
        self
    }

    /// Ratio of medians against a floor latency.
    pub fn against(mut self, floor_label: &str, floor: Summary) -> Self {
        self.floor = format!("{floor_label} {}", fmt_ns(floor.median_ns));
        if floor.median_ns > 0 {
            if let Some(raw) = self.raw {
                self.ratio = Some(raw.median_ns as f64 / floor.median_ns as f64);
            }
        }
        self
    }

    pub fn target(mut self, target: &str, met: bool) -> Self {
        self.target = target.to_string();
        self.verdict = if met { Verdict::Met } else { Verdict::Missed };
        self
    }

    pub fn rss(mut self, bytes: Option<u64>) -> Self {
        self.peak_rss = bytes;
        self
    }

    pub fn skipped(id: &str, figure: &str, why: &str) -> Self {
        let mut row = Self::new(id, figure);
        row.verdict = Verdict::Skipped;
        row.target = why.to_string();
        row
    }
}

/// Groups rows by benchmark (B1, B2, ...), each headline figure before its breakdown rows, keeping
/// the order they were measured in otherwise.
pub fn order(rows: &mut [Row]) {
    rows.sort_by_key(|r| {
        let number: u32 =
            r.id.trim_start_matches('B')
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(99);
        let sub = r.id.contains('·') || r.id.contains('-');
        (number, sub)
    });
}

pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| # | figure | measured | median | p99 | floor (same run) | ratio | peak RSS | target | result |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.id,
            r.figure,
            r.n,
            r.median,
            r.p99,
            r.floor,
            r.ratio
                .map(|x| format!("{x:.2}×"))
                .unwrap_or_else(|| "-".into()),
            r.peak_rss.map(fmt_bytes).unwrap_or_else(|| "-".into()),
            r.target,
            match r.verdict {
                Verdict::Met => "met",
                Verdict::Missed => "**missed**",
                Verdict::Info => "",
                Verdict::Skipped => "not measured",
            }
        ));
    }
    out
}
