//! Progress bars on stderr for long work, hidden when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use std::io::IsTerminal;

/// A bar over `len` events (positions of the log), with events/s and the time left.
#[must_use]
pub fn events(len: u64, what: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:<12} [{bar:32.cyan/blue}] {human_pos}/{human_len} events  {rate:.dim}  {elapsed} (eta {eta})",
    ) {
        let rate = |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} events/s", state.per_sec());
        };
        bar.set_style(style.progress_chars("=> ").with_key("rate", rate));
    }
    bar.set_message(what.to_owned());
    bar
}

/// A spinner for work whose length is unknown.
#[must_use]
pub fn spinner(what: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
