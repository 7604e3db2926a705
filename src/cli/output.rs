//! Output shared by every command: aligned tables for people, JSON for
//! scripts, colour only when stdout is a terminal.

use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use serde::Serialize;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document for scripts.
    Json,
}

/// Whether to colour stdout (a terminal, and NO_COLOR unset).
pub fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Whether to colour stderr.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// ANSI styles, applied only when asked to.
#[derive(Debug, Clone, Copy)]
pub enum Style {
    /// Table headers.
    Bold,
    /// Success marks.
    Green,
    /// Failure marks and errors.
    Red,
    /// Warnings.
    Yellow,
}

/// `text` in `style` when `on`, plain otherwise.
pub fn paint(text: &str, style: Style, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let code = match style {
        Style::Bold => "1",
        Style::Green => "32",
        Style::Red => "31",
        Style::Yellow => "33",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// A table of strings printed with columns padded to their widest cell, as
/// `podman ps` and `cargo` print theirs.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Add a row; it must have one cell per header.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// The table as text, headers styled when `color`.
    pub fn render(&self, color: bool) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| visible_len(h)).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(visible_len(c));
            }
        }
        let line = |cells: Vec<String>, bold: bool| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let last = i + 1 == n;
                let pad = if last { 0 } else { widths[i] - visible_len(c) + 2 };
                let cell = if bold { paint(c, Style::Bold, color) } else { c.clone() };
                s.push_str(&cell);
                s.push_str(&" ".repeat(pad));
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = line(self.headers.iter().map(|h| h.to_string()).collect(), true);
        for r in &self.rows {
            out.push_str(&line(r.clone(), false));
        }
        out
    }
}

/// Printed width of a cell: characters, not counting ANSI colour codes.
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// Print `value` as pretty JSON followed by a newline.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A time as the CREATED columns show it: `2026-11-26 13:35`, UTC.
pub fn created(secs: i64) -> String {
    crate::storage::records::rfc3339(secs, 0).chars().take(16).collect::<String>().replace('T', " ")
}

/// A warning line on stderr.
pub fn warn(msg: &str) {
    let msg = crate::text::escaped(msg);
    eprintln!("{} {msg}", paint("warning:", Style::Yellow, color_stderr()));
}

/// A spinner on stderr while something slow runs, when stderr is a
/// terminal; hidden otherwise so logs and pipes stay clean.
pub fn spinner(msg: String) -> indicatif::ProgressBar {
    let pb = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.set_message(msg);
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    pb
}

/// Whether stdout is a pipe or socket whose reader has gone (poll says
/// POLLERR on its write end): `mtbx ... | head` after head exits.
pub(crate) fn stdout_gone() -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    poll(&mut fds, Some(&zero)).is_ok() && fds[0].revents().contains(PollFlags::ERR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_have_no_trailing_space() {
        let mut t = Table::new(&["NAME", "ARCH"]);
        t.row(vec!["qemu-aarch64".into(), "arm64/v8".into()]);
        t.row(vec!["x".into(), "".into()]);
        let s = t.render(false);
        assert_eq!(s, "NAME          ARCH\nqemu-aarch64  arm64/v8\nx\n");
    }

    #[test]
    fn colour_codes_take_no_width() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec![paint("ok", Style::Green, true), "x".into()]);
        t.row(vec!["long".into(), "y".into()]);
        let s = t.render(false);
        assert!(s.contains("\x1b[32mok\x1b[0m    x\n"), "{s:?}");
    }

    #[test]
    fn created_is_to_the_minute() {
        assert_eq!(created(1_795_700_154), "2026-11-26 13:35");
    }

    #[test]
    fn paint_is_plain_without_colour() {
        assert_eq!(paint("a", Style::Red, false), "a");
        assert_eq!(paint("a", Style::Red, true), "\x1b[31ma\x1b[0m");
    }
}
