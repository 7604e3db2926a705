//! A command in a root file system directory (`run --rootfs`): user,
//! mount and PID namespaces made by one clone(2), the spec's mounts, a
//! binfmt_misc instance of the namespace's own, pivot_root, and the
//! command with the caller's stdin, stdout, stderr and terminal. The
//! sandbox's pid 1 and the command's process are forked children of a
//! multithreaded process, so all they do is async-signal-safe: system
//! calls on the buffers of a [`RootfsPlan`] made before the clone.

use std::ffi::CString;
use std::io::Stdin;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::steps::{self, pipe, read_raw_report, report, report_at, write_file};
use super::{fork, SandboxError, Step};
use crate::emu::binfmt::Registration;
use crate::sys::child::{exit_child, CStrArray};

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
pub(super) struct RootfsPlan {
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
    argv: CStrArray,
    env: CStrArray,
    /// The terminal (stdin) the command takes as its own.
    tty: Option<Stdin>,
}

/// mount(2)'s arguments, and the directories made in the mount after.
struct MountArgs {
    source: Option<CString>,
    target: CString,
    fstype: Option<CString>,
    flags: MsFlags,
    data: Option<CString>,
    mkdirs: Vec<CString>,
    contents: Option<Vec<u8>>,
}

impl MountArgs {
    /// Mount it (writing its contents first), then make its directories.
    /// Async-signal-safe.
    fn mount(&self) -> Result<(), Errno> {
        if let (Some(bytes), Some(source)) = (&self.contents, &self.source) {
            let flags =
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = nix::fcntl::open(source.as_c_str(), flags, Mode::from_bits_truncate(0o644))?;
            let mut left: &[u8] = bytes;
            while !left.is_empty() {
                match nix::unistd::write(&fd, left) {
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e),
                    Ok(0) => return Err(Errno::last()),
                    Ok(n) => left = &left[n..],
                }
            }
        }
        let mounted = steps::mount(
            self.source.as_deref(),
            &self.target,
            self.fstype.as_deref(),
            self.flags,
            self.data.as_deref(),
        );
        if let (Some(_), Some(source)) = (&self.contents, &self.source) {
            // Bound: the mount holds the file; its name goes.
            let _ = nix::unistd::unlink(source.as_c_str());
        }
        mounted?;
        for dir in &self.mkdirs {
            match nix::unistd::mkdir(dir.as_c_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

const PROC: &std::ffi::CStr = c"proc";
const DOT: &std::ffi::CStr = c".";

/// Signals passed on to the command: the ones a terminal does not send to
/// the whole foreground process group itself (Ctrl-C's SIGINT and SIGQUIT
/// reach the command straight from the terminal).
const FORWARDED: [Signal; 4] = [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2];

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
                Some(_) => MsFlags::MS_BIND | MsFlags::MS_REC,
                None => MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
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
            argv: CStrArray::new(argv),
            env: CStrArray::new(env),
            tty: (spec.take_terminal && in_foreground()).then(std::io::stdin),
        })
    }

    /// pid 1 of the new namespaces: set up the mounts, pivot into the root
    /// file system, start the command and wait for it. Async-signal-safe
    /// (system calls on prepared buffers), since the parent may have
    /// other threads. Never returns.
    pub(super) fn pid1(&self, report_fd: OwnedFd) -> ! {
        let fail = |step: Step, index: usize, errno: Errno| -> ! {
            report_at(report_fd.as_fd(), step, index as u8, errno);
            exit_child(1)
        };
        if let Err((step, e)) = steps::map_ids(&self.uid_map, &self.gid_map) {
            fail(step, 0, e);
        }
        if let Err(e) = steps::make_mounts_private() {
            fail(Step::Private, 0, e);
        }
        // The root file system onto itself: pivot_root needs a mount point.
        // Index 0 is this mount, 1 /proc, 2.. the plan's mounts.
        let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
        if let Err(e) = steps::mount(Some(&self.rootfs), &self.rootfs, None, bind, None) {
            fail(Step::RootfsMount, 0, e);
        }
        let (layers, mounts) = self.mounts.split_at(self.before_proc);
        for (i, m) in layers.iter().enumerate() {
            if let Err(e) = m.mount() {
                fail(Step::RootfsMount, i + 2, e);
            }
        }
        // A fresh /proc: this process is in the new PID namespace, so it
        // shows the sandbox's processes only.
        let pflags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if let Err(e) = steps::mount(Some(PROC), &self.proc_dir, Some(PROC), pflags, None) {
            fail(Step::RootfsMount, 1, e);
        }
        if let Some((mountpoint, register, lines)) = &self.binfmt {
            if let Err(e) = steps::mount_binfmt_misc(mountpoint) {
                fail(Step::Mount, 0, e);
            }
            // Flag F opens the interpreter now, while the host's files are
            // still in view.
            for line in lines {
                if let Err(e) = write_file(register, line) {
                    fail(Step::Register, 0, e);
                }
            }
        }
        for (i, m) in mounts.iter().enumerate() {
            if let Err(e) = m.mount() {
                fail(Step::RootfsMount, i + 2 + layers.len(), e);
            }
        }
        // pivot_root(".", "."), then detach the old root stacked on top:
        // the host's tree is out of reach, and nothing is mounted on it.
        if let Err(e) = nix::unistd::chdir(self.rootfs.as_c_str())
            .and_then(|()| nix::unistd::pivot_root(DOT, DOT))
            .and_then(|()| nix::mount::umount2(DOT, MntFlags::MNT_DETACH))
        {
            fail(Step::PivotRoot, 0, e);
        }
        for dir in &self.workdirs {
            if nix::unistd::chdir(dir.as_c_str()).is_ok() {
                break;
            }
        }
        // The command must not be pid 1: the kernel drops signals without a
        // handler for pid 1, so Ctrl-C would not stop it. This process
        // waits, passes on SIGTERM and friends, and dies with mtbx.
        let _ = crate::sys::child::forward_signals(&FORWARDED);
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        let pid = match fork::fork_command(self, report_fd.as_fd()) {
            Ok(pid) => pid,
            Err(e) => fail(Step::Clone, 0, e),
        };
        crate::sys::child::forward_signals_to(pid);
        drop(report_fd);
        let status = loop {
            match nix::sys::wait::waitpid(None, None) {
                Ok(status) if status.pid() == Some(pid) => break status,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => exit_child(1),
            }
        };
        // As a shell reports it: killed by signal N is 128+N.
        exit_child(match status {
            WaitStatus::Exited(_, code) => code,
            WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
            _ => 1,
        })
    }

    /// The command's process: default signal handling (mtbx ignores
    /// SIGPIPE; dispositions set to ignore survive exec), then execve each
    /// candidate path in turn as execvp does. Async-signal-safe.
    pub(super) fn exec(&self, report_fd: BorrowedFd<'_>) -> ! {
        if let Some(tty) = &self.tty {
            // A process group of its own, in the foreground: a job-control
            // shell reads the terminal's process group at start and gives
            // the terminal back to it at exit. mtbx's own group is not in
            // the PID namespace, so dash would fail there ("Cannot set tty
            // process group") and lose the exit code. SIGTTOU is blocked
            // for the call: this group is not in the foreground yet.
            let mut ttou = SigSet::empty();
            ttou.add(Signal::SIGTTOU);
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None);
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            let _ = nix::unistd::tcsetpgrp(tty.as_fd(), nix::unistd::getpid());
        }
        crate::sys::child::default_signal_dispositions();
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        if let Some((uid_map, gid_map)) = &self.inner_maps {
            // One thread, and the root is the mount namespace's (after
            // pivot_root, not a chroot): unshare may make a user namespace.
            if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
                report(report_fd, Step::Unshare, e);
                exit_child(1);
            }
            if let Err((step, e)) = steps::map_ids(uid_map, gid_map) {
                report(report_fd, step, e);
                exit_child(1);
            }
        }
        let mut err = Errno::ENOENT;
        for (i, prog) in self.programs.iter().enumerate() {
            let e = crate::sys::child::execve(prog, &self.argv, &self.env);
            match e {
                Errno::ENOENT | Errno::ENOTDIR => {}
                // execvp goes on after EACCES, and reports it if nothing runs.
                Errno::EACCES => err = e,
                _ => {
                    report_at(report_fd, Step::Exec, i as u8, e);
                    exit_child(126);
                }
            }
        }
        report_at(report_fd, Step::Exec, 0, err);
        exit_child(if err == Errno::ENOENT { 127 } else { 126 })
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
    let child =
        fork::clone_sandbox(&plan, write).map_err(|errno| SandboxError::Step { step: Step::Clone, errno })?;
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
    if let Some(tty) = &plan.tty {
        // Take the terminal back (SIGTTOU is ignored here, see above).
        let _ = nix::unistd::tcsetpgrp(tty.as_fd(), nix::unistd::getpgrp());
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
    nix::unistd::tcgetpgrp(std::io::stdin()) == Ok(nix::unistd::getpgrp())
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
