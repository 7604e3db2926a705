//! The host half: [`ensure`], which the front end calls once a container
//! is running, and [`serve`], the agent itself (`mtbx host-agent`).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{
    recv_frame, send_frame, signal_of, write_frame, Reply, Request, AGENT_DIR, LOCK, MAX_REQUEST, SOCKET,
};

/// At most this many commands run through one agent at once.
const MAX_SESSIONS: usize = 256;

/// Signals a client may pass on to its command.
const FORWARDED: &[nix::sys::signal::Signal] = {
    use nix::sys::signal::Signal::*;
    &[SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM]
};

/// The agent directory of a stamp directory, made 0700 and checked to be
/// this user's: the socket's permission is the directory's.
fn agent_dir(stamp_dir: &Path) -> std::io::Result<(PathBuf, OwnedFd)> {
    use rustix::fs::{Mode, OFlags};
    let dir = stamp_dir.join(AGENT_DIR);
    crate::fsutil::mkdir_exact(&dir, 0o700)?;
    let fd = rustix::fs::open(
        &dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if st.st_uid != crate::sys::getuid() || st.st_mode & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "{} must be yours and private (0700); remove it",
            dir.display()
        )));
    }
    Ok((dir, fd))
}

/// A path to `name` in the directory `dir` that fits a socket address
/// whatever the directory's length (a container name alone may have 255
/// bytes; an address has 108).
fn in_dir(dir: BorrowedFd<'_>, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// Make sure an agent serves the running container whose stamp
/// directory is `stamp_dir`: when none answers on the socket, bind it
/// here and start `mtbx host-agent` with the listening socket as its
/// stdin. Binding before the agent starts means a client that connects
/// at once is queued, never refused. Front ends serialize on a lock.
pub fn ensure(stamp_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let (_, dirfd) = agent_dir(stamp_dir)?;
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(in_dir(dirfd.as_fd(), LOCK))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    let socket = in_dir(dirfd.as_fd(), SOCKET);
    if UnixStream::connect(&socket).is_ok() {
        return Ok(());
    }
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&socket)?;
    let exe = std::env::current_exe()?;
    Command::new(exe)
        .arg("host-agent")
        .arg("--dir")
        .arg(stamp_dir)
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(())
}

/// Why the agent could not serve.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// stdin is not the listening socket `ensure` binds.
    #[error("host-agent is started by mtbx run/enter with its socket as stdin; it is not a command to type")]
    NoSocket,
    /// A system call failed.
    #[error("host agent: {0}")]
    Io(#[from] std::io::Error),
}

impl crate::error::Classify for AgentError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            AgentError::NoSocket => crate::error::Kind::BadInput,
            AgentError::Io(_) => crate::error::Kind::Failed,
        }
    }
}

/// The agent: accept clients on the socket it got as stdin until the
/// container's init-container (named by the stamp in `stamp_dir`) ends,
/// then wait for the commands still running.
pub fn serve(stamp_dir: &Path) -> Result<(), AgentError> {
    use rustix::event::{poll, PollFd, PollFlags};
    let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
    if !rustix::net::sockopt::socket_acceptconn(&stdin).unwrap_or(false) {
        return Err(AgentError::NoSocket);
    }
    // Out of the front end's session and directory: its terminal closing
    // must not end the agent, nor the agent keep a directory busy.
    let _ = nix::unistd::setsid();
    let _ = std::env::set_current_dir("/");
    let listener = UnixListener::from(stdin);
    let Some(init) = init_pidfd(stamp_dir) else { return Ok(()) };
    let uid = crate::sys::getuid();
    let mut sessions: Vec<std::thread::JoinHandle<()>> = Vec::new();
    loop {
        let mut fds = [PollFd::new(&listener, PollFlags::IN), PollFd::new(&init, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
        if !fds[1].revents().is_empty() {
            break;
        }
        if fds[0].revents().is_empty() {
            continue;
        }
        let Ok((conn, _)) = listener.accept() else { continue };
        sessions.retain(|s| !s.is_finished());
        if sessions.len() >= MAX_SESSIONS {
            let _ = write_frame(
                &mut &conn,
                &Reply::Error(
                    1,
                    format!("{MAX_SESSIONS} host commands already run through this container's agent"),
                )
                .encode(),
            );
            continue;
        }
        sessions.push(std::thread::spawn(move || serve_one(conn, uid)));
    }
    // The container stopped: no new clients (a client now is refused, and
    // the next run or enter starts a new agent), and the commands still
    // running are waited for, so that each client hears how it ended.
    drop(listener);
    for s in sessions {
        let _ = s.join();
    }
    Ok(())
}

/// A pidfd of the init-container process the stamp names, when it is
/// still that process.
fn init_pidfd(stamp_dir: &Path) -> Option<OwnedFd> {
    let stamp = crate::toolbox::stamp_file(stamp_dir);
    if !crate::toolbox::is_ready(&stamp) {
        return None;
    }
    let text = std::fs::read_to_string(&stamp).ok()?;
    let mut it = text.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    let fd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid)?,
        rustix::process::PidfdFlags::empty(),
    )
    .ok()?;
    // Checked after the pidfd is open: it names this very process.
    (crate::toolbox::start_time(pid as u32) == Some(start)).then_some(fd)
}

/// One client: check who it is, run its command, report how it ended.
fn serve_one(conn: UnixStream, uid: u32) {
    match rustix::net::sockopt::socket_peercred(&conn) {
        Ok(c) if c.uid.as_raw() == uid => {}
        _ => return,
    }
    // A connection that closes at once is a front end checking that the
    // agent answers.
    let Ok(Some((payload, fds))) = recv_frame(&conn, MAX_REQUEST, 3) else { return };
    let refuse = |code: u8, msg: String| {
        let _ = write_frame(&mut &conn, &Reply::Error(code, msg).encode());
    };
    let req = match Request::decode(&payload) {
        Ok(r) => r,
        Err(e) => return refuse(1, e.to_string()),
    };
    let Ok::<[OwnedFd; 3], _>(stdio) = fds.try_into() else {
        return refuse(1, "bad host-exec request: stdin, stdout and stderr must come with it".into());
    };
    if let Err((code, msg)) = run(&conn, req, stdio) {
        refuse(code, msg);
    }
}

/// The shell of the host user, for a request without a command.
fn user_shell() -> PathBuf {
    std::env::var_os("SHELL")
        .map(PathBuf::from)
        .filter(|s| s.is_absolute())
        .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.shell))
        .unwrap_or_else(|| "/bin/sh".into())
}

/// A new pseudo-terminal of the host (master, slave), set up as the
/// caller's terminal `like` is: its modes and its size.
fn open_pty(like: BorrowedFd<'_>) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::fs::{Mode, OFlags};
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave =
        rustix::fs::open(name.as_c_str(), OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())?;
    if let Ok(t) = nix::sys::termios::tcgetattr(like) {
        let _ = nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &t);
    }
    if let Ok(w) = rustix::termios::tcgetwinsize(like) {
        let _ = rustix::termios::tcsetwinsize(&slave, w);
    }
    Ok((master, slave))
}

/// Run the request; Err is the exit code and message for the client.
fn run(conn: &UnixStream, req: Request, stdio: [OwnedFd; 3]) -> Result<(), (u8, String)> {
    let [stdin, stdout, stderr] = stdio;
    let (program, args) = match req.argv.split_first() {
        Some((p, rest)) => (PathBuf::from(p), rest.to_vec()),
        None => (user_shell(), Vec::new()),
    };
    let shown = crate::text::quoted(&program.to_string_lossy());
    if !req.cwd.is_dir() {
        let dir = crate::text::quoted(&req.cwd.to_string_lossy());
        return Err((1, format!("the host has no directory {dir}: cd elsewhere, or pass --directory")));
    }
    let mut cmd = Command::new(&program);
    cmd.args(args).envs(req.env.iter().map(|(k, v)| (k, v))).current_dir(&req.cwd);
    let failed = |e: std::io::Error| (1u8, format!("cannot set up {shown} on the host: {e}"));
    let master = if req.tty {
        let (master, slave) = open_pty(stdin.as_fd()).map_err(failed)?;
        let err = if rustix::termios::isatty(&stderr) { slave.try_clone().map_err(failed)? } else { stderr };
        cmd.stdin(slave.try_clone().map_err(failed)?).stdout(slave).stderr(err);
        Some(master)
    } else {
        cmd.stdin(stdin).stdout(stdout).stderr(stderr);
        None
    };
    crate::sys::process::new_session(&mut cmd, req.tty);
    let spawned = cmd.spawn();
    // The command's descriptors (the slave above all) are the child's
    // alone now: the client sees the end of output when the child's end.
    drop(cmd);
    let mut child = spawned.map_err(|e| {
        // As shells say: 127 for a command PATH does not have (exec's
        // EACCES from a directory of PATH this user cannot search
        // included), 126 for one that cannot be run.
        let searched = program.components().count() == 1;
        let path = req
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var_os("PATH"));
        let on_path = || path.iter().flat_map(std::env::split_paths).any(|d| d.join(&program).is_file());
        match e.kind() {
            std::io::ErrorKind::NotFound => (127, format!("{shown}: command not found on the host")),
            std::io::ErrorKind::PermissionDenied if searched && !on_path() => {
                (127, format!("{shown}: command not found on the host"))
            }
            _ => (126, format!("cannot run {shown} on the host: {e}")),
        }
    })?;
    let fds: Vec<BorrowedFd<'_>> = master.iter().map(|m| m.as_fd()).collect();
    let started = send_frame(conn, &Reply::Started.encode(), &fds);
    drop(master);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Signals go to the command's process group only while its leader
    // is not yet reaped: until then its pid cannot name another process.
    let reaped = Arc::new(Mutex::new(false));
    let signal = {
        let reaped = reaped.clone();
        move |sig: nix::sys::signal::Signal| {
            let done = reaped.lock().unwrap_or_else(|e| e.into_inner());
            if !*done {
                let _ = nix::sys::signal::killpg(pid, sig);
            }
        }
    };
    if started.is_err() {
        signal(nix::sys::signal::Signal::SIGHUP);
    }
    let reader = conn.try_clone().ok().map(|conn| {
        let signal = signal.clone();
        std::thread::spawn(move || loop {
            match recv_frame(&conn, 16, 0) {
                Ok(Some((f, _))) => {
                    let sig = signal_of(&f).and_then(|s| nix::sys::signal::Signal::try_from(s).ok());
                    if let Some(sig) = sig.filter(|s| FORWARDED.contains(s)) {
                        signal(sig);
                    }
                }
                // The client is gone (or said something else): hang up,
                // as a terminal that closes does.
                _ => {
                    signal(nix::sys::signal::Signal::SIGHUP);
                    return;
                }
            }
        })
    });
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    while let Err(nix::errno::Errno::EINTR) =
        waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
    {}
    *reaped.lock().unwrap_or_else(|e| e.into_inner()) = true;
    let code = child.wait().map(super::shell_code).unwrap_or(1);
    let _ = write_frame(&mut &*conn, &Reply::Exit(code).encode());
    let _ = (&*conn).flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
    if let Some(r) = reader {
        let _ = r.join();
    }
    Ok(())
}
