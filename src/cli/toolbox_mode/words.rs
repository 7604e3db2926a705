//! Toolbx's words: the messages, tables and ages `toolbox` prints, where
//! its users and scripts (and Toolbx's own system tests) read them. The
//! work is the library's; these only say it as Toolbx says it.

use super::EXE;
use crate::toolbox::naming::{ResolveError, CONTAINER_NAME_REGEXP};
use crate::toolbox::ops::{Object, Removal};

/// The line Toolbx ends its usage errors with.
pub(super) fn usage_hint() -> String {
    format!("Run '{EXE} --help' for usage.")
}

/// A failure, worded as Toolbx words it (without the `Error: ` prefix);
/// printed on stderr, exit code 1 unless given.
#[derive(Debug)]
pub(super) struct Fail {
    pub(super) message: String,
    pub(super) code: i32,
}

impl Fail {
    pub(super) fn new(message: impl Into<String>) -> Fail {
        Fail { message: message.into(), code: 1 }
    }

    pub(super) fn usage(first: impl std::fmt::Display) -> Fail {
        Fail::new(format!("{first}\n{}", usage_hint()))
    }
}

impl<E: std::error::Error> From<E> for Fail {
    fn from(e: E) -> Fail {
        Fail::new(crate::error::chain(&e))
    }
}

pub(super) type Result<T> = std::result::Result<T, Fail>;

/// Toolbx's one line for a failure; its cause goes to the debug log, as
/// Toolbx logs it (`--log-level debug` shows why).
pub(super) fn because<E: std::error::Error>(message: impl Into<String>) -> impl FnOnce(E) -> Fail {
    let message = message.into();
    move |e| {
        tracing::debug!("{message}: {}", crate::error::chain(&e));
        Fail::new(message)
    }
}

pub(super) fn print_fail(f: &Fail) -> i32 {
    if !f.message.is_empty() {
        eprintln!("Error: {}", f.message);
    }
    f.code
}

/// Toolbx's version format: `0.N` (and `.P` when there is a patch level).
pub(super) fn version() -> String {
    let v = env!("CARGO_PKG_VERSION");
    let mut parts = v.split('.');
    let (major, minor, patch) =
        (parts.next().unwrap_or("0"), parts.next().unwrap_or("1"), parts.next().unwrap_or("0"));
    if patch == "0" {
        format!("{major}.{minor}")
    } else {
        format!("{major}.{minor}.{patch}")
    }
}

/// cobra's words for argument errors, which Toolbx users and scripts see.
pub(super) fn clap_failure(e: &clap::Error) -> Fail {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let ctx = |k: ContextKind| match e.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let flag_words = |arg: &str| -> String {
        let arg = arg.split_once('=').map_or(arg, |(a, _)| a);
        let arg = arg.split_whitespace().next().unwrap_or(arg);
        match arg.strip_prefix("--") {
            Some(_) => format!("unknown flag: {arg}"),
            None => {
                let c = arg.trim_start_matches('-').chars().next().unwrap_or('?');
                format!("unknown shorthand flag: '{c}' in {arg}")
            }
        }
    };
    let text = match e.kind() {
        ErrorKind::UnknownArgument => flag_words(&ctx(ContextKind::InvalidArg).unwrap_or_default()),
        ErrorKind::InvalidSubcommand => {
            format!(
                "unknown command \"{}\" for \"{EXE}\"",
                ctx(ContextKind::InvalidSubcommand).unwrap_or_default()
            )
        }
        ErrorKind::InvalidValue | ErrorKind::NoEquals | ErrorKind::ValueValidation => {
            let arg = ctx(ContextKind::InvalidArg).unwrap_or_default();
            let flag = arg
                .split_whitespace()
                .find(|w| w.starts_with('-'))
                .unwrap_or(&arg)
                .trim_end_matches(['<', '>']);
            match ctx(ContextKind::InvalidValue) {
                Some(v) if !v.is_empty() => format!("invalid argument \"{v}\" for \"{flag}\" flag"),
                _ => format!("flag needs an argument: {flag}"),
            }
        }
        _ => e.render().to_string().lines().next().unwrap_or("").trim_start_matches("error: ").to_string(),
    };
    Fail::usage(text)
}

pub(super) const COMMON_COMMANDS: &str = "create    Create a new Toolbx container\nenter     Enter an existing Toolbx container\nlist      List all existing Toolbx containers and images\n";

/// Toolbx's words for a resolution error.
pub(super) fn resolve_failure(e: ResolveError, container_arg: &str) -> Fail {
    match e {
        ResolveError::ContainerNameInvalid(_) => Fail::usage(format!(
            "invalid argument for '{container_arg}'\nContainer names must match '{CONTAINER_NAME_REGEXP}'."
        )),
        ResolveError::ContainerNameFromImageInvalid(c) => Fail::usage(format!(
            "invalid argument for '--image'\nContainer name {c} generated from image is invalid.\nContainer names must match '{CONTAINER_NAME_REGEXP}'."
        )),
        ResolveError::DistroUnsupported(d) => {
            Fail::usage(format!("invalid argument for '--distro'\nDistribution {d} is unsupported."))
        }
        ResolveError::DistroWithoutRelease(d) => {
            Fail::usage(format!("option '--release' is needed\nDistribution {d} doesn't match the host."))
        }
        ResolveError::Release(hint) => Fail::usage(format!("invalid argument for '--release'\n{hint}")),
    }
}

/// go-units' HumanDuration, as Toolbx prints ages.
pub(super) fn human_duration(secs: i64) -> String {
    let d = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        - secs)
        .max(0);
    let s = d;
    let text = if s < 1 {
        "Less than a second".to_string()
    } else if s == 1 {
        "1 second".to_string()
    } else if s < 60 {
        format!("{s} seconds")
    } else if s / 60 == 1 {
        "About a minute".to_string()
    } else if s / 60 < 60 {
        format!("{} minutes", s / 60)
    } else {
        let hours = ((s as f64) / 3600.0 + 0.5) as i64;
        if hours == 1 {
            "About an hour".to_string()
        } else if hours < 48 {
            format!("{hours} hours")
        } else if hours < 24 * 7 * 2 {
            format!("{} days", hours / 24)
        } else if hours < 24 * 30 * 2 {
            format!("{} weeks", hours / 24 / 7)
        } else if hours < 24 * 365 * 2 {
            format!("{} months", hours / 24 / 30)
        } else {
            format!("{} years", s / 3600 / 24 / 365)
        }
    };
    format!("{text} ago")
}

/// Columns separated as Go's tabwriter (padding 2) lays them out.
pub(super) fn tab(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{c:<w$}", w = widths[i] + 2));
            } else {
                line.push_str(c);
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Toolbx's words for podman's answers to `rm`/`rmi` of one: each
/// failure is an error line and the next name is tried; success is silent.
pub(super) fn removed(object: Object, name: &str, r: std::result::Result<(), Removal>) {
    let noun = object.noun();
    let in_use = match object {
        Object::Container => "is running",
        Object::Image => "has dependent children",
    };
    match r {
        Ok(()) => {}
        Err(Removal::Inspect(_)) => eprintln!("Error: failed to inspect {noun} {name}"),
        Err(Removal::NotToolbx) => eprintln!("Error: {name} is not a Toolbx {noun}"),
        Err(Removal::NotFound) => eprintln!("Error: {noun} {name} not found"),
        Err(Removal::InUse) => eprintln!("Error: {noun} {name} {in_use}"),
        Err(Removal::Failed(_)) => eprintln!("Error: failed to remove {noun} {name}"),
    }
}
