//! Tables for people, JSON for scripts, spinners for slow steps.

use std::time::Duration;

use comfy_table::{Table, presets::NOTHING};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// `--output`
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints a borderless table with a header row.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header(header.iter().map(|h| h.to_uppercase()));
    for row in rows {
        table.add_row(row);
    }
    // comfy-table pads the first column with a leading space; trim each line.
    for line in table.to_string().lines() {
        println!(
            "{}",
            line.trim_end().strip_prefix(' ').unwrap_or(line.trim_end())
        );
    }
}

/// A spinner on stderr for a step that may be slow. When stderr is no
/// terminal the spinner is hidden and the message is printed as a plain line
/// instead, once the step has taken a second (fast steps stay quiet).
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let message = message.into();
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(message.clone());
    pb.enable_steady_tick(Duration::from_millis(100));
    if pb.is_hidden() {
        let pb = pb.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            if !pb.is_finished() {
                eprintln!("{message} …");
            }
        });
    }
    pb
}

/// Tells how a slow step goes: the spinner's message on a terminal, a plain
/// line on stderr otherwise.
pub fn progress(pb: &ProgressBar, message: String) {
    if pb.is_hidden() {
        eprintln!("{message}");
    } else {
        pb.set_message(message);
    }
}

/// `3d 4h`, `5m 2s`, `12s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}
