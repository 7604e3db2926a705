//! `mtbx binfmt status | register | unregister`: the host-level job that
//! qemu-binfmt-conf.sh and the qemu-user-static register image do today.
//!
//! These commands change the binfmt_misc instance of the user namespace
//! they run in. In the initial namespace that is the host's, which they
//! touch only when run as root; inside a user namespace with its own
//! instance they need no privilege on the host at all.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::exit;
use super::output::{self, color_stdout, Format, Table};
use crate::emu::arch::{self, Arch};
use crate::emu::binfmt::{BinfmtFs, Flags, DEFAULT_ROOT};
use crate::emu::host::{self, HostBinfmt};
use crate::emu::register::{Mode, Outcome, RegisterError, Request as RegisterRequest};
use crate::error::BadInput;

#[derive(Debug, Subcommand)]
pub enum BinfmtCommand {
    /// Show the binfmt_misc entries and which architecture each serves.
    Status {
        #[command(flatten)]
        target: Target,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Register static QEMU interpreters (root, on the host).
    Register {
        #[command(flatten)]
        target: Target,
        /// Architecture to register, or `all` for every foreign one whose
        /// static interpreter is installed.
        #[arg(long, value_name = "ARCH|all")]
        arch: String,
        /// Flag F: open the interpreter now, so containers need no copy.
        #[arg(long)]
        persistent: bool,
        /// Flag C (and O): setuid programs such as sudo work, but a setuid
        /// foreign binary then runs QEMU with its privileges.
        #[arg(long)]
        credential: bool,
        /// Flag P: pass the program's original argv[0].
        #[arg(long)]
        preserve_argv0: bool,
        /// Use this interpreter (one ARCH only).
        #[arg(long, value_name = "PATH")]
        qemu: Option<PathBuf>,
        /// Print the register lines; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write configuration files instead of registering: `systemd DIR`
        /// writes DIR/qemu-<target>.conf in binfmt.d(5) format.
        #[arg(long, num_args = 2, value_names = ["FORMAT", "DIR"])]
        export: Option<Vec<String>>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Turn the qemu-<target> entries of architectures back on.
    Enable(#[command(flatten)] Selection),
    /// Turn the qemu-<target> entries of architectures off, keeping them.
    Disable(#[command(flatten)] Selection),
    /// Remove the qemu-<target> entries of architectures.
    Unregister {
        #[command(flatten)]
        sel: Selection,
        /// Print what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The entries an enable, disable or unregister works on.
#[derive(Debug, Args)]
pub struct Selection {
    #[command(flatten)]
    target: Target,
    /// Architecture, or `all`.
    #[arg(long, value_name = "ARCH|all")]
    arch: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Why a binfmt command cannot go on; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BinfmtCmdError {
    /// The instance cannot be read (not mounted, no access).
    #[error("{0}")]
    Read(String),
    /// A change to the host's own instance by a user.
    #[error("{0} the host's binfmt_misc needs root: run it with sudo (to test emulation without touching the host, use `mtbx arch check`)")]
    NeedsRoot(String),
    /// An entry to change that is not registered.
    #[error("no binfmt_misc entry named {name} at {}: `mtbx binfmt status` lists them", root.display())]
    NoEntry {
        /// The entry's name.
        name: String,
        /// The instance.
        root: PathBuf,
    },
}

impl crate::error::Classify for BinfmtCmdError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Failed
    }
}

/// Which binfmt_misc instance to work on.
#[derive(Debug, Args)]
pub struct Target {
    /// Mount point of the binfmt_misc instance.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT)]
    binfmt_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    Systemd,
}

pub fn run(cmd: BinfmtCommand) -> Result<i32> {
    match cmd {
        BinfmtCommand::Status { target, format } => status(&target, format),
        BinfmtCommand::Register {
            target,
            arch,
            persistent,
            credential,
            preserve_argv0,
            qemu,
            dry_run,
            export,
            format,
        } => {
            let flags = Flags {
                preserve_argv0,
                open_binary: credential,
                credentials: credential,
                fix_binary: persistent,
            };
            let export = match export {
                None => None,
                Some(v) => {
                    let fmt = ExportFormat::from_str(&v[0], true).map_err(|_| {
                        BadInput(format!(
                            "unknown --export format {}; valid: systemd",
                            crate::text::quoted(&v[0])
                        ))
                    })?;
                    Some((fmt, PathBuf::from(&v[1])))
                }
            };
            register(&target, &arch, flags, qemu, dry_run, export, format)
        }
        BinfmtCommand::Unregister { sel, dry_run } => change(&sel, Change::Remove { dry_run }),
        BinfmtCommand::Enable(sel) => change(&sel, Change::Enable(true)),
        BinfmtCommand::Disable(sel) => change(&sel, Change::Enable(false)),
    }
}

#[derive(Serialize)]
struct StatusEntry {
    name: String,
    enabled: bool,
    flags: String,
    interpreter: String,
    arches: Vec<String>,
}

#[derive(Serialize)]
struct StatusReport {
    root: PathBuf,
    mounted: bool,
    enabled: Option<bool>,
    entries: Vec<StatusEntry>,
}

fn status(target: &Target, format: Format) -> Result<i32> {
    let hb = HostBinfmt::read(&BinfmtFs::new(&target.binfmt_dir));
    if let Some(err) = &hb.error {
        return Err(BinfmtCmdError::Read(err.clone()).into());
    }
    let report = StatusReport {
        root: hb.root.clone(),
        mounted: hb.mounted,
        enabled: hb.enabled,
        entries: hb
            .entries
            .iter()
            .map(|e| StatusEntry {
                name: e.name.clone(),
                enabled: e.enabled,
                flags: e.flags.to_string(),
                interpreter: e.interpreter.clone(),
                arches: e.arches().iter().map(|a| a.platform()).collect(),
            })
            .collect(),
    };
    if format == Format::Json {
        output::print_json(&report)?;
        return Ok(exit::OK);
    }
    if !report.mounted {
        println!("binfmt_misc is not mounted at {}: no entries", report.root.display());
        return Ok(exit::OK);
    }
    let mut t = Table::new(&["NAME", "ARCH", "ENABLED", "FLAGS", "INTERPRETER"]);
    for e in &report.entries {
        let arches = if e.arches.is_empty() { "-".to_string() } else { e.arches.join(",") };
        let flags = if e.flags.is_empty() { "-".to_string() } else { e.flags.clone() };
        t.row(vec![e.name.clone(), arches, yes_no(e.enabled), flags, e.interpreter.clone()]);
    }
    print!("{}", t.render(color_stdout()));
    println!(
        "\n{} entries at {} (binfmt_misc {})",
        report.entries.len(),
        report.root.display(),
        if report.enabled == Some(false) { "disabled" } else { "enabled" }
    );
    Ok(exit::OK)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// The QEMU targets an `--arch` value names: one, or every foreign one.
fn targets(name: &str) -> Result<Vec<&'static Arch>> {
    let host = Arch::host();
    if name == "all" {
        return Ok(arch::qemu_targets().filter(|a| !a.is_native_on(host)).collect());
    }
    let a = Arch::parse(name)?;
    if a.is_native_on(host) {
        return Err(BadInput(format!(
            "{} runs natively on this {} host; there is nothing to register",
            a.platform(),
            host.platform()
        ))
        .into());
    }
    Ok(vec![a])
}

/// Refuse to change the host's instance unless we are root; say why.
fn guard_host(fs: &BinfmtFs, verb: &str) -> Result<()> {
    let host_instance = host::in_initial_userns() && fs.root() == Path::new(DEFAULT_ROOT);
    if host_instance && !nix::unistd::geteuid().is_root() {
        return Err(BinfmtCmdError::NeedsRoot(verb.to_string()).into());
    }
    Ok(())
}

fn register(
    target: &Target,
    name: &str,
    flags: Flags,
    qemu: Option<PathBuf>,
    dry_run: bool,
    export: Option<(ExportFormat, PathBuf)>,
    format: Format,
) -> Result<i32> {
    let mode = match export {
        Some((ExportFormat::Systemd, dir)) => Mode::Systemd { dir, dry_run },
        None if dry_run => Mode::DryRun,
        None => Mode::Register,
    };
    let fs = BinfmtFs::new(&target.binfmt_dir);
    let req = RegisterRequest { arches: targets(name)?, all: name == "all", flags, qemu, mode };
    if matches!(req.mode, Mode::Register) {
        if req.qemu.is_some() && req.arches.len() != 1 {
            return Err(RegisterError::OneQemuManyArches.into());
        }
        guard_host(&fs, "registering in")?;
        if flags.credentials && host::in_initial_userns() {
            output::warn(
                "--credential sets flag C on the host: any setuid binary of these architectures will run QEMU with its privileges",
            );
        }
        fs.ensure_mounted().context("cannot prepare binfmt_misc")?;
    }
    let rows = crate::emu::register::register(&fs, &req)?;
    print_rows(&rows, format)?;
    Ok(if rows.iter().any(Outcome::failed) { exit::FAILED } else { exit::OK })
}

fn print_rows(rows: &[Outcome], format: Format) -> Result<()> {
    if format == Format::Json {
        return output::print_json(&rows);
    }
    let mut t = Table::new(&["NAME", "PLATFORM", "FLAGS", "RESULT", "INTERPRETER / DETAIL"]);
    for r in rows {
        let detail = r
            .detail
            .clone()
            .or_else(|| r.interpreter.as_ref().map(|p| p.display().to_string()))
            .unwrap_or_default();
        let flags = if r.flags.is_empty() { "-".to_string() } else { r.flags.clone() };
        t.row(vec![r.name.clone(), r.platform.clone(), flags, r.outcome.clone(), detail]);
    }
    print!("{}", t.render(color_stdout()));
    for r in rows.iter().filter(|r| r.outcome.starts_with("would-")) {
        if let Some(line) = &r.line {
            println!("{line}");
        }
    }
    Ok(())
}

/// What `change` does to each entry.
#[derive(Clone, Copy)]
enum Change {
    Remove { dry_run: bool },
    Enable(bool),
}

/// Remove, enable or disable the qemu-<target> entries `name` stands for.
fn change(sel: &Selection, what: Change) -> Result<i32> {
    let name = sel.arch.as_str();
    let arches = targets(name)?;
    let fs = BinfmtFs::new(&sel.target.binfmt_dir);
    let verb = match what {
        Change::Remove { .. } => "unregistering from",
        Change::Enable(_) => "changing",
    };
    if !matches!(what, Change::Remove { dry_run: true }) {
        guard_host(&fs, verb)?;
    }
    let current = HostBinfmt::read(&fs);
    if let Some(err) = current.error {
        return Err(BinfmtCmdError::Read(err).into());
    }
    let mut rows = Vec::new();
    for a in arches {
        let entry = current.entries.iter().find(|e| e.name == a.binfmt_name());
        let Some(entry) = entry else {
            if name == "all" {
                continue;
            }
            return Err(
                BinfmtCmdError::NoEntry { name: a.binfmt_name(), root: fs.root().to_path_buf() }.into()
            );
        };
        let outcome = match what {
            Change::Remove { dry_run: true } => "would-remove",
            Change::Remove { dry_run: false } => {
                fs.remove(&entry.name)?;
                "removed"
            }
            Change::Enable(on) => {
                fs.set_enabled(&entry.name, on)?;
                if on {
                    "enabled"
                } else {
                    "disabled"
                }
            }
        };
        rows.push(Outcome {
            name: entry.name.clone(),
            platform: a.platform(),
            interpreter: Some(PathBuf::from(&entry.interpreter)),
            flags: entry.flags.to_string(),
            line: None,
            outcome: outcome.to_string(),
            detail: None,
        });
    }
    print_rows(&rows, sel.format)?;
    Ok(exit::OK)
}
