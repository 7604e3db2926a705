//! Text from outside (typed names, registries' error messages) shown in
//! error lines. An error is one line on a terminal: a name with a newline
//! would split it, escape sequences would reach the terminal, and a 70 KB
//! name would bury the message, so such text is escaped or cleaned, and
//! cut short, before it is shown.

/// How many characters of outside text an error line shows.
pub const SHOWN_CHARS: usize = 200;

/// `s` in single quotes, escaped as Rust's `{:?}` escapes it (newlines,
/// control characters and quotes become visible escapes) and cut to
/// [`SHOWN_CHARS`] characters with an ellipsis.
pub fn quoted(s: &str) -> String {
    let escaped: String = s.escape_debug().collect();
    format!("'{}'", truncate(&escaped, SHOWN_CHARS))
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
    fn one_line_drops_control_characters() {
        assert_eq!(one_line("  <html>\r\n<b>\x1b[2Jdown</b>\n", 100), "<html> <b> [2Jdown</b>");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
