//! What a run measured, and how it is printed: one table, or JSON.

use serde::Serialize;
use std::fmt::Write as _;

/// One measured quantity.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What it is (`events/s`, `p99`, …).
    pub name: &'static str,
    /// Its value in `unit`.
    pub value: f64,
    /// The unit.
    pub unit: &'static str,
}

impl Figure {
    /// A figure.
    #[must_use]
    pub const fn new(name: &'static str, value: f64, unit: &'static str) -> Self {
        Self { name, value, unit }
    }

    fn show(&self) -> String {
        let value = match self.unit {
            "ms" | "µs" | "x" => format!("{:.2}", self.value),
            _ if self.value >= 10_000.0 => format!("{:.1}k", self.value / 1000.0),
            _ if self.value >= 100.0 => format!("{:.0}", self.value),
            _ => format!("{:.1}", self.value),
        };
        if self.name.is_empty() {
            format!("{value} {}", self.unit)
        } else {
            format!("{} {value} {}", self.name, self.unit)
        }
    }
}

/// Where a result stands against the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The target is met.
    Met,
    /// The target is missed.
    Missed,
    /// There is no target for this figure.
    NoTarget,
    /// Not measured in this run (see the note).
    Pending,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The scenario.
    pub scenario: String,
    /// `sqlite`, `postgres`, or `postgres (cqrs-es)`.
    pub backend: String,
    /// What was measured.
    pub figures: Vec<Figure>,
    /// The target, in words.
    pub target: Option<String>,
    /// Met or missed.
    pub verdict: Verdict,
    /// Anything a reader needs to read the row right.
    pub note: Option<String>,
}

impl Row {
    /// A row with no target.
    #[must_use]
    pub fn new(scenario: impl Into<String>, backend: impl Into<String>) -> Self {
        Self {
            scenario: scenario.into(),
            backend: backend.into(),
            figures: Vec::new(),
            target: None,
            verdict: Verdict::NoTarget,
            note: None,
        }
    }

    /// Adds a figure.
    #[must_use]
    pub fn figure(mut self, name: &'static str, value: f64, unit: &'static str) -> Self {
        self.figures.push(Figure::new(name, value, unit));
        self
    }

    /// Sets the target and whether it is met.
    #[must_use]
    pub fn target(mut self, target: impl Into<String>, met: bool) -> Self {
        self.target = Some(target.into());
        self.verdict = if met { Verdict::Met } else { Verdict::Missed };
        self
    }

    /// Adds a note.
    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Marks the row as not measured, with the reason.
    #[must_use]
    pub fn pending(mut self, why: impl Into<String>) -> Self {
        self.verdict = Verdict::Pending;
        self.note = Some(why.into());
        self
    }
}

/// The machine's 1-minute load average (0 where `/proc` is missing).
#[must_use]
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `quick` or `full` (or `upload-rss` for that measurement alone).
    pub mode: &'static str,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// The 1-minute load average when the run started and ended (other work on the machine
    /// shares its cores and lowers every figure).
    pub load: [f64; 2],
    /// The rows, in the order they were measured.
    pub rows: Vec<Row>,
}

impl Report {
    /// The report as a Markdown table (readable in a terminal and pasteable into the docs).
    #[must_use]
    pub fn table(&self) -> String {
        let mut lines: Vec<[String; 6]> = vec![[
            "scenario".into(),
            "backend".into(),
            "result".into(),
            "target".into(),
            "verdict".into(),
            "note".into(),
        ]];
        for row in &self.rows {
            let result = row
                .figures
                .iter()
                .map(Figure::show)
                .collect::<Vec<_>>()
                .join(", ");
            let verdict = match row.verdict {
                Verdict::Met => "met",
                Verdict::Missed => "MISSED",
                Verdict::NoTarget => "",
                Verdict::Pending => "pending",
            };
            lines.push([
                row.scenario.clone(),
                row.backend.clone(),
                result,
                row.target.clone().unwrap_or_default(),
                verdict.into(),
                row.note.clone().unwrap_or_default(),
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (n, line) in lines.iter().enumerate() {
            out.push('|');
            for (cell, width) in line.iter().zip(&widths) {
                let _ = write!(out, " {cell:<width$} |");
            }
            out.push('\n');
            if n == 0 {
                out.push('|');
                for width in &widths {
                    let _ = write!(out, "{}|", "-".repeat(width + 2));
                }
                out.push('\n');
            }
        }
        let _ = writeln!(
            out,
            "\n{} mode, {} CPUs, {:.0} s, load average {:.1} at the start and {:.1} at the end",
            self.mode, self.cpus, self.seconds, self.load[0], self.load[1]
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_target_shows_in_the_table() {
        let report = Report {
            mode: "quick",
            cpus: 2,
            seconds: 1.0,
            load: [0.5, 0.7],
            rows: vec![
                Row::new("commands", "sqlite")
                    .figure("", 12_345.0, "events/s")
                    .target("≥ 30k events/s", false),
                Row::new("who-may-see", "postgres").pending("HTTP API not ready"),
            ],
        };
        let table = report.table();
        assert!(table.contains("12.3k events/s"), "{table}");
        assert!(table.contains("MISSED"), "{table}");
        assert!(table.contains("pending"), "{table}");
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["rows"][0]["verdict"], "missed");
    }
}
