//! `mtbx host-exec`: a command run on the host from inside a toolbox
//! container, with the caller's terminal, stdin, stdout, stderr, exit
//! code and working directory (docs/host-exec.md).
//!
//! Toolbx and distrobox reach the host through flatpak's D-Bus portal,
//! which plain hosts lack, and nsenter cannot leave a rootless user
//! namespace. mtbx needs neither: the front end that starts or enters a
//! container (`ops::Toolbox::open_session`, `start`) makes sure a small
//! host agent (`mtbx host-agent`, [`agent`]) listens on a unix socket in
//! the container's stamp directory, which the container has at
//! `/run/mtbx-stamp`. The agent lives as long as the container's
//! init-container process (the PID namespace is the host's, so it waits
//! on a pidfd of it) and as long as commands it started run.
//!
//! Inside, [`client`] connects, sends the command, a few variables and
//! the working directory as a host path, and passes its stdin, stdout
//! and stderr as descriptors (SCM_RIGHTS): the host command writes into
//! the very pipe or file the caller has. When stdin and stdout are a
//! terminal, the agent gives the command a new pseudo-terminal of the
//! host as its controlling terminal (a terminal can be the controlling
//! terminal of one session only, and the caller's belongs to the
//! container's), and the client relays between it and its own terminal
//! in raw mode: Ctrl-C, Ctrl-Z and job control happen on the host.
//!
//! Trust: the socket is in a 0700 directory of the user's, and the agent
//! serves only peers whose uid (SO_PEERCRED, as the host sees it) is its
//! own. Every message is bounded ([`MAX_REQUEST`], [`MAX_ARGS`],
//! [`MAX_ENV`]).
//!
//! The protocol, over one stream connection: the client sends a request
//! frame with its three descriptors attached, then signal frames; the
//! agent answers with a started frame (with the pseudo-terminal's master
//! attached in terminal mode) or an error frame, and, when the command
//! ends, an exit frame. A frame is a little-endian u32 length and that
//! many bytes.

pub mod agent;
pub mod client;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The agent's directory in a stamp directory (0700, the user's).
pub const AGENT_DIR: &str = "host";
/// The agent's socket in [`AGENT_DIR`].
pub const SOCKET: &str = "exec.sock";
/// The lock front ends take while they check and start the agent.
pub const LOCK: &str = "agent.lock";
/// The largest request: a command line as large as exec(2) usually takes.
pub const MAX_REQUEST: usize = 1 << 20;
/// The most arguments of a command.
pub const MAX_ARGS: usize = 8192;
/// The most variables a request sets.
pub const MAX_ENV: usize = 256;
/// The largest frame the agent sends (an error's text).
pub const MAX_REPLY: usize = 4096;
/// Where the host's root is inside (create mounts it there).
pub const HOST_ROOT: &str = "/run/host";
/// Protocol version, the first byte of a request.
const VERSION: u8 = 1;
/// Request flag: give the command a terminal.
const FLAG_TTY: u8 = 1;

/// Variables a command on the host gets from inside, when set: the
/// terminal, the locale and the display, as the caller sees them.
pub const PASSED_ENV: &[&str] = &[
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_ADDRESS",
    "LC_COLLATE",
    "LC_CTYPE",
    "LC_IDENTIFICATION",
    "LC_MEASUREMENT",
    "LC_MESSAGES",
    "LC_MONETARY",
    "LC_NAME",
    "LC_NUMERIC",
    "LC_PAPER",
    "LC_TELEPHONE",
    "LC_TIME",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
];

/// Why a command could not be run on the host.
#[derive(Debug, thiserror::Error)]
pub enum HostExecError {
    /// Not in an mtbx container.
    #[error(
        "host-exec runs commands on the host from inside an mtbx container; this is not one (no {})",
        crate::toolbox::STAMP_DIR
    )]
    NotInside,
    /// No agent answers.
    #[error("no host agent answers for this container ({path}: {source}): it starts with `mtbx run` or `mtbx enter` on the host; run one, then try again")]
    NoAgent {
        /// The socket.
        path: String,
        /// Why connecting failed.
        #[source]
        source: std::io::Error,
    },
    /// The directory has no host path.
    #[error("the directory {} is the container's own, not the host's: cd into your home or /run/host/..., or pass --directory", crate::text::quoted(&.0.to_string_lossy()))]
    NoHostDir(PathBuf),
    /// Bad command line.
    #[error("{0}")]
    Usage(String),
    /// A request over the bounds.
    #[error("{0}")]
    TooLarge(String),
    /// The agent refused or failed; `code` is the exit code it chose.
    #[error("{message}")]
    Agent {
        /// What went wrong, in the agent's words.
        message: String,
        /// 126, 127 or 1.
        code: u8,
    },
    /// Talking to the agent failed.
    #[error("lost the host agent: {0}")]
    Lost(#[source] std::io::Error),
}

impl crate::error::Classify for HostExecError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            HostExecError::NotInside
            | HostExecError::NoHostDir(_)
            | HostExecError::Usage(_)
            | HostExecError::TooLarge(_) => Kind::BadInput,
            HostExecError::Agent { code: 127, .. } => Kind::CommandNotFound,
            HostExecError::Agent { code: 126, .. } => Kind::CannotExec,
            _ => Kind::Failed,
        }
    }
}

/// What the client asks the agent to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The command; empty for the host user's shell.
    pub argv: Vec<OsString>,
    /// `NAME=VALUE` pairs set over the agent's environment.
    pub env: Vec<(OsString, OsString)>,
    /// The working directory, a host path.
    pub cwd: PathBuf,
    /// Whether the command gets a terminal of its own.
    pub tty: bool,
}

/// A request that breaks the protocol or its bounds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad host-exec request: {0}")]
pub struct BadRequest(pub &'static str);

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// No NUL (exec(2) could not pass it) and within the request's bound.
fn string_ok(s: &[u8]) -> bool {
    !s.contains(&0)
}

impl Request {
    /// The request's bytes, or what breaks the bounds.
    pub fn encode(&self) -> Result<Vec<u8>, HostExecError> {
        let too = |what: String| HostExecError::TooLarge(what);
        if self.argv.len() > MAX_ARGS {
            return Err(too(format!(
                "at most {MAX_ARGS} arguments reach the host; this command has {}",
                self.argv.len()
            )));
        }
        if self.env.len() > MAX_ENV {
            return Err(too(format!(
                "at most {MAX_ENV} variables reach the host; {} were given",
                self.env.len()
            )));
        }
        let mut out = vec![VERSION, if self.tty { FLAG_TTY } else { 0 }];
        out.extend_from_slice(&(self.argv.len() as u32).to_le_bytes());
        for a in &self.argv {
            if !string_ok(a.as_bytes()) {
                return Err(HostExecError::Usage("an argument holds a NUL byte".into()));
            }
            put(&mut out, a.as_bytes());
        }
        out.extend_from_slice(&(self.env.len() as u32).to_le_bytes());
        for (k, v) in &self.env {
            if !valid_name(k.as_bytes()) || !string_ok(v.as_bytes()) {
                return Err(HostExecError::Usage(format!(
                    "{} is not a variable the host can take (NAME=VALUE, NAME of letters, digits and _)",
                    crate::text::quoted(&k.to_string_lossy())
                )));
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            put(&mut out, &kv);
        }
        put(&mut out, self.cwd.as_os_str().as_bytes());
        if out.len() > MAX_REQUEST {
            return Err(too(format!(
                "the command line is {} bytes; at most {MAX_REQUEST} reach the host",
                out.len()
            )));
        }
        Ok(out)
    }

    /// A request from its bytes, checked against every bound.
    pub fn decode(bytes: &[u8]) -> Result<Request, BadRequest> {
        if bytes.len() > MAX_REQUEST {
            return Err(BadRequest("too large"));
        }
        let mut r = Cursor { b: bytes };
        if r.byte()? != VERSION {
            return Err(BadRequest("unknown version"));
        }
        let flags = r.byte()?;
        if flags & !FLAG_TTY != 0 {
            return Err(BadRequest("unknown flags"));
        }
        let argc = r.count(MAX_ARGS)?;
        let mut argv = Vec::with_capacity(argc);
        for _ in 0..argc {
            let a = r.string()?;
            argv.push(OsString::from_vec(a.to_vec()));
        }
        let envc = r.count(MAX_ENV)?;
        let mut env = Vec::with_capacity(envc);
        for _ in 0..envc {
            let kv = r.string()?;
            let eq = kv.iter().position(|&b| b == b'=').ok_or(BadRequest("a variable without ="))?;
            if !valid_name(&kv[..eq]) {
                return Err(BadRequest("a bad variable name"));
            }
            env.push((OsString::from_vec(kv[..eq].to_vec()), OsString::from_vec(kv[eq + 1..].to_vec())));
        }
        let cwd = PathBuf::from(OsString::from_vec(r.string()?.to_vec()));
        if !cwd.is_absolute() {
            return Err(BadRequest("the directory is not absolute"));
        }
        if !r.b.is_empty() {
            return Err(BadRequest("bytes after the end"));
        }
        Ok(Request { argv, env, cwd, tty: flags & FLAG_TTY != 0 })
    }
}

/// A variable name a shell would take.
fn valid_name(k: &[u8]) -> bool {
    !k.is_empty() && !k[0].is_ascii_digit() && k.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BadRequest> {
        if self.b.len() < n {
            return Err(BadRequest("truncated"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8, BadRequest> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<usize, BadRequest> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }
    fn count(&mut self, max: usize) -> Result<usize, BadRequest> {
        let n = self.u32()?;
        // Each item takes at least its 4-byte length: a count the rest
        // cannot hold is refused before anything is reserved for it.
        if n > max || n > self.b.len() / 4 {
            return Err(BadRequest("too many items"));
        }
        Ok(n)
    }
    fn string(&mut self) -> Result<&'a [u8], BadRequest> {
        let n = self.u32()?;
        let s = self.take(n)?;
        if !string_ok(s) {
            return Err(BadRequest("a NUL byte in a string"));
        }
        Ok(s)
    }
}

/// The agent's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The command runs (in terminal mode, the master is attached).
    Started,
    /// It could not be run: the exit code to give (126, 127, 1) and why.
    Error(u8, String),
    /// It ended: its code, or 128 + the signal that killed it.
    Exit(i32),
}

impl Reply {
    /// The frame's payload.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Started => vec![b'P'],
            Reply::Error(code, msg) => {
                let mut v = vec![b'E', *code];
                let mut end = msg.len().min(MAX_REPLY - 2);
                while !msg.is_char_boundary(end) {
                    end -= 1;
                }
                v.extend_from_slice(&msg.as_bytes()[..end]);
                v
            }
            Reply::Exit(code) => {
                let mut v = vec![b'X'];
                v.extend_from_slice(&code.to_le_bytes());
                v
            }
        }
    }

    /// A reply from its payload.
    pub fn decode(b: &[u8]) -> Result<Reply, BadRequest> {
        match b {
            [b'P'] => Ok(Reply::Started),
            [b'E', code, msg @ ..] => Ok(Reply::Error(*code, String::from_utf8_lossy(msg).into_owned())),
            [b'X', c @ ..] if c.len() == 4 => Ok(Reply::Exit(i32::from_le_bytes(c.try_into().expect("4")))),
            _ => Err(BadRequest("an unknown reply")),
        }
    }
}

/// A signal the client passes on: the frame's payload.
pub fn signal_frame(sig: i32) -> Vec<u8> {
    vec![b'S', sig as u8]
}

/// The signal of a signal frame.
pub fn signal_of(b: &[u8]) -> Option<i32> {
    match b {
        [b'S', s] => Some(*s as i32),
        _ => None,
    }
}

/// Write one frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    let mut buf = (payload.len() as u32).to_le_bytes().to_vec();
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

/// Read one frame of at most `max` bytes; None at a clean end of stream.
pub fn read_frame(r: &mut impl Read, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a frame of {n} bytes")));
    }
    let mut buf = vec![0; n];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

/// Send one frame with `fds` attached to its first byte (SCM_RIGHTS).
pub fn send_frame(
    conn: &std::os::unix::net::UnixStream,
    payload: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> std::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut buf = (payload.len() as u32).to_le_bytes().to_vec();
    buf.extend_from_slice(payload);
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other("too many descriptors for one message"));
    }
    let sent = rustix::net::sendmsg(conn, &[std::io::IoSlice::new(&buf)], &mut control, SendFlags::NOSIGNAL)?;
    (&*conn).write_all(&buf[sent..])
}

/// Read one frame of at most `max` bytes with the descriptors that came
/// with it (at most `max_fds`; more are an error, and closed); None at a
/// clean end of stream. Descriptors arrive close-on-exec, so no child
/// another thread starts meanwhile inherits them.
pub fn recv_frame(
    conn: &std::os::unix::net::UnixStream,
    max: usize,
    max_fds: usize,
) -> std::io::Result<Option<(Vec<u8>, Vec<std::os::fd::OwnedFd>)>> {
    let mut fds = Vec::new();
    let mut len = [0u8; 4];
    if !recv_exact(conn, &mut len, &mut fds)? {
        return Ok(None);
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a frame of {n} bytes")));
    }
    let mut buf = vec![0; n];
    if !recv_exact(conn, &mut buf, &mut fds)? && n > 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if fds.len() > max_fds {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} descriptors", fds.len()),
        ));
    }
    Ok(Some((buf, fds)))
}

/// Fill `buf` from `conn`, collecting descriptors; false at an end of
/// stream before the first byte.
fn recv_exact(
    conn: &std::os::unix::net::UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<std::os::fd::OwnedFd>,
) -> std::io::Result<bool> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut got = 0;
    while got < buf.len() {
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let r = match rustix::net::recvmsg(
            conn,
            &mut [std::io::IoSliceMut::new(&mut buf[got..])],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(r) => r,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = m {
                fds.extend(received);
            }
        }
        if r.bytes == 0 {
            return if got == 0 { Ok(false) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) };
        }
        got += r.bytes;
    }
    Ok(true)
}

/// The host path of directory `dir` seen inside: under `/run/host` the
/// rest of it; a directory the host has at the same path (the home, the
/// runtime directory, /media, /mnt: `same_on_host` says) itself; None for
/// the container's own directories, whose namesakes on the host, if any,
/// are other directories.
pub fn host_dir(dir: &Path, same_on_host: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let host = Path::new(HOST_ROOT);
    if let Ok(rest) = dir.strip_prefix(host) {
        if rest.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return None;
        }
        return Some(Path::new("/").join(rest));
    }
    same_on_host(dir).then(|| dir.to_path_buf())
}

/// Whether the directory at `dir` inside is the one at the same path on
/// the host: the same file (device and inode) as `/run/host/DIR`.
pub fn same_file_on_host(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(rel) = dir.strip_prefix("/") else { return false };
    match (std::fs::metadata(dir), std::fs::metadata(Path::new(HOST_ROOT).join(rel))) {
        (Ok(a), Ok(b)) => a.is_dir() && a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The names mtbx answers to inside as well as `host-exec`: distrobox's
/// and Toolbx's (flatpak) ways to the host.
pub const SPAWN_TOOLS: &[&str] = &["host-spawn", "flatpak-spawn"];

/// Where init-container links them.
const SPAWN_LINK_DIR: &str = "usr/local/bin";

/// Make [`SPAWN_TOOLS`] reach mtbx in the container whose root is
/// `root`: a link in /usr/local/bin to `mtbx` (its path inside) for each
/// one the image lacks; a real one, installed since, gets its link
/// removed. Another file at the link's place is never touched.
pub fn link_spawn_tools(root: &Path, mtbx: &Path) -> std::io::Result<()> {
    const REAL: &[&str] = &["usr/bin", "bin", "usr/sbin", "sbin", "usr/local/sbin"];
    for tool in SPAWN_TOOLS {
        let link = root.join(SPAWN_LINK_DIR).join(tool);
        let ours = std::fs::read_link(&link).is_ok_and(|t| t == mtbx);
        let real = REAL.iter().any(|d| std::fs::symlink_metadata(root.join(d).join(tool)).is_ok());
        match (real, ours) {
            (true, true) => std::fs::remove_file(&link)?,
            (false, false) if std::fs::symlink_metadata(&link).is_err() => {
                crate::fsutil::mkdir_all(&root.join(SPAWN_LINK_DIR), 0o755)?;
                std::os::unix::fs::symlink(mtbx, &link)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The exit code a shell gives for a status: the code, or 128 + signal.
pub fn shell_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request {
            argv: vec!["sh".into(), "-c".into(), "echo $1".into(), "x y".into()],
            env: vec![("TERM".into(), "xterm=256".into()), ("LANG".into(), "".into())],
            cwd: "/home/ann/src".into(),
            tty: true,
        }
    }

    #[test]
    fn a_request_survives_the_trip() {
        let r = req();
        assert_eq!(Request::decode(&r.encode().unwrap()).unwrap(), r);
        let shell = Request { argv: vec![], env: vec![], cwd: "/".into(), tty: false };
        assert_eq!(Request::decode(&shell.encode().unwrap()).unwrap(), shell);
    }

    #[test]
    fn requests_out_of_bounds_are_refused_both_ways() {
        let many = Request { argv: vec!["a".into(); MAX_ARGS + 1], ..req() };
        assert!(matches!(many.encode(), Err(HostExecError::TooLarge(_))));
        let big = Request { argv: vec![OsString::from("x".repeat(MAX_REQUEST))], ..req() };
        assert!(matches!(big.encode(), Err(HostExecError::TooLarge(_))));
        let nul = Request { argv: vec![OsString::from("a\0b")], ..req() };
        assert!(matches!(nul.encode(), Err(HostExecError::Usage(_))));
        let bad_env = Request { env: vec![("A B".into(), "1".into())], ..req() };
        assert!(bad_env.encode().is_err());
        // The agent's side: every cut of a good request is refused, and so
        // are trailing bytes, counts the bytes cannot hold, and a
        // relative directory.
        let good = req().encode().unwrap();
        for cut in 0..good.len() {
            assert!(Request::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(Request::decode(&long), Err(BadRequest("bytes after the end")));
        let mut huge_count = vec![VERSION, 0];
        huge_count.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Request::decode(&huge_count), Err(BadRequest("too many items")));
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(Request::decode(&v2), Err(BadRequest("unknown version")));
        let rel = Request { cwd: "src".into(), ..req() }.encode().unwrap();
        assert_eq!(Request::decode(&rel), Err(BadRequest("the directory is not absolute")));
        let mut nul = Request { argv: vec!["ab".into()], ..req() }.encode().unwrap();
        let at = nul.windows(2).position(|w| w == b"ab").unwrap();
        nul[at] = 0;
        assert_eq!(Request::decode(&nul), Err(BadRequest("a NUL byte in a string")));
    }

    #[test]
    fn frames_are_bounded() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").unwrap();
        write_frame(&mut buf, &Reply::Exit(-3).encode()).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r, 16).unwrap().unwrap(), b"hello");
        assert_eq!(Reply::decode(&read_frame(&mut r, 16).unwrap().unwrap()).unwrap(), Reply::Exit(-3));
        assert!(read_frame(&mut r, 16).unwrap().is_none(), "a clean end");
        let mut r = &buf[..];
        assert!(read_frame(&mut r, 4).is_err(), "over the bound: refused before reading");
        let mut r = &buf[..7];
        assert!(read_frame(&mut r, 16).is_err(), "cut inside a frame");
        let long = Reply::Error(127, "é".repeat(MAX_REPLY)).encode();
        assert!(long.len() <= MAX_REPLY);
        assert!(matches!(Reply::decode(&long).unwrap(), Reply::Error(127, m) if m.chars().all(|c| c == 'é')));
        assert_eq!(signal_of(&signal_frame(2)), Some(2));
        assert_eq!(signal_of(b"X"), None);
    }

    #[test]
    fn descriptors_travel_with_their_frame_and_are_bounded() {
        use std::io::Seek;
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"passed").unwrap();
        use std::os::fd::AsFd;
        send_frame(&a, b"with", &[f.as_fd()]).unwrap();
        send_frame(&a, b"without", &[]).unwrap();
        let (p, fds) = recv_frame(&b, 16, 1).unwrap().unwrap();
        assert_eq!((p.as_slice(), fds.len()), (&b"with"[..], 1));
        let mut got = std::fs::File::from(fds.into_iter().next().unwrap());
        got.rewind().unwrap();
        let mut s = String::new();
        got.read_to_string(&mut s).unwrap();
        assert_eq!(s, "passed", "the same open file");
        assert_eq!(recv_frame(&b, 16, 1).unwrap().unwrap().1.len(), 0);
        send_frame(&a, b"two", &[f.as_fd(), f.as_fd()]).unwrap();
        assert!(recv_frame(&b, 16, 1).is_err(), "more descriptors than asked for");
        drop(a);
        assert!(recv_frame(&b, 16, 1).unwrap().is_none());
    }

    #[test]
    fn spawn_tools_are_linked_where_the_image_has_none() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let mtbx = Path::new("/run/mtbx-host/mtbx");
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/flatpak-spawn"), "real").unwrap();
        link_spawn_tools(r, mtbx).unwrap();
        assert_eq!(std::fs::read_link(r.join("usr/local/bin/host-spawn")).unwrap(), mtbx);
        assert!(!r.join("usr/local/bin/flatpak-spawn").exists(), "the image has one");
        // Installed later: the link gives way; an admin's own file stays.
        std::fs::write(r.join("usr/bin/host-spawn"), "real").unwrap();
        link_spawn_tools(r, mtbx).unwrap();
        assert!(std::fs::symlink_metadata(r.join("usr/local/bin/host-spawn")).is_err());
        std::fs::remove_file(r.join("usr/bin/flatpak-spawn")).unwrap();
        std::fs::write(r.join("usr/local/bin/flatpak-spawn"), "mine").unwrap();
        link_spawn_tools(r, mtbx).unwrap();
        assert_eq!(std::fs::read_to_string(r.join("usr/local/bin/flatpak-spawn")).unwrap(), "mine");
    }

    #[test]
    fn directories_translate_to_host_paths_or_are_refused() {
        let home = |p: &Path| p.starts_with("/home/ann");
        assert_eq!(host_dir(Path::new("/home/ann/src"), home), Some("/home/ann/src".into()));
        assert_eq!(host_dir(Path::new("/run/host/etc"), home), Some("/etc".into()));
        assert_eq!(host_dir(Path::new("/run/host"), home), Some("/".into()));
        assert_eq!(host_dir(Path::new("/usr/src"), home), None, "the container's own");
        assert_eq!(host_dir(Path::new("/run/hostile"), home), None);
        assert_eq!(host_dir(Path::new("/run/host/../etc"), home), None);
    }
}
