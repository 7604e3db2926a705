//! Run a program in a fresh user namespace that has a binfmt_misc instance
//! of its own (Linux >= 6.7), so foreign binaries run under QEMU without
//! reading or changing the host's registrations.
//!
//! The namespace work happens in the forked child just before exec: a
//! multithreaded process cannot unshare(CLONE_NEWUSER), but the child of a
//! fork has one thread. Between fork and exec only async-signal-safe calls
//! are allowed, so everything that allocates (paths, map lines, register
//! lines) is prepared in the parent and the child makes raw system calls.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::emu::binfmt::Registration;

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
}

impl Step {
    fn from_u8(b: u8) -> Option<Step> {
        use Step::*;
        [Unshare, Setgroups, UidMap, GidMap, Private, Mount, Register].into_iter().find(|s| *s as u8 == b)
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
        }
    }

    fn hint(self, errno: Errno) -> &'static str {
        match (self, errno) {
            (Step::Unshare, _) => {
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
    /// The program did not end in time and was killed.
    #[error("{} did not finish within {} s and was killed", program.display(), timeout.as_secs())]
    Timeout {
        /// The program.
        program: PathBuf,
        /// The limit.
        timeout: Duration,
    },
}

impl SandboxError {
    /// Whether the namespace or its binfmt_misc instance could not be made:
    /// the machine cannot sandbox at all, as opposed to a failed program.
    pub fn is_setup_failure(&self) -> bool {
        matches!(self, SandboxError::Step { step, .. } if *step != Step::Register)
    }
}

/// Everything the child needs, prepared before fork.
struct Plan {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    mountpoint: CString,
    register: CString,
    lines: Vec<Vec<u8>>,
}

const SETGROUPS: &std::ffi::CStr = c"/proc/self/setgroups";
const UID_MAP: &std::ffi::CStr = c"/proc/self/uid_map";
const GID_MAP: &std::ffi::CStr = c"/proc/self/gid_map";
const ROOT: &std::ffi::CStr = c"/";
const BINFMT_MISC: &std::ffi::CStr = c"binfmt_misc";

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

    /// The child's half. Async-signal-safe: raw system calls on prepared
    /// buffers, no allocation.
    fn enter(&self) -> Result<(), (Step, Errno)> {
        // SAFETY: plain system calls on NUL-terminated buffers that outlive
        // the calls.
        unsafe {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                return Err((Step::Unshare, Errno::last()));
            }
            write_file(SETGROUPS, b"deny").map_err(|e| (Step::Setgroups, e))?;
            write_file(UID_MAP, &self.uid_map).map_err(|e| (Step::UidMap, e))?;
            write_file(GID_MAP, &self.gid_map).map_err(|e| (Step::GidMap, e))?;
            let private = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(std::ptr::null(), ROOT.as_ptr(), std::ptr::null(), private, std::ptr::null()) != 0
            {
                return Err((Step::Private, Errno::last()));
            }
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            if libc::mount(
                BINFMT_MISC.as_ptr(),
                self.mountpoint.as_ptr(),
                BINFMT_MISC.as_ptr(),
                flags,
                std::ptr::null(),
            ) != 0
            {
                return Err((Step::Mount, Errno::last()));
            }
            for line in &self.lines {
                write_file(&self.register, line).map_err(|e| (Step::Register, e))?;
            }
        }
        Ok(())
    }
}

/// open + one write + close, without allocating.
unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> Result<(), Errno> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return Err(Errno::last());
    }
    let n = libc::write(fd, data.as_ptr().cast(), data.len());
    let err = Errno::last();
    libc::close(fd);
    if n < 0 {
        Err(err)
    } else if n as usize != data.len() {
        Err(Errno::EIO)
    } else {
        Ok(())
    }
}

/// Report a failed step through a pipe: [step, errno as 4 LE bytes].
fn report(fd: RawFd, step: Step, errno: Errno) {
    let e = (errno as i32).to_le_bytes();
    let msg = [step as u8, e[0], e[1], e[2], e[3]];
    // SAFETY: write(2) on a pipe fd we own, from a stack buffer.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

fn read_report(read: OwnedFd) -> Option<SandboxError> {
    let mut buf = Vec::new();
    std::fs::File::from(read).read_to_end(&mut buf).ok()?;
    let step = Step::from_u8(*buf.first()?)?;
    let errno = i32::from_le_bytes(buf.get(1..5)?.try_into().ok()?);
    Some(SandboxError::Step { step, errno: Errno::from_raw(errno) })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::Io { what: "creating a pipe".into(), source: e.into() })
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

/// Whether this process can create a user namespace and mount a private
/// binfmt_misc instance in it: the real test, not a kernel version guess.
pub fn probe() -> Result<(), SandboxError> {
    let wd = Workdir::new()?;
    let plan = Plan::new(&wd.mountpoint(), &[])?;
    let (read, write) = pipe()?;
    // SAFETY: the child only makes async-signal-safe calls (see Plan::enter)
    // and leaves with _exit.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let code = match plan.enter() {
                Ok(()) => 0,
                Err((step, errno)) => {
                    report(write.as_raw_fd(), step, errno);
                    1
                }
            };
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(write);
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
        Err(e) => Err(SandboxError::Io { what: "fork".into(), source: e.into() }),
    }
}

/// Run `program args...` (started as `arg0` when given) inside a new user namespace whose own binfmt_misc
/// instance holds exactly `regs`; capture its output. The host's instance
/// is neither read nor written.
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
    let wfd = write.as_raw_fd();
    // SAFETY: the closure is async-signal-safe (see Plan::enter).
    unsafe {
        cmd.pre_exec(move || {
            plan.enter().map_err(|(step, errno)| {
                report(wfd, step, errno);
                std::io::Error::from_raw_os_error(errno as i32)
            })
        });
    }
    let spawned = spawn_retrying(&mut cmd);
    drop(write);
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
