//! Rootless pulls: files in a rootless user's store must belong to the ids
//! of podman's user namespace for that user (0 = the user, 1.. = the user's
//! /etc/subuid range). mtbx gets the same namespace the way podman does:
//! it starts itself again in a new user namespace and has the setuid
//! helpers newuidmap/newgidmap write the maps, then the copy runs as root
//! of that namespace and writes owners exactly as the layers say.
//!
//! Handshake: the child, first thing in `main` (still single-threaded, as
//! unshare(CLONE_NEWUSER) requires), unshares, writes one byte to the
//! "ready" pipe and waits on the "go" pipe; the parent writes the maps in
//! between. The child keeps the full capability set it got by creating the
//! namespace.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{getgid, getuid, pipe2, User};

use crate::error::{Classify, Kind};

/// Set in the child: "go-fd,ready-fd".
const ENV_FDS: &str = "_MTBX_USERNS_FDS";
/// Set in the child: the real uid of the rootless user it acts for.
const ENV_UID: &str = "_MTBX_ROOTLESS_UID";

/// Failures setting up the namespace; the message says what to install or
/// configure.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// No subordinate ids for the user.
    #[error("user {user} has no range in {file}: rootless podman and mtbx need one (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user})")]
    NoRange {
        /// The user.
        user: String,
        /// /etc/subuid or /etc/subgid.
        file: &'static str,
    },
    /// newuidmap/newgidmap missing.
    #[error("{0} is not installed: install the uidmap package (Debian/Ubuntu) or shadow-utils (Fedora)")]
    NoHelper(&'static str),
    /// A system call or a helper could not be run.
    #[error("cannot set up the user namespace: {what}: {source}")]
    Setup {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// newuidmap or newgidmap refused.
    #[error("cannot set up the user namespace: {} failed: {stderr}", tool.display())]
    MapRefused {
        /// The helper.
        tool: PathBuf,
        /// What it said.
        stderr: String,
    },
}

impl Classify for UsernsError {
    fn kind(&self) -> Kind {
        match self {
            // The machine's configuration: the message says what to fix.
            UsernsError::NoRange { .. } | UsernsError::NoHelper(_) => Kind::BadInput,
            UsernsError::Setup { .. } | UsernsError::MapRefused { .. } => Kind::Failed,
        }
    }
}

/// The rootless user this process acts for, when it is the namespace child.
pub fn rootless_uid() -> Option<u32> {
    std::env::var(ENV_UID).ok().and_then(|v| v.parse().ok())
}

/// Why the namespace child cannot go on: `main` says so (unless the
/// parent already did) and exits 1. Library code never exits itself.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The descriptors or the namespace could not be set up.
    #[error("{0}")]
    Setup(String),
    /// The parent gave up before mapping the namespace, and said why.
    #[error("the parent process gave up before mapping the user namespace")]
    ParentGaveUp,
}

/// Child side: when started by [`reexec`], enter the namespace and wait
/// for the maps. Call first thing in `main`, before any thread exists.
pub fn child_handshake() -> Result<(), HandshakeError> {
    let Ok(fds) = std::env::var(ENV_FDS) else { return Ok(()) };
    let setup = |what: String| HandshakeError::Setup(what);
    // Children of this process must not take the descriptors for theirs.
    super::process::remove_env_var_single_threaded(ENV_FDS).map_err(|e| setup(e.to_string()))?;
    let parse = |s: Option<&str>| s.and_then(|v| v.parse::<i32>().ok());
    let mut it = fds.split(',');
    let (Some(go), Some(ready)) = (parse(it.next()), parse(it.next())) else {
        return Err(setup(format!("bad {ENV_FDS}")));
    };
    let take = |fd| {
        super::process::take_inherited_fd(fd)
            .map(std::fs::File::from)
            .map_err(|e| setup(format!("{ENV_FDS}: {e}")))
    };
    let (mut go, mut ready) = (take(go)?, take(ready)?);
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| setup(format!("cannot create a user namespace: {e}")))?;
    let _ = ready.write_all(b"1");
    drop(ready);
    let mut b = [0u8; 1];
    if go.read(&mut b).ok() != Some(1) || b[0] != b'1' {
        return Err(HandshakeError::ParentGaveUp);
    }
    Ok(())
}

fn ranges(file: &'static str, user: &str, id: u32) -> Result<(u64, u64), UsernsError> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
            (who == user || who == id.to_string()).then_some((start, count))
        })
        .next()
        .ok_or(UsernsError::NoRange { user: user.to_string(), file })
}

fn helper(name: &'static str) -> Result<PathBuf, UsernsError> {
    crate::fsutil::find_on_path(name)
        .or_else(|| Some(PathBuf::from("/usr/bin").join(name)).filter(|p| p.exists()))
        .ok_or(UsernsError::NoHelper(name))
}

/// Run this same command again as root of a user namespace mapped like
/// podman's for the calling user, and return its exit code.
pub fn reexec() -> Result<i32, UsernsError> {
    let (uid, gid) = (getuid().as_raw(), getgid().as_raw());
    let user = User::from_uid(getuid()).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string());
    let (us, uc) = ranges("/etc/subuid", &user, uid)?;
    let (gs, gc) = ranges("/etc/subgid", &user, uid)?;
    let (newuidmap, newgidmap) = (helper("newuidmap")?, helper("newgidmap")?);
    let setup = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| UsernsError::Setup { what, source: e }
    };
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| setup("pipe")(e.into()))?;
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| setup("pipe")(e.into()))?;
    let (gfd, rfd) = (go_r.as_raw_fd(), ready_w.as_raw_fd());
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(std::env::args_os().skip(1)).env(ENV_FDS, format!("{gfd},{rfd}")).env(ENV_UID, uid.to_string());
    super::process::inherit_across_exec(&mut cmd, &[go_r.as_fd(), ready_w.as_fd()]);
    let mut child = cmd.spawn().map_err(setup("cannot start mtbx again"))?;
    drop(go_r);
    drop(ready_w);
    let mut ready = std::fs::File::from(ready_r);
    let mut b = [0u8; 1];
    if ready.read(&mut b).ok() != Some(1) {
        let status = child.wait().map_err(setup("wait"))?;
        return Ok(code_of(status));
    }
    let pid = child.id().to_string();
    let map = |tool: &PathBuf, id: u32, start: u64, count: u64| -> Result<(), UsernsError> {
        let out = Command::new(tool)
            .args([pid.as_str(), "0", &id.to_string(), "1", "1", &start.to_string(), &count.to_string()])
            .output()
            .map_err(setup(&tool.display().to_string()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(UsernsError::MapRefused {
                tool: tool.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    };
    let mut go = std::fs::File::from(go_w);
    if let Err(e) = map(&newuidmap, uid, us, uc).and_then(|()| map(&newgidmap, gid, gs, gc)) {
        drop(go);
        let _ = child.wait();
        return Err(e);
    }
    go.write_all(b"1").map_err(setup("pipe"))?;
    drop(go);
    // The child handles Ctrl-C itself (it is in the same process group);
    // wait for it to finish, whatever signals arrive here.
    let _ = super::process::ignore_sigint();
    let status = child.wait().map_err(setup("wait"))?;
    Ok(code_of(status))
}

fn code_of(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
