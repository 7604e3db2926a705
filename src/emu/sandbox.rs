//! Run a program in a fresh user namespace that has a binfmt_misc instance
//! of its own (Linux >= 6.7), so foreign binaries run under QEMU without
//! reading or changing the host's registrations.
//!
//! The namespace work happens in the forked child just before exec: a
//! multithreaded process cannot unshare(CLONE_NEWUSER), but the child of a
//! fork has one thread. Between fork and exec only async-signal-safe calls
//! are allowed, so everything that allocates (paths, map lines, register
//! lines) is prepared in the parent and the child makes raw system calls.
//!
//! [`run_rootfs`] is the same sandbox for a whole root file system (`run
//! --rootfs`): a PID namespace too, so the tree gets a /proc of its own,
//! and the command, stdin and terminal the user's rather than captured.

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

/// Report a failed step through a pipe: [step, index, errno as 4 LE
/// bytes]; the index says which of several mounts or programs.
fn report(fd: RawFd, step: Step, errno: Errno) {
    report_at(fd, step, 0, errno)
}

fn report_at(fd: RawFd, step: Step, index: u8, errno: Errno) {
    let e = (errno as i32).to_le_bytes();
    let msg = [step as u8, index, e[0], e[1], e[2], e[3]];
    // SAFETY: write(2) on a pipe fd we own, from a stack buffer.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

fn read_report(read: OwnedFd) -> Option<SandboxError> {
    let (step, _, errno) = read_raw_report(read)?;
    Some(SandboxError::Step { step, errno })
}

/// The first report on the pipe, once every writer has closed it.
fn read_raw_report(read: OwnedFd) -> Option<(Step, u8, Errno)> {
    let mut buf = Vec::new();
    std::fs::File::from(read).take(64).read_to_end(&mut buf).ok()?;
    let step = Step::from_u8(*buf.first()?)?;
    let index = *buf.get(1)?;
    let errno = i32::from_le_bytes(buf.get(2..6)?.try_into().ok()?);
    Some((step, index, Errno::from_raw(errno)))
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

/// A mount of a root file system sandbox (see [`RootfsSpec`]).
#[derive(Debug, Clone)]
pub struct RootfsMount {
    /// A host path bound (recursively) onto the target, or None for a
    /// fresh file system of `fstype`.
    pub source: Option<PathBuf>,
    /// The file system type of a fresh mount (`tmpfs`).
    pub fstype: Option<&'static str>,
    /// Its mount options (`mode=1777`).
    pub data: Option<String>,
    /// Where, as a host path inside the root file system that contains no
    /// symbolic link (resolved within the root file system beforehand:
    /// mount(2) would follow a link out of it).
    pub target: PathBuf,
    /// What it is, for an error message (`/dev`, `your home`).
    pub what: String,
    /// Directories made in it once mounted, in order (mount points for the
    /// mounts after it).
    pub mkdirs: Vec<PathBuf>,
    /// Bytes the sandbox writes to `source` (a new file, in a file system
    /// of its own mounted before: its /tmp) just before binding it, and
    /// unlinks right after: a file that exists only in the sandbox.
    pub contents: Option<Vec<u8>>,
}

/// Everything [`run_rootfs`] needs: a root file system directory, what to
/// mount in it, the interpreters to register, and the command.
#[derive(Debug, Clone)]
pub struct RootfsSpec {
    /// The root file system (absolute, no symbolic link).
    pub rootfs: PathBuf,
    /// Where its /proc is (as the mount targets: a host path).
    pub proc_dir: PathBuf,
    /// Mounted in this order: the first `before_proc` right after the
    /// root file system's own bind (copy-on-write layers, which would hide
    /// what is mounted under them), the rest after /proc and binfmt_misc.
    pub mounts: Vec<RootfsMount>,
    /// How many of `mounts` go before /proc.
    pub before_proc: usize,
    /// Registered in the namespace's own binfmt_misc instance, mounted at
    /// /proc/sys/fs/binfmt_misc inside; none for a native root file system.
    pub regs: Vec<Registration>,
    /// Root inside (uid and gid 0 mapped to the caller), else the caller's
    /// own ids mapped to themselves.
    pub root: bool,
    /// Directories to change to inside, the first that works ("/" last).
    pub workdirs: Vec<PathBuf>,
    /// The program: the paths inside to try in order (as execvp walks
    /// PATH), and the name it was asked for, for messages.
    pub programs: Vec<PathBuf>,
    /// What the user asked to run, for messages.
    pub program_name: String,
    /// argv, argv[0] included.
    pub argv: Vec<std::ffi::OsString>,
    /// The environment, `KEY=VALUE`.
    pub env: Vec<std::ffi::OsString>,
    /// Give the command the terminal on stdin as a foreground process
    /// group of its own (for an interactive shell), when mtbx has it.
    pub take_terminal: bool,
}

/// A [`RootfsSpec`] as the child uses it: NUL-terminated buffers and
/// pointer arrays, all made before clone.
struct RootfsPlan {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    /// The command's own user namespace's maps, when it runs as the user.
    inner_maps: Option<(Vec<u8>, Vec<u8>)>,
    rootfs: CString,
    proc_dir: CString,
    binfmt: Option<(CString, CString, Vec<Vec<u8>>)>,
    mounts: Vec<MountArgs>,
    before_proc: usize,
    workdirs: Vec<CString>,
    programs: Vec<CString>,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    env_ptrs: Vec<*const libc::c_char>,
    /// The terminal (stdin) the command takes as its own.
    tty: Option<RawFd>,
}

/// mount(2)'s arguments, and the directories made in the mount after.
struct MountArgs {
    source: Option<CString>,
    target: CString,
    fstype: Option<CString>,
    flags: libc::c_ulong,
    data: Option<CString>,
    mkdirs: Vec<CString>,
    contents: Option<Vec<u8>>,
}

impl MountArgs {
    /// Mount it (writing its contents first), then make its directories;
    /// false on failure, errno set. Async-signal-safe: raw calls on
    /// prepared buffers.
    unsafe fn mount(&self) -> bool {
        let null = std::ptr::null::<libc::c_char>();
        let p = |c: &Option<CString>| c.as_ref().map_or(null, |c| c.as_ptr());
        if let (Some(bytes), Some(source)) = (&self.contents, &self.source) {
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            let fd = libc::open(source.as_ptr(), flags, 0o644);
            if fd < 0 {
                return false;
            }
            let mut left: &[u8] = bytes;
            while !left.is_empty() {
                let n = libc::write(fd, left.as_ptr().cast(), left.len());
                if n < 0 && Errno::last() == Errno::EINTR {
                    continue;
                }
                if n <= 0 {
                    libc::close(fd);
                    return false;
                }
                left = &left[n as usize..];
            }
            libc::close(fd);
        }
        let mounted = libc::mount(
            p(&self.source),
            self.target.as_ptr(),
            p(&self.fstype),
            self.flags,
            p(&self.data).cast(),
        ) == 0;
        if let (Some(_), Some(source)) = (&self.contents, &self.source) {
            // Bound: the mount holds the file; its name goes.
            let errno = Errno::last();
            libc::unlink(source.as_ptr());
            Errno::set_raw(errno as i32);
        }
        if !mounted {
            return false;
        }
        for dir in &self.mkdirs {
            if libc::mkdir(dir.as_ptr(), 0o755) != 0 && Errno::last() != Errno::EEXIST {
                return false;
            }
        }
        true
    }
}

const PROC: &std::ffi::CStr = c"proc";
const DOT: &std::ffi::CStr = c".";

/// The host pid of the command, in the child that waits for it (pid 1 of
/// the namespace): its signal handler forwards to it.
static COMMAND_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Signals passed on to the command: the ones a terminal does not send to
/// the whole foreground process group itself (Ctrl-C's SIGINT and SIGQUIT
/// reach the command straight from the terminal).
const FORWARDED: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = COMMAND_PID.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

impl RootfsPlan {
    fn new(spec: &RootfsSpec) -> Result<RootfsPlan, SandboxError> {
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        let bad = |what: String| SandboxError::Io {
            what,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "contains a NUL byte"),
        };
        let cpath =
            |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| bad(p.display().to_string()));
        let cstr =
            |s: &std::ffi::OsStr| CString::new(s.as_bytes()).map_err(|_| bad(s.to_string_lossy().into()));
        let binfmt = if spec.regs.is_empty() {
            None
        } else {
            let mp = spec.proc_dir.join("sys/fs/binfmt_misc");
            let mut lines = Vec::new();
            for r in &spec.regs {
                let line = r.line().map_err(|e| SandboxError::Io {
                    what: "building the register line".into(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
                })?;
                lines.push(line.into_bytes());
            }
            Some((cpath(&mp)?, cpath(&mp.join("register"))?, lines))
        };
        let mut mounts = Vec::new();
        for m in &spec.mounts {
            let flags = match m.source {
                Some(_) => libc::MS_BIND | libc::MS_REC,
                None => libc::MS_NOSUID | libc::MS_NODEV,
            };
            mounts.push(MountArgs {
                source: m.source.as_deref().map(cpath).transpose()?,
                target: cpath(&m.target)?,
                fstype: m.fstype.map(|t| CString::new(t).map_err(|_| bad(t.into()))).transpose()?,
                flags,
                data: m.data.as_deref().map(|d| CString::new(d).map_err(|_| bad(d.into()))).transpose()?,
                mkdirs: m.mkdirs.iter().map(|p| cpath(p)).collect::<Result<_, _>>()?,
                contents: m.contents.clone(),
            });
        }
        let argv: Vec<CString> = spec.argv.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?;
        let env: Vec<CString> = spec.env.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?;
        let ptrs =
            |v: &[CString]| v.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        // The namespace's root must be mapped for its binfmt_misc: the
        // instance's files belong to it, and capabilities do not reach
        // files of an unmapped owner. So the sandbox is root, mapped to the
        // caller; a command run as the user gets a user namespace of its
        // own inside, mapping the user's ids back onto that root.
        let inner_maps =
            (!spec.root).then(|| (format!("{uid} 0 1\n").into_bytes(), format!("{gid} 0 1\n").into_bytes()));
        Ok(RootfsPlan {
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
            inner_maps,
            rootfs: cpath(&spec.rootfs)?,
            proc_dir: cpath(&spec.proc_dir)?,
            binfmt,
            mounts,
            before_proc: spec.before_proc.min(spec.mounts.len()),
            workdirs: spec.workdirs.iter().map(|p| cpath(p)).collect::<Result<_, _>>()?,
            programs: spec.programs.iter().map(|p| cpath(p)).collect::<Result<_, _>>()?,
            argv_ptrs: ptrs(&argv),
            _argv: argv,
            env_ptrs: ptrs(&env),
            _env: env,
            tty: (spec.take_terminal && in_foreground()).then_some(0),
        })
    }

    /// pid 1 of the new namespaces: set up the mounts, pivot into the root
    /// file system, start the command and wait for it. Async-signal-safe
    /// (raw system calls on prepared buffers), since the parent may have
    /// other threads. Never returns.
    unsafe fn pid1(&self, report_fd: RawFd) -> ! {
        let fail = |step: Step, index: usize| -> ! {
            report_at(report_fd, step, index as u8, Errno::last());
            libc::_exit(1)
        };
        if let Err(e) = write_file(SETGROUPS, b"deny") {
            report(report_fd, Step::Setgroups, e);
            libc::_exit(1);
        }
        if let Err(e) = write_file(UID_MAP, &self.uid_map) {
            report(report_fd, Step::UidMap, e);
            libc::_exit(1);
        }
        if let Err(e) = write_file(GID_MAP, &self.gid_map) {
            report(report_fd, Step::GidMap, e);
            libc::_exit(1);
        }
        let null = std::ptr::null::<libc::c_char>();
        if libc::mount(null, ROOT.as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
            fail(Step::Private, 0);
        }
        // The root file system onto itself: pivot_root needs a mount point.
        // Index 0 is this mount, 1 /proc, 2.. the plan's mounts.
        let bind = libc::MS_BIND | libc::MS_REC;
        if libc::mount(self.rootfs.as_ptr(), self.rootfs.as_ptr(), null, bind, std::ptr::null()) != 0 {
            fail(Step::RootfsMount, 0);
        }
        let (layers, mounts) = self.mounts.split_at(self.before_proc);
        for (i, m) in layers.iter().enumerate() {
            if !m.mount() {
                fail(Step::RootfsMount, i + 2);
            }
        }
        // A fresh /proc: this process is in the new PID namespace, so it
        // shows the sandbox's processes only.
        let pflags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(PROC.as_ptr(), self.proc_dir.as_ptr(), PROC.as_ptr(), pflags, std::ptr::null()) != 0 {
            fail(Step::RootfsMount, 1);
        }
        if let Some((mountpoint, register, lines)) = &self.binfmt {
            if libc::mount(
                BINFMT_MISC.as_ptr(),
                mountpoint.as_ptr(),
                BINFMT_MISC.as_ptr(),
                pflags,
                std::ptr::null(),
            ) != 0
            {
                fail(Step::Mount, 0);
            }
            // Flag F opens the interpreter now, while the host's files are
            // still in view.
            for line in lines {
                if let Err(e) = write_file(register, line) {
                    report(report_fd, Step::Register, e);
                    libc::_exit(1);
                }
            }
        }
        for (i, m) in mounts.iter().enumerate() {
            if !m.mount() {
                fail(Step::RootfsMount, i + 2 + layers.len());
            }
        }
        // pivot_root(".", "."), then detach the old root stacked on top:
        // the host's tree is out of reach, and nothing is mounted on it.
        if libc::chdir(self.rootfs.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, DOT.as_ptr(), DOT.as_ptr()) != 0
            || libc::umount2(DOT.as_ptr(), libc::MNT_DETACH) != 0
        {
            fail(Step::PivotRoot, 0);
        }
        for dir in &self.workdirs {
            if libc::chdir(dir.as_ptr()) == 0 {
                break;
            }
        }
        // The command must not be pid 1: the kernel drops signals without a
        // handler for pid 1, so Ctrl-C would not stop it. This process
        // waits, passes on SIGTERM and friends, and dies with mtbx.
        for sig in FORWARDED {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0);
        if pid < 0 {
            fail(Step::Clone, 0);
        }
        if pid == 0 {
            self.exec(report_fd);
        }
        COMMAND_PID.store(pid as i32, std::sync::atomic::Ordering::SeqCst);
        libc::close(report_fd);
        let mut status = 0;
        loop {
            let r = libc::waitpid(-1, &mut status, 0);
            if r == pid as libc::pid_t {
                break;
            }
            if r < 0 && Errno::last() != Errno::EINTR {
                libc::_exit(1);
            }
        }
        // As a shell reports it: killed by signal N is 128+N.
        let code =
            if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
        libc::_exit(code)
    }

    /// The command's process: default signal handling (mtbx ignores
    /// SIGPIPE; dispositions set to ignore survive exec), then execve each
    /// candidate path in turn as execvp does.
    unsafe fn exec(&self, report_fd: RawFd) -> ! {
        if let Some(tty) = self.tty {
            // A process group of its own, in the foreground: a job-control
            // shell reads the terminal's process group at start and gives
            // the terminal back to it at exit. mtbx's own group is not in
            // the PID namespace, so dash would fail there ("Cannot set tty
            // process group") and lose the exit code. SIGTTOU is blocked
            // for the call: this group is not in the foreground yet.
            let mut ttou: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut ttou);
            libc::sigaddset(&mut ttou, libc::SIGTTOU);
            libc::sigprocmask(libc::SIG_BLOCK, &ttou, std::ptr::null_mut());
            libc::setpgid(0, 0);
            libc::tcsetpgrp(tty, libc::getpid());
        }
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        if let Some((uid_map, gid_map)) = &self.inner_maps {
            // One thread, and the root is the mount namespace's (after
            // pivot_root, not a chroot): unshare may make a user namespace.
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                report(report_fd, Step::Unshare, Errno::last());
                libc::_exit(1);
            }
            for (file, data, step) in [
                (SETGROUPS, &b"deny"[..], Step::Setgroups),
                (UID_MAP, uid_map, Step::UidMap),
                (GID_MAP, gid_map, Step::GidMap),
            ] {
                if let Err(e) = write_file(file, data) {
                    report(report_fd, step, e);
                    libc::_exit(1);
                }
            }
        }
        let mut err = Errno::ENOENT;
        for (i, prog) in self.programs.iter().enumerate() {
            libc::execve(prog.as_ptr(), self.argv_ptrs.as_ptr(), self.env_ptrs.as_ptr());
            let e = Errno::last();
            match e {
                Errno::ENOENT | Errno::ENOTDIR => {}
                // execvp goes on after EACCES, and reports it if nothing runs.
                Errno::EACCES => err = e,
                _ => {
                    report_at(report_fd, Step::Exec, i as u8, e);
                    libc::_exit(126);
                }
            }
        }
        report_at(report_fd, Step::Exec, 0, err);
        libc::_exit(if err == Errno::ENOENT { 127 } else { 126 })
    }
}

/// Run a command in a root file system directory: new user, mount and PID
/// namespaces made by one clone(2) (which, unlike unshare, works from a
/// multithreaded process: the new namespaces are the child's), the mounts
/// of `spec`, binfmt_misc of the namespace's own with `spec.regs`, then
/// pivot_root. stdin, stdout, stderr and the terminal are the caller's.
/// Returns the command's exit code (128+N when killed by signal N).
/// Nothing stays mounted: the mounts live in the namespace, which ends
/// with the command.
pub fn run_rootfs(spec: &RootfsSpec) -> Result<i32, SandboxError> {
    let plan = RootfsPlan::new(spec)?;
    for line in plan.binfmt.iter().flat_map(|b| &b.2) {
        tracing::debug!("sandbox registers {}", String::from_utf8_lossy(line));
    }
    tracing::debug!("sandbox runs {:?} in {}", spec.argv, spec.rootfs.display());
    let (read, write) = pipe()?;
    let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::SIGCHLD;
    // SAFETY: a fork-like clone (no new stack: the child runs on a copy of
    // this one); the child only makes async-signal-safe calls on buffers
    // prepared above (RootfsPlan::pid1) and leaves with _exit.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_long, 0, 0, 0, 0) };
    if pid == 0 {
        // SAFETY: see above.
        unsafe { plan.pid1(write.as_raw_fd()) }
    }
    drop(write);
    if pid < 0 {
        return Err(SandboxError::Step { step: Step::Clone, errno: Errno::last() });
    }
    let child = nix::unistd::Pid::from_raw(pid as libc::pid_t);
    // The terminal sends Ctrl-C's SIGINT and SIGQUIT to the command itself
    // (same process group); mtbx must outlive it to pass on its code. The
    // child was made with the default dispositions, before this.
    crate::sys::process::ignore_terminal_signals()
        .map_err(|source| SandboxError::Io { what: "ignoring SIGINT".into(), source })?;
    forward_signals(child);
    let status = loop {
        match nix::sys::wait::waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    let status =
        status.map_err(|e| SandboxError::Io { what: "waiting for the sandbox".into(), source: e.into() })?;
    if plan.tty.is_some() {
        // Take the terminal back (SIGTTOU is ignored here, see above).
        // SAFETY: tcsetpgrp on stdin with this process's own group.
        unsafe { libc::tcsetpgrp(0, libc::getpgrp()) };
    }
    if let Some((step, index, errno)) = read_raw_report(read) {
        let index = index as usize;
        return Err(match step {
            Step::RootfsMount => {
                let what = match index {
                    0 => format!("the root file system {}", spec.rootfs.display()),
                    1 => "/proc".into(),
                    i => spec.mounts.get(i - 2).map_or_else(|| "?".into(), |m| m.what.clone()),
                };
                SandboxError::RootfsMount { what, errno }
            }
            Step::Exec => SandboxError::Exec { program: spec.program_name.clone(), errno },
            step => SandboxError::Step { step, errno },
        });
    }
    Ok(match status {
        nix::sys::wait::WaitStatus::Exited(_, code) => code,
        nix::sys::wait::WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => 1,
    })
}

/// Whether stdin is a terminal whose foreground process group is mtbx's.
fn in_foreground() -> bool {
    // SAFETY: tcgetpgrp only reads; getpgrp cannot fail.
    unsafe { libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to mtbx go on to the
/// sandbox's pid 1, which hands them to the command: a thread takes them
/// with sigwait while the main thread waits for the sandbox.
fn forward_signals(child: nix::unistd::Pid) {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        while let Ok(sig) = set.wait() {
            let _ = nix::sys::signal::kill(child, sig);
        }
    });
}
