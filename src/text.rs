//! Text from outside (typed names and paths, registries' error messages,
//! fields of layouts, archives, trees and desktop files) shown on a
//! terminal. An error is one line: a name with a newline would split it,
//! escape sequences would reach the terminal (a title, a cleared screen),
//! and a 70 KB name would bury the message, so such text is escaped or
//! cleaned, and cut short, before it is shown. This module is the one
//! place that decides how; it depends on nothing else of mtbx.

/// How many characters of outside text an error line shows.
pub const SHOWN_CHARS: usize = 200;

/// `s` in single quotes, escaped as Rust's `{:?}` escapes it (newlines,
/// control characters and quotes become visible escapes) and cut to
/// [`SHOWN_CHARS`] characters with an ellipsis.
pub fn quoted(s: &str) -> String {
    let escaped: String = s.escape_debug().collect();
    format!("'{}'", truncate(&escaped, SHOWN_CHARS))
}

/// A path (or any OS string: not always UTF-8) as [`quoted`] shows a
/// string; bytes that are not UTF-8 become `\xNN`.
pub fn quoted_path(p: impl AsRef<std::ffi::OsStr>) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut escaped = String::new();
    for chunk in p.as_ref().as_bytes().utf8_chunks() {
        escaped.extend(chunk.valid().escape_debug());
        for b in chunk.invalid() {
            escaped.push_str(&format!("\\x{b:02x}"));
        }
    }
    format!("'{}'", truncate(&escaped, SHOWN_CHARS))
}

/// `s` with its control characters escaped (`\u{1b}`, `\n`) and the rest
/// as it is: for text that is shown as a whole (a table cell, a value in a
/// report) rather than named in a message.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` as one clean line: control characters (escape sequences, newlines)
/// dropped, runs of whitespace made one space, cut to `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::new();
    for word in s.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    truncate(&out, max)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_names_stay_on_one_short_line() {
        assert_eq!(quoted("fedora"), "'fedora'");
        assert_eq!(quoted("a\nb\x1b[31m"), "'a\\nb\\u{1b}[31m'");
        let long = quoted(&"x".repeat(70_000));
        assert_eq!(long.chars().count(), SHOWN_CHARS + 3);
        assert!(long.ends_with("x…'"));
    }

    #[test]
    fn paths_and_values_are_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let p = std::ffi::OsStr::from_bytes(b"/srv/a\nb\x1b]0;PWNED\x07\xe9");
        assert_eq!(quoted_path(p), "'/srv/a\\nb\\u{1b}]0;PWNED\\u{7}\\xe9'");
        assert_eq!(escaped("caf\u{e9} \x1b[2J\t"), "caf\u{e9} \\u{1b}[2J\\t");
    }

    #[test]
    fn one_line_drops_control_characters() {
        assert_eq!(one_line("  <html>\r\n<b>\x1b[2Jdown</b>\n", 100), "<html> <b> [2Jdown</b>");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
