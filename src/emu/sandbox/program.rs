//! One program in a user namespace with a binfmt_misc instance of its
//! own, its output captured: the check programs, QEMU's `-cpu help`, and
//! [`probe`], whether such a sandbox can be made here at all. The child
//! std's `Command` forks enters the namespace just before exec.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::CloneFlags;

use super::steps::{self, pipe, read_report};
use super::{fork, SandboxError, Step, Workdir};
use crate::emu::binfmt::Registration;

/// Everything the child needs, prepared before fork.
pub(super) struct Plan {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    mountpoint: CString,
    register: CString,
    lines: Vec<Vec<u8>>,
}

impl Plan {
    fn new(mountpoint: &Path, regs: &[Registration]) -> Result<Plan, SandboxError> {
        // Map root in the namespace to whoever we are: the one mapping any
        // process may write for itself.
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        let cstr = |p: &Path| {
            CString::new(p.as_os_str().as_bytes()).map_err(|e| SandboxError::Io {
                what: format!("bad path {}", p.display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            })
        };
        let mut lines = Vec::new();
        for r in regs {
            let line = r.line().map_err(|e| SandboxError::Io {
                what: "building the register line".into(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
            })?;
            lines.push(line.into_bytes());
        }
        Ok(Plan {
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
            mountpoint: cstr(mountpoint)?,
            register: cstr(&mountpoint.join("register"))?,
            lines,
        })
    }

    /// The child's half: a user and a mount namespace, the binfmt_misc
    /// instance and its entries. Async-signal-safe (see `steps`).
    pub(super) fn enter(&self) -> Result<(), (Step, Errno)> {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
            .map_err(|e| (Step::Unshare, e))?;
        steps::map_ids(&self.uid_map, &self.gid_map)?;
        steps::make_mounts_private().map_err(|e| (Step::Private, e))?;
        steps::mount_binfmt_misc(&self.mountpoint).map_err(|e| (Step::Mount, e))?;
        for line in &self.lines {
            steps::write_file(&self.register, line).map_err(|e| (Step::Register, e))?;
        }
        Ok(())
    }

    /// [`Plan::enter`] as the probe's child: report a failed step, exit 1;
    /// else exit 0. Async-signal-safe.
    pub(super) fn probe_child(&self, report: BorrowedFd<'_>) -> ! {
        let code = match self.enter() {
            Ok(()) => 0,
            Err((step, errno)) => {
                steps::report(report, step, errno);
                1
            }
        };
        crate::sys::child::exit_child(code)
    }

    /// [`Plan::enter`] as `Command`'s pre-exec hook: a failed step is
    /// reported, and fails the spawn. Async-signal-safe.
    pub(super) fn enter_before_exec(&self, report: BorrowedFd<'_>) -> std::io::Result<()> {
        self.enter().map_err(|(step, errno)| {
            steps::report(report, step, errno);
            std::io::Error::from_raw_os_error(errno as i32)
        })
    }
}

/// Whether this process can create a user namespace and mount a private
/// binfmt_misc instance in it: the real test, not a kernel version guess.
pub fn probe() -> Result<(), SandboxError> {
    let wd = Workdir::new()?;
    let plan = Plan::new(&wd.mountpoint(), &[])?;
    let (read, write) = pipe()?;
    let child = fork::probe(&plan, write.as_fd());
    drop(write);
    let child = child.map_err(|e| SandboxError::Io { what: "fork".into(), source: e.into() })?;
    let status = nix::sys::wait::waitpid(child, None);
    if let Some(err) = read_report(read) {
        return Err(err);
    }
    match status {
        Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
        other => Err(SandboxError::Io {
            what: "sandbox probe".into(),
            source: std::io::Error::other(format!("child ended with {other:?}")),
        }),
    }
}

/// Run `program args...` (started as `arg0` when given) inside a new user
/// namespace whose own binfmt_misc instance holds exactly `regs`; capture
/// its output. The host's instance is neither read nor written.
pub fn run(
    wd: &Workdir,
    regs: &[Registration],
    program: &Path,
    arg0: Option<&str>,
    args: &[&str],
    timeout: Duration,
) -> Result<Output, SandboxError> {
    let plan = Plan::new(&wd.mountpoint(), regs)?;
    for line in &plan.lines {
        tracing::debug!("sandbox registers {}", String::from_utf8_lossy(line));
    }
    tracing::debug!("sandbox runs {}", program.display());
    let mut cmd = Command::new(program);
    if let Some(arg0) = arg0 {
        cmd.arg0(arg0);
    }
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let (read, write) = pipe()?;
    fork::enter_before_exec(&mut cmd, plan, write);
    let spawned = spawn_retrying(&mut cmd);
    // The hook holds the pipe's write end: this closes it, so the read
    // below ends.
    drop(cmd);
    let child = match spawned {
        Ok(child) => child,
        Err(source) => {
            return Err(read_report(read)
                .unwrap_or(SandboxError::Io { what: format!("running {}", program.display()), source }))
        }
    };
    wait_output(child, program, timeout)
}

/// Spawn, retrying ETXTBSY: another thread's fork may briefly hold a copy
/// of the descriptor we wrote the program through.
pub fn spawn_retrying(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..8 {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
    cmd.spawn()
}

/// Wait for a child with a deadline, then collect its (small) output.
pub fn wait_output(
    mut child: std::process::Child,
    program: &Path,
    timeout: Duration,
) -> Result<Output, SandboxError> {
    let start = Instant::now();
    // Poll with a growing pause: the check programs end within
    // milliseconds, so a fixed coarse sleep would dominate their run time.
    let mut pause = Duration::from_micros(50);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SandboxError::Timeout { program: program.into(), timeout });
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(SandboxError::Io { what: format!("waiting for {}", program.display()), source })
            }
        }
    }
    child.wait_with_output().map_err(|source| SandboxError::Io {
        what: format!("reading the output of {}", program.display()),
        source,
    })
}
