//! The policy of `binfmt register`: for each architecture, what to do with
//! a binfmt_misc instance (register, leave an identical entry alone, leave
//! an architecture another entry already serves, refuse a clashing name,
//! skip one without an interpreter), or what a dry run or an export would
//! do. It returns one [`Outcome`] per architecture; the CLI only guards the
//! host instance and prints them.

use std::path::PathBuf;

use serde::Serialize;

use super::arch::Arch;
use super::binfmt::{BinfmtError, BinfmtFs, Flags, Registration};
use super::host::{self, HostBinfmt};

/// Where the registrations go.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Into the instance.
    Register,
    /// Nowhere: say what would be registered.
    DryRun,
    /// binfmt.d(5) files in this directory (written unless `dry_run`).
    Systemd {
        /// The directory.
        dir: PathBuf,
        /// Only say which files would be written.
        dry_run: bool,
    },
}

/// What `register` is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// The architectures.
    pub arches: Vec<&'static Arch>,
    /// `--arch all`: an architecture without an interpreter is skipped,
    /// not an error.
    pub all: bool,
    /// The entry flags.
    pub flags: Flags,
    /// The interpreter to use instead of the one found (one arch only).
    pub qemu: Option<PathBuf>,
    /// Where to.
    pub mode: Mode,
}

/// What happened to one architecture, one row of `binfmt register`.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The entry's name (`qemu-aarch64`).
    pub name: String,
    /// The platform.
    pub platform: String,
    /// The interpreter, when one was found.
    pub interpreter: Option<PathBuf>,
    /// The flags, in the kernel's letters.
    pub flags: String,
    /// The register line.
    pub line: Option<String>,
    /// registered, already-registered, served-by-other-entry,
    /// would-register, exported, would-export, skipped, failed
    pub outcome: String,
    /// Why, or where.
    pub detail: Option<String>,
}

impl Outcome {
    /// Whether this one failed.
    pub fn failed(&self) -> bool {
        self.outcome == "failed"
    }
}

/// Why `register` stopped before finishing every architecture.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// `--qemu` with more than one architecture.
    #[error("--qemu names one interpreter, so give one --arch, not all")]
    OneQemuManyArches,
    /// No usable interpreter for an architecture asked for by name.
    #[error("{0}")]
    NoInterpreter(String),
    /// The instance refused in a way that will not change per entry.
    #[error(transparent)]
    Binfmt(#[from] BinfmtError),
    /// An export file could not be written.
    #[error("cannot write {}", path.display())]
    Export {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Classify for RegisterError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            RegisterError::OneQemuManyArches => crate::error::Kind::BadInput,
            _ => crate::error::Kind::Failed,
        }
    }
}

/// Carry out `req` on the instance `fs` (read for what it holds; written
/// only in [`Mode::Register`]).
pub fn register(fs: &BinfmtFs, req: &Request) -> Result<Vec<Outcome>, RegisterError> {
    if req.qemu.is_some() && req.arches.len() != 1 {
        return Err(RegisterError::OneQemuManyArches);
    }
    let current = HostBinfmt::read(fs);
    let flags = req.flags;
    let mut rows = Vec::new();
    for &a in &req.arches {
        let row = |reg: Option<&Registration>,
                   line: Option<String>,
                   outcome: &str,
                   detail: Option<String>| Outcome {
            name: a.binfmt_name(),
            platform: a.platform(),
            interpreter: reg.map(|r| r.interpreter.clone()),
            flags: flags.to_string(),
            line,
            outcome: outcome.to_string(),
            detail,
        };
        let search = host::find_interpreter(a, req.qemu.as_deref());
        let Some(interp) = search.usable() else {
            if req.all {
                rows.push(row(None, None, "skipped", Some(search.problem(a))));
                continue;
            }
            return Err(RegisterError::NoInterpreter(search.problem(a)));
        };
        let reg = Registration::for_arch(a, &interp.path, flags);
        let line = reg.line()?;
        match &req.mode {
            Mode::Systemd { dir, dry_run } => {
                let path = dir.join(format!("{}.conf", reg.name));
                if !dry_run {
                    crate::fsutil::write_atomic(&path, format!("{line}\n").as_bytes(), 0o644)
                        .map_err(|source| RegisterError::Export { path: path.clone(), source })?;
                }
                let outcome = if *dry_run { "would-export" } else { "exported" };
                rows.push(row(Some(&reg), Some(line), outcome, Some(path.display().to_string())));
                continue;
            }
            Mode::DryRun => {
                rows.push(row(Some(&reg), Some(line), "would-register", None));
                continue;
            }
            Mode::Register => {}
        }
        if let Some(e) = current.entries.iter().find(|e| e.name == reg.name) {
            let same = e.interpreter == interp.path.to_string_lossy() && e.flags == flags;
            if same && e.serves(a) {
                rows.push(row(Some(&reg), Some(line), "already-registered", None));
                continue;
            }
            let why = format!(
                "an entry named {} already exists (interpreter {}, flags {}); run `mtbx binfmt unregister --arch {}` first",
                e.name, e.interpreter, e.flags, a.short_name()
            );
            rows.push(row(Some(&reg), Some(line), "failed", Some(why)));
            continue;
        }
        if let Some(other) = current.entries.iter().find(|e| e.enabled && e.serves(a)) {
            let why = format!("already served by entry {} ({})", other.name, other.interpreter);
            rows.push(row(Some(&reg), Some(line), "served-by-other-entry", Some(why)));
            continue;
        }
        match fs.register(&reg) {
            Ok(()) => rows.push(row(Some(&reg), Some(line), "registered", None)),
            Err(e @ (BinfmtError::PermissionDenied(_) | BinfmtError::NotMounted(_))) => return Err(e.into()),
            Err(e) => rows.push(row(Some(&reg), Some(line), "failed", Some(e.to_string()))),
        }
    }
    Ok(rows)
}
