//! Output: aligned tables for people, JSON and CSV for scripts.

use comfy_table::{ContentArrangement, LineStyle, Table, TableStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns (the default when stdout is a terminal).
    Table,
    /// JSON (the default otherwise); `events` prints one object per line.
    Json,
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
}

impl Format {
    /// The format asked for, or table on a terminal and JSON otherwise.
    #[must_use]
    pub fn resolve(given: Option<Self>) -> Self {
        given.unwrap_or_else(|| {
            if std::io::stdout().is_terminal() {
                Self::Table
            } else {
                Self::Json
            }
        })
    }
}

/// A header and rows of text: what a table or a CSV file shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    /// Column names.
    pub headers: Vec<&'static str>,
    /// The cells, one `Vec` per row, as wide as `headers`.
    pub rows: Vec<Vec<String>>,
}

impl Rows {
    /// Empty rows under `headers`.
    #[must_use]
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }
}

/// What a command answers: serialisable for JSON, and rows for a table or CSV.
pub trait Report: Serialize {
    /// The answer as rows.
    fn rows(&self) -> Rows;

    /// Lines shown above a table (never in CSV or JSON).
    fn summary(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The report rendered in `format`.
///
/// # Errors
/// Only if the report cannot be represented as JSON.
pub fn render(report: &impl Report, format: Format) -> Result<String, serde_json::Error> {
    Ok(match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(report)?;
            text.push('\n');
            text
        }
        Format::Csv => csv(&report.rows()),
        Format::Table => {
            let mut text = String::new();
            for line in report.summary() {
                text.push_str(&line);
                text.push('\n');
            }
            let rows = report.rows();
            if !text.is_empty() && !rows.rows.is_empty() {
                text.push('\n');
            }
            if !rows.rows.is_empty() {
                text.push_str(&table(&rows));
            }
            text
        }
    })
}

/// Aligned columns with an upper-case header and a rule under it (comfy-table, no borders).
#[must_use]
pub fn table(rows: &Rows) -> String {
    let style = TableStyle::new().header_separator(LineStyle::none().fill('-').junction(' '));
    let mut table = Table::new();
    table
        .load_style(style)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(rows.headers.iter().map(|h| h.to_uppercase()));
    for row in &rows.rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 1));
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// RFC 4180 CSV (the `csv` crate): a header row, then the rows.
#[must_use]
pub fn csv(rows: &Rows) -> String {
    let mut out = csv_line(rows.headers.iter().copied());
    for row in &rows.rows {
        out.push_str(&csv_line(row.iter().map(String::as_str)));
    }
    out
}

/// One CSV record, quoted where it needs to be, ending in CRLF as RFC 4180 says.
#[must_use]
pub fn csv_line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to memory fails only on a record of another length than the first, and each
    // writer here holds one record.
    let written = writer
        .write_record(fields)
        .and_then(|()| writer.into_inner().map_err(|e| e.into_error().into()));
    written.map_or_else(
        |_| String::new(),
        |bytes| String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Writes `text` to stdout. A closed pipe (`replay-tool events | head`) is not an error.
///
/// # Errors
/// Other write failures.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `yes` or `no`.
#[must_use]
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_csv_quotes_what_needs_it() {
        let mut rows = Rows::new(&["a", "long header"]);
        rows.push(vec!["wide cell".into(), "x".into()]);
        rows.push(vec!["b".into(), "say \"hi\", then go".into()]);
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "A          LONG HEADER");
        assert_eq!(lines[1], "---------- ------------------");
        assert_eq!(lines[2], "wide cell  x");
        assert_eq!(lines[3], "b          say \"hi\", then go");
        assert_eq!(
            csv(&rows),
            "a,long header\r\nwide cell,x\r\nb,\"say \"\"hi\"\", then go\"\r\n"
        );
    }
}
