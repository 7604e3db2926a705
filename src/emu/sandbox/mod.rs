//! Run a program in a fresh user namespace that has a binfmt_misc instance
//! of its own (Linux >= 6.7), so foreign binaries run under QEMU without
//! reading or changing the host's registrations.
//!
//! The namespace work happens in a forked child just before exec: a
//! multithreaded process cannot unshare(CLONE_NEWUSER), but the child of a
//! fork has one thread. Between fork and exec only async-signal-safe calls
//! are allowed, so everything that allocates (paths, map lines, register
//! lines) is prepared in the parent and the child makes plain system calls
//! on the prepared buffers.
//!
//! - `program`: one program with its output captured ([`run`], and
//!   [`probe`], whether the sandbox can be made at all): the check
//!   programs and QEMU's `-cpu help`.
//! - `rootfs`: a whole root file system ([`run_rootfs`], `run
//!   --rootfs`): a PID namespace too, so the tree gets a /proc of its own,
//!   and the command, stdin and terminal the user's rather than captured.
//! - `steps`: what both children do (the user namespace's maps, mounts,
//!   register lines) and how a child reports the step that failed.
//! - `fork`: the one place children are made, and so the one module of
//!   `emu` allowed `unsafe`: each child runs only the async-signal-safe
//!   code its comment names. The system calls themselves are safe
//!   functions of nix and of [`crate::sys::child`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

#[allow(unsafe_code)]
mod fork;
mod program;
mod rootfs;
mod steps;

pub use program::{probe, run, spawn_retrying, wait_output};
pub use rootfs::{run_rootfs, RootfsMount, RootfsSpec};

/// The steps of entering the sandbox, in order, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    /// unshare(CLONE_NEWUSER | CLONE_NEWNS)
    Unshare = 1,
    /// writing /proc/self/setgroups
    Setgroups,
    /// writing /proc/self/uid_map
    UidMap,
    /// writing /proc/self/gid_map
    GidMap,
    /// making every mount private
    Private,
    /// mounting binfmt_misc
    Mount,
    /// writing a register line
    Register,
    /// (root file systems) creating the namespaces with clone(2)
    Clone,
    /// (root file systems) one of the mounts; the index names it
    RootfsMount,
    /// (root file systems) pivot_root into the root file system
    PivotRoot,
    /// (root file systems) executing the command
    Exec,
}

impl Step {
    fn from_u8(b: u8) -> Option<Step> {
        use Step::*;
        [Unshare, Setgroups, UidMap, GidMap, Private, Mount, Register, Clone, RootfsMount, PivotRoot, Exec]
            .into_iter()
            .find(|s| *s as u8 == b)
    }

    fn describe(self) -> &'static str {
        match self {
            Step::Unshare => "creating a user namespace",
            Step::Setgroups => "writing /proc/self/setgroups",
            Step::UidMap => "writing the user namespace's uid map",
            Step::GidMap => "writing the user namespace's gid map",
            Step::Private => "making mounts private",
            Step::Mount => "mounting a binfmt_misc instance in a user namespace",
            Step::Register => "registering the interpreter in the sandbox's binfmt_misc",
            Step::Clone => "creating user, mount and PID namespaces",
            Step::RootfsMount => "mounting in the root file system",
            Step::PivotRoot => "changing the root to the root file system",
            Step::Exec => "running the command",
        }
    }

    fn hint(self, errno: Errno) -> &'static str {
        match (self, errno) {
            (Step::Unshare | Step::Clone, _) => {
                "; user namespaces are disabled here (see sysctl user.max_user_namespaces and kernel.unprivileged_userns_clone)"
            }
            (Step::Mount, Errno::EPERM) => {
                "; this needs Linux 6.7 or later (per-user-namespace binfmt_misc)"
            }
            (Step::Register, Errno::ENOENT) => "; the interpreter was not found",
            (Step::Register, Errno::EEXIST) => "; the entry was given twice",
            _ => "",
        }
    }
}

/// Why the sandbox could not be entered or the program not run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// One of the namespace steps failed.
    #[error("{} failed: {errno}{}", step.describe(), step.hint(*errno))]
    Step {
        /// Which step.
        step: Step,
        /// The error it got.
        errno: Errno,
    },
    /// Preparing or running the program failed outside the steps.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// One of a root file system's mounts failed.
    #[error("mounting {what} failed: {errno}")]
    RootfsMount {
        /// Which mount, as the plan names it.
        what: String,
        /// The error it got.
        errno: Errno,
    },
    /// The command could not be executed inside the root file system.
    #[error("{}", exec_message(program, *errno))]
    Exec {
        /// The command as given.
        program: String,
        /// execve's error (ENOENT: not found on PATH).
        errno: Errno,
    },
    /// The program did not end in time and was killed.
    #[error("{} did not finish within {} s and was killed", program.display(), timeout.as_secs())]
    Timeout {
        /// The program.
        program: PathBuf,
        /// The limit.
        timeout: Duration,
    },
}

fn exec_message(program: &str, errno: Errno) -> String {
    // What the user typed, or the shell a tree's passwd names.
    let program = crate::text::escaped(program);
    match errno {
        Errno::ENOENT | Errno::ENOTDIR => format!("{program}: command not found in the root file system"),
        e => format!("cannot run {program} in the root file system: {}", e.desc()),
    }
}

impl SandboxError {
    /// Whether the namespace or its binfmt_misc instance could not be made:
    /// the machine cannot sandbox at all, as opposed to a failed program.
    pub fn is_setup_failure(&self) -> bool {
        matches!(self, SandboxError::Step { step, .. } if *step != Step::Register)
    }
}

impl crate::error::Classify for SandboxError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            // As a shell says it: 127 not found, 126 found but not runnable.
            SandboxError::Exec { errno: Errno::ENOENT | Errno::ENOTDIR, .. } => Kind::CommandNotFound,
            SandboxError::Exec { .. } => Kind::CannotExec,
            _ => Kind::Failed,
        }
    }
}

/// A private directory for the sandbox's mount point and files.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    /// A new private directory under the system's temporary directory.
    pub fn new() -> Result<Workdir, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix("mtbx-")
            .tempdir()
            .map_err(|source| SandboxError::Io { what: "creating a temporary directory".into(), source })?;
        let wd = Workdir { dir };
        std::fs::create_dir(wd.mountpoint()).map_err(|source| SandboxError::Io {
            what: "creating the binfmt_misc mount point".into(),
            source,
        })?;
        Ok(wd)
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the sandbox mounts its binfmt_misc instance. It is mounted only
    /// in the child's private mount namespace, so on the host it stays an
    /// empty directory that is removed with the rest.
    pub fn mountpoint(&self) -> PathBuf {
        self.dir.path().join("binfmt_misc")
    }
}
