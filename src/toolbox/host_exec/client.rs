//! The inside half: `mtbx host-exec` (and `host-spawn`, `flatpak-spawn
//! --host`) asks the container's host agent to run a command.

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::{
    host_dir, recv_frame, same_file_on_host, send_frame, signal_frame, write_frame, HostExecError, Reply,
    Request, AGENT_DIR, MAX_REPLY, PASSED_ENV, SOCKET,
};

/// What to run on the host, as the command line said it.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The command; empty for the host user's shell.
    pub argv: Vec<OsString>,
    /// Variables to set besides [`PASSED_ENV`].
    pub env: Vec<(OsString, OsString)>,
    /// The directory (as seen inside); the current one when None.
    pub directory: Option<PathBuf>,
    /// A terminal for the command: forced on or off; None: when stdin and
    /// stdout are one.
    pub pty: Option<bool>,
}

/// Restores the terminal's modes when dropped.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let saved = tcgetattr(std::io::stdin()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Run the command on the host; its exit code (128 + N for a signal).
pub fn run(o: &Options) -> Result<i32, HostExecError> {
    if !crate::toolbox::inside::in_mtbx_container() {
        return Err(HostExecError::NotInside);
    }
    let here = std::env::current_dir().map_err(HostExecError::Lost)?;
    let dir = match &o.directory {
        Some(d) => here.join(d),
        None => here,
    };
    let cwd = host_dir(&dir, same_file_on_host).ok_or(HostExecError::NoHostDir(dir))?;
    let mut env: Vec<(OsString, OsString)> =
        PASSED_ENV.iter().filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v))).collect();
    env.extend(o.env.iter().cloned());
    let tty = o.pty.unwrap_or_else(|| std::io::stdin().is_terminal() && std::io::stdout().is_terminal());
    let request = Request { argv: o.argv.clone(), env, cwd, tty }.encode()?;
    let path = Path::new(crate::toolbox::STAMP_DIR).join(AGENT_DIR).join(SOCKET);
    let conn = UnixStream::connect(&path)
        .map_err(|source| HostExecError::NoAgent { path: path.display().to_string(), source })?;
    // Signals are taken by a thread of their own (sigwait): blocked here,
    // before any other thread exists, so that every thread has them
    // blocked and none is interrupted.
    let signals = forwarded_signals();
    let _ = signals.thread_block();
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    send_frame(&conn, &request, &[stdin.as_fd(), stdout.as_fd(), stderr.as_fd()])
        .map_err(HostExecError::Lost)?;
    let (first, fds) = recv_frame(&conn, MAX_REPLY, 1)
        .map_err(HostExecError::Lost)?
        .ok_or_else(|| HostExecError::Lost(std::io::ErrorKind::UnexpectedEof.into()))?;
    match Reply::decode(&first) {
        Ok(Reply::Started) => {}
        Ok(Reply::Error(code, message)) => return Err(HostExecError::Agent { message, code }),
        _ => return Err(HostExecError::Lost(std::io::ErrorKind::InvalidData.into())),
    }
    let master = fds.into_iter().next();
    let _raw = master.as_ref().and_then(|_| RawMode::enter());
    let output = master.as_ref().map(relay).transpose().map_err(HostExecError::Lost)?;
    {
        let conn = conn.try_clone().map_err(HostExecError::Lost)?;
        let master = master.as_ref().map(|m| m.try_clone()).transpose().map_err(HostExecError::Lost)?;
        std::thread::spawn(move || pass_signals(signals, conn, master));
    }
    let code = loop {
        match recv_frame(&conn, MAX_REPLY, 0) {
            Ok(Some((f, _))) => match Reply::decode(&f) {
                Ok(Reply::Exit(code)) => break code,
                _ => continue,
            },
            Ok(None) => return Err(HostExecError::Lost(std::io::ErrorKind::UnexpectedEof.into())),
            Err(e) => return Err(HostExecError::Lost(e)),
        }
    };
    // The command's last output is read to the end (the terminal reports
    // EIO once no process has it open) before the terminal is restored.
    if let Some(out) = output {
        let _ = out.join();
    }
    Ok(code)
}

/// The signals passed on to the command.
fn forwarded_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal::*};
    let mut set = SigSet::empty();
    for s in [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH] {
        set.add(s);
    }
    set
}

/// Wait for signals: a window size change goes to the host terminal,
/// every other signal to the command.
fn pass_signals(set: nix::sys::signal::SigSet, conn: UnixStream, master: Option<OwnedFd>) {
    while let Ok(sig) = set.wait() {
        if sig == nix::sys::signal::Signal::SIGWINCH {
            if let (Some(m), Ok(w)) = (&master, rustix::termios::tcgetwinsize(std::io::stdin())) {
                let _ = rustix::termios::tcsetwinsize(m, w);
            }
            continue;
        }
        if write_frame(&mut &conn, &signal_frame(sig as i32)).is_err() {
            return;
        }
    }
}

/// Copy this terminal's input to the host terminal, and the host
/// terminal's output here; the output thread ends when the command and
/// everything it started have closed the terminal.
fn relay(master: &OwnedFd) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut to_host = std::fs::File::from(master.try_clone()?);
    let mut from_host = std::fs::File::from(master.try_clone()?);
    let mut input = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let mut output = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = input.read(&mut buf) {
            if n == 0 || to_host.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    Ok(std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from_host.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if output.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // EIO: no process has the terminal open any more.
                Err(_) => return,
            }
        }
    }))
}

/// `--name=value` as the name and the value; `--name` alone as the name.
fn split_option(s: &str) -> (String, Option<OsString>) {
    match s.split_once('=') {
        Some((f, v)) => (f.to_string(), Some(OsString::from(v))),
        None => (s.to_string(), None),
    }
}

/// An option's value: the one after `=`, else the next argument.
fn option_value(
    inline: &Option<OsString>,
    rest: &mut std::slice::Iter<'_, OsString>,
    tool: &str,
    name: &str,
) -> Result<OsString, HostExecError> {
    inline
        .clone()
        .or_else(|| rest.next().cloned())
        .ok_or_else(|| usage(format!("{tool}: {name} needs a value")))
}

/// `host-spawn [-cwd DIR] [-env NAME,...] [-pty|-no-pty] [COMMAND...]`:
/// distrobox's tool, whose options take one or two dashes.
pub fn host_spawn_options(args: &[OsString]) -> Result<Options, HostExecError> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        let (flag, inline) = split_option(&s);
        let mut value = |name: &str| option_value(&inline, &mut it, "host-spawn", name);
        match flag.trim_start_matches('-') {
            _ if !s.starts_with('-') => {
                o.argv.push(a.clone());
                o.argv.extend(it.cloned());
                break;
            }
            "" if s == "--" => {
                o.argv.extend(it.cloned());
                break;
            }
            "cwd" => o.directory = Some(value("-cwd")?.into()),
            "env" => {
                for name in value("-env")?.to_string_lossy().split(',').filter(|n| !n.is_empty()) {
                    if let Some(v) = std::env::var_os(name) {
                        o.env.push((name.into(), v));
                    }
                }
            }
            "pty" => o.pty = Some(true),
            "no-pty" => o.pty = Some(false),
            _ => {
                return Err(usage(format!(
                    "host-spawn: unknown option {}; mtbx's host-spawn takes -cwd DIR, -env NAMES, -pty and -no-pty",
                    crate::text::quoted(&s)
                )))
            }
        }
    }
    Ok(o)
}

/// `flatpak-spawn --host [--directory=DIR] [--env=NAME=VALUE]...
/// [--watch-bus] COMMAND...`: Toolbx's way to the host. Only --host is
/// served (there is no sandbox here to spawn into).
pub fn flatpak_spawn_options(args: &[OsString]) -> Result<Options, HostExecError> {
    let mut o = Options::default();
    let mut host = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if !s.starts_with('-') {
            o.argv.push(a.clone());
            o.argv.extend(it.cloned());
            break;
        }
        if s == "--" {
            o.argv.extend(it.cloned());
            break;
        }
        let (flag, inline) = split_option(&s);
        let mut value = |name: &str| option_value(&inline, &mut it, "flatpak-spawn", name);
        match flag.as_str() {
            "--host" => host = true,
            // The command ends when its caller does anyway.
            "--watch-bus" => {}
            "--directory" => o.directory = Some(value("--directory")?.into()),
            "--env" => {
                let kv = value("--env")?;
                let kv = kv.to_string_lossy();
                let (k, v) = kv.split_once('=').ok_or_else(|| usage("flatpak-spawn: --env takes NAME=VALUE".into()))?;
                o.env.push((k.into(), v.into()));
            }
            _ => {
                return Err(usage(format!(
                    "flatpak-spawn: {} is not served here; mtbx's flatpak-spawn takes --host, --directory, --env and --watch-bus",
                    crate::text::quoted(&s)
                )))
            }
        }
    }
    if !host {
        return Err(usage("flatpak-spawn: mtbx serves only --host (a command on the host); add it".into()));
    }
    if o.argv.is_empty() {
        return Err(usage("flatpak-spawn: name the command to run on the host".into()));
    }
    Ok(o)
}

fn usage(msg: String) -> HostExecError {
    HostExecError::Usage(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn flatpak_spawn_serves_host_only() {
        let o = flatpak_spawn_options(&os(&[
            "--host",
            "--directory=/tmp",
            "--env=A=b=c",
            "--watch-bus",
            "ls",
            "-l",
        ]))
        .unwrap();
        assert_eq!(o.argv, os(&["ls", "-l"]));
        assert_eq!(o.directory, Some("/tmp".into()));
        assert_eq!(o.env, vec![("A".into(), "b=c".into())]);
        let o = flatpak_spawn_options(&os(&["--host", "--env", "X=1", "--", "--weird"])).unwrap();
        assert_eq!((o.argv, o.env.len()), (os(&["--weird"]), 1));
        for bad in [&["ls"][..], &["--host"], &["--sandbox", "--host", "ls"], &["--host", "--env=X", "ls"]] {
            assert!(matches!(flatpak_spawn_options(&os(bad)), Err(HostExecError::Usage(_))), "{bad:?}");
        }
    }

    #[test]
    fn host_spawn_takes_its_options_with_one_or_two_dashes() {
        let o = host_spawn_options(&os(&["-cwd", "/srv", "--no-pty", "make", "-j2"])).unwrap();
        assert_eq!((o.argv, o.directory, o.pty), (os(&["make", "-j2"]), Some("/srv".into()), Some(false)));
        let o = host_spawn_options(&os(&["--pty"])).unwrap();
        assert!(o.argv.is_empty() && o.pty == Some(true), "no command: the host shell");
        assert!(host_spawn_options(&os(&["-x", "ls"])).is_err());
        assert!(host_spawn_options(&os(&["-cwd"])).is_err());
    }
}
