//! The host agent of `mtbx host-exec`, without a container: the built
//! mtbx serves a socket in a stamp directory whose "init-container" is a
//! process of the test's, and the test speaks the protocol as the inside
//! client does (descriptors passed with SCM_RIGHTS). The agent runs the
//! command on the very pipe it was given, reports its exit code and
//! signal deaths, refuses bad requests in one frame, passes a signal on,
//! and ends when the "container" does. And outside a container,
//! `host-exec` and its other names refuse in one line.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};

use common::{mtbx, text};
use mtbx::toolbox::host_exec::{recv_frame, send_frame, write_frame, Reply, Request, AGENT_DIR, SOCKET};

struct Agent {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    init: std::process::Child,
    agent: std::process::Child,
}

/// An agent for a "container" whose init is `sleep`.
fn agent() -> Agent {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let init = Command::new("sleep").arg("1000000").spawn().unwrap();
    let start = mtbx::toolbox::start_time(init.id()).unwrap();
    let stamp = mtbx::toolbox::stamp_file(dir.path());
    std::fs::write(&stamp, format!("{} {start}\n", init.id())).unwrap();
    std::fs::set_permissions(&stamp, std::fs::Permissions::from_mode(0o644)).unwrap();
    let agent_dir = dir.path().join(AGENT_DIR);
    std::fs::create_dir(&agent_dir).unwrap();
    std::fs::set_permissions(&agent_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = agent_dir.join(SOCKET);
    let listener = UnixListener::bind(&socket).unwrap();
    let agent = mtbx(&["host-agent", "--dir", dir.path().to_str().unwrap()])
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .spawn()
        .unwrap();
    Agent { _dir: dir, socket, init, agent }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.init.kill();
        let _ = self.init.wait();
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

/// Send `argv` with a pipe as stdin and stdout (`input` written into
/// it); the replies and what the command wrote.
fn exec(a: &Agent, argv: &[&str], input: &[u8], signal: Option<i32>) -> (Vec<Reply>, String) {
    let conn = UnixStream::connect(&a.socket).unwrap();
    let (in_r, mut in_w) = std::io::pipe().unwrap();
    let (mut out_r, out_w) = std::io::pipe().unwrap();
    let req =
        Request { argv: argv.iter().map(Into::into).collect(), env: vec![], cwd: "/".into(), tty: false };
    let stderr = std::io::stderr();
    send_frame(&conn, &req.encode().unwrap(), &[in_r.as_fd(), out_w.as_fd(), stderr.as_fd()]).unwrap();
    drop((in_r, out_w));
    in_w.write_all(input).unwrap();
    drop(in_w);
    let mut replies = vec![];
    let mut out = String::new();
    if let Some(sig) = signal {
        replies.push(Reply::decode(&recv_frame(&conn, 4096, 0).unwrap().unwrap().0).unwrap());
        // The command says it is ready (its trap is set) before the signal.
        let mut b = [0u8; 6];
        out_r.read_exact(&mut b).unwrap();
        out.push_str(&String::from_utf8_lossy(&b));
        write_frame(&mut &conn, &mtbx::toolbox::host_exec::signal_frame(sig)).unwrap();
    }
    while let Some((f, _)) = recv_frame(&conn, 4096, 0).unwrap() {
        replies.push(Reply::decode(&f).unwrap());
    }
    out_r.read_to_string(&mut out).unwrap();
    (replies, out)
}

#[test]
fn the_agent_runs_commands_on_the_descriptors_it_is_given() {
    let a = agent();
    let (r, out) = exec(&a, &["sh", "-c", "cat; echo at-$(pwd); exit 7"], b"piped through\n", None);
    assert_eq!(r, [Reply::Started, Reply::Exit(7)]);
    assert_eq!(out, "piped through\nat-/\n");
    let (r, _) = exec(&a, &["sh", "-c", "kill -KILL $$"], b"", None);
    assert_eq!(r, [Reply::Started, Reply::Exit(128 + 9)], "a signal death as a shell says it");
    let (r, _) = exec(&a, &["mtbx-no-such-command"], b"", None);
    assert!(matches!(&r[..], [Reply::Error(127, m)] if m.contains("mtbx-no-such-command")), "{r:?}");
    let (r, out) = exec(
        &a,
        &["sh", "-c", "trap 'echo int; exit 3' INT; echo ready; while :; do sleep 1; done"],
        b"",
        Some(2),
    );
    assert_eq!((r, out), (vec![Reply::Started, Reply::Exit(3)], "ready\nint\n".into()), "SIGINT passed on");
    // A request without its descriptors, or one that is not a request.
    let conn = UnixStream::connect(&a.socket).unwrap();
    let req = Request { argv: vec!["true".into()], env: vec![], cwd: "/".into(), tty: false };
    send_frame(&conn, &req.encode().unwrap(), &[]).unwrap();
    let f = recv_frame(&conn, 4096, 0).unwrap().unwrap().0;
    assert!(matches!(Reply::decode(&f), Ok(Reply::Error(1, m)) if m.contains("stdin, stdout and stderr")));
    let conn = UnixStream::connect(&a.socket).unwrap();
    write_frame(&mut &conn, &[9, 9, 9]).unwrap();
    let f = recv_frame(&conn, 4096, 0).unwrap().unwrap().0;
    assert!(matches!(Reply::decode(&f), Ok(Reply::Error(1, m)) if m.contains("bad host-exec request")));
    // A frame over the bound is refused unread: the agent hangs up.
    let conn = UnixStream::connect(&a.socket).unwrap();
    (&conn).write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert!(recv_frame(&conn, 4096, 0).unwrap().is_none());
}

#[test]
fn the_agent_ends_with_its_container() {
    let mut a = agent();
    let (r, _) = exec(&a, &["true"], b"", None);
    assert_eq!(r, [Reply::Started, Reply::Exit(0)]);
    a.init.kill().unwrap();
    a.init.wait().unwrap();
    assert!(a.agent.wait().unwrap().success());
    let e = UnixStream::connect(&a.socket).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
}

#[test]
fn the_agent_is_not_a_command_to_type() {
    let out = mtbx(&["host-agent", "--dir", "/nonexistent"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let help = text(&mtbx(&["--help"]).output().unwrap().stdout);
    assert!(help.contains("  host-exec ") && !help.contains("host-agent"), "{help}");
}

/// On the host (no /run/mtbx-stamp), under each of its names.
#[test]
fn host_exec_outside_a_container_says_so_in_one_line() {
    if std::path::Path::new(mtbx::toolbox::STAMP_DIR).exists() {
        return common::skip(
            "host_exec_outside_a_container_says_so_in_one_line",
            "runs inside an mtbx container",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut runs = vec![mtbx(&["host-exec", "true"])];
    for (name, args) in [("host-spawn", &["true"][..]), ("flatpak-spawn", &["--host", "true"])] {
        let link = dir.path().join(name);
        std::os::unix::fs::symlink(common::mtbx_bin(), &link).unwrap();
        let mut c = Command::new(&link);
        c.args(args);
        runs.push(c);
    }
    for mut c in runs {
        let out = c.output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{c:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("inside an mtbx container"), "{err}");
    }
    let link = dir.path().join("flatpak-spawn");
    let out = Command::new(&link).arg("true").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--host"), "{}", text(&out.stderr));
}
