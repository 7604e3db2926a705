//! `mtbx host-exec` from inside real Debian toolbox containers (bookworm
//! built by mmdebstrap, amd64 and arm64 under QEMU), rootful and as the
//! rootless test user: the command runs on the host (it sees the host's
//! files, not the container's), with the caller's exit code, stdin,
//! stdout, stderr and directory; on a terminal (script(1) gives one) it
//! gets a terminal of its own where Ctrl-C reaches it; and `host-spawn`
//! and `flatpak-spawn --host` reach it where the image has neither.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::images::index;
use common::podman::PodmanEnv;
use common::real_registry::RealRegistry;
use common::{skip, text};

/// mtbx inside every container.
const MTBX: &str = "/run/mtbx-host/mtbx";

struct Host {
    env: PodmanEnv,
    _reg: RealRegistry,
    image: String,
    mtbx: PathBuf,
    arches: Vec<&'static str>,
    home: PathBuf,
    /// Host-only directory (/var/tmp is not shared with containers).
    only_here: tempfile::TempDir,
    /// A directory in the home, which containers share.
    in_home: PathBuf,
}

impl Host {
    fn new(test: &str, rootless: bool) -> Option<Host> {
        let Some(mtbx) = std::env::var_os("MTBX_STATIC_BIN").map(PathBuf::from).filter(|p| p.is_file())
        else {
            skip(test, "needs the static mtbx build in MTBX_STATIC_BIN (scripts/test.sh sets it)");
            return None;
        };
        let env = if rootless { PodmanEnv::rootless(test)? } else { PodmanEnv::rootful(test)? };
        let mut arches = vec!["amd64"];
        if common::have_qemu(mtbx::emu::arch::Arch::parse("arm64").unwrap()) {
            arches.push("arm64");
        } else {
            skip(test, "no static QEMU for arm64 (apt-get install qemu-user-static): amd64 only");
        }
        let mut built = Vec::new();
        for a in &arches {
            built.push(common::debian::image(&common::debian::rootfs(test, a)?, a, &[]));
        }
        let reg = RealRegistry::start(test)?;
        reg.push("debian-hostexec", "12", &index(&built.iter().collect::<Vec<_>>()));
        let image = format!("{}/debian-hostexec:12", reg.addr);
        let mtbx = env.reachable(&mtbx, "mtbx-static");
        let home = match &env.user {
            Some(u) => u.home.clone(),
            None => mtbx::toolbox::HostUser::current().unwrap().home,
        };
        let only_here = tempfile::Builder::new().prefix("mtbx-hostexec-").tempdir_in("/var/tmp").unwrap();
        std::fs::write(only_here.path().join("marker"), "only on the host\n").unwrap();
        let in_home = home.join(format!(".mtbx-hostexec-{}", if rootless { "rootless" } else { "rootful" }));
        std::fs::create_dir_all(in_home.join("sub dir")).unwrap();
        if let Some(u) = &env.user {
            for p in [only_here.path(), &only_here.path().join("marker"), &in_home, &in_home.join("sub dir")]
            {
                std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).unwrap();
            }
        }
        Some(Host { env, _reg: reg, image, mtbx, arches, home, only_here, in_home })
    }

    fn mtbx(&self, args: &[&str]) -> Command {
        let mut c = self.env.command(&self.mtbx, args);
        c.current_dir(&self.home);
        c
    }

    /// `mtbx run -c name mtbx host-exec ARGS` from `dir`.
    fn host_exec(&self, name: &str, dir: &Path, args: &[&str]) -> Command {
        let mut all = vec!["run", "-c", name, MTBX, "host-exec"];
        all.extend_from_slice(args);
        let mut c = self.mtbx(&all);
        c.current_dir(dir);
        c
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.mtbx(&["rm", "--all", "--force"]).output();
        let _ = std::fs::remove_dir_all(&self.in_home);
    }
}

fn said(o: &Output) -> String {
    format!("status {:?}, stdout {:?}, stderr {:?}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

fn check(h: &Host, name: &str) {
    // Exit codes, and a death by signal as a shell reports it.
    let o = h.host_exec(name, &h.home, &["sh", "-c", "exit 7"]).output().unwrap();
    assert_eq!(o.status.code(), Some(7), "{name}: {}", said(&o));
    let o = h.host_exec(name, &h.home, &["sh", "-c", "kill -TERM $$"]).output().unwrap();
    assert_eq!(o.status.code(), Some(128 + 15), "{name}: {}", said(&o));
    // The host's own: a file only the host has, none of the container's
    // (its stamp directory), the host's CPU, the same user; the container
    // itself sees none of it.
    let marker = h.only_here.path().join("marker");
    let script =
        format!("cat '{}'; test -e /run/mtbx-stamp || echo no-stamp-dir; uname -m; id -u", marker.display());
    let o = h.host_exec(name, &h.home, &["sh", "-c", &script]).output().unwrap();
    let uid = h.env.user.as_ref().map_or(0, |u| u.uid);
    assert_eq!(
        text(&o.stdout),
        format!("only on the host\nno-stamp-dir\nx86_64\n{uid}\n"),
        "{name}: {}",
        said(&o)
    );
    assert!(o.status.success(), "{name}: {}", said(&o));
    let o = h.mtbx(&["run", "-c", name, "cat", marker.to_str().unwrap()]).output().unwrap();
    assert!(!o.status.success(), "{name}: the container does not have the host's /var/tmp: {}", said(&o));
    // stdin in, stdout and stderr out, each through its own descriptor.
    let mut child = h
        .host_exec(name, &h.home, &["sh", "-c", "cat; echo to-stderr >&2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped in\nand out\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(text(&o.stdout), "piped in\nand out\n", "{name}: {}", said(&o));
    assert_eq!(text(&o.stderr), "to-stderr\n", "{name}: {}", said(&o));
    // The directory: one in the home is the same path on the host; one
    // under /run/host is the host's path; the container's own is refused.
    let sub = h.in_home.join("sub dir");
    let o = h.host_exec(name, &sub, &["pwd"]).output().unwrap();
    assert_eq!(text(&o.stdout).trim(), sub.display().to_string(), "{name}: {}", said(&o));
    let o = h
        .mtbx(&["run", "-c", name, "sh", "-c", &format!("cd /run/host/etc && {MTBX} host-exec pwd")])
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout).trim(), "/etc", "{name}: {}", said(&o));
    let o = h
        .mtbx(&["run", "-c", name, "sh", "-c", &format!("cd /usr/share && {MTBX} host-exec pwd")])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{name}: {}", said(&o));
    assert_eq!(err.lines().count(), 1, "{name}: {err}");
    assert!(err.contains("/usr/share") && err.contains("--directory"), "{name}: {err}");
    // A command the host lacks: 127, as a shell says.
    let o = h.host_exec(name, &h.home, &["mtbx-no-such-command"]).output().unwrap();
    assert_eq!(o.status.code(), Some(127), "{name}: {}", said(&o));
    // Variables: the terminal's pass by themselves, others by --env.
    let o = h
        .host_exec(name, &h.home, &["--env", "MTBX_HE=given", "sh", "-c", "echo $TERM $MTBX_HE"])
        .env("TERM", "xterm-mtbx")
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout), "xterm-mtbx given\n", "{name}: {}", said(&o));
    // Toolbx's and distrobox's names for it, linked by init-container.
    let o = h.mtbx(&["run", "-c", name, "host-spawn", "sh", "-c", "uname -m; exit 3"]).output().unwrap();
    assert_eq!((o.status.code(), text(&o.stdout)), (Some(3), "x86_64\n".into()), "{name}: {}", said(&o));
    let o = h
        .mtbx(&[
            "run",
            "-c",
            name,
            "flatpak-spawn",
            "--host",
            "--env=MTBX_FS=1",
            "sh",
            "-c",
            "echo fs$MTBX_FS",
        ])
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout), "fs1\n", "{name}: {}", said(&o));
    let o = h.mtbx(&["run", "-c", name, "readlink", "/usr/local/bin/host-spawn"]).output().unwrap();
    assert_eq!(text(&o.stdout).trim(), MTBX, "{name}");
    check_terminal(h, name);
}

/// On a terminal: the command has a terminal of the host's own, reads
/// a line from it, and Ctrl-C typed there interrupts it (its trap runs).
fn check_terminal(h: &Host, name: &str) {
    if Command::new("script").arg("--version").output().is_err() {
        return skip(name, "script(1) not installed (bsdutils): no terminal case");
    }
    // In double quotes for script's shell: each `$` is the host sh's.
    let inner = "test -t 0 && test -t 1 && echo has-tty; read line; echo got-\\$line; \
                 trap 'echo int-\\$((4+5)); exit 9' INT; echo ready-\\$((1+1)); read never; exit 1";
    let cmd = format!("{} run -c {name} {MTBX} host-exec sh -c \"{inner}\"", h.mtbx.display());
    let mut child = h
        .env
        .command(Path::new("script"), &["-qec", &cmd, "/dev/null"])
        .current_dir(&h.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut wait_for = |what: &str, seen: &mut String| {
        while !seen.contains(what) {
            let mut line = Vec::new();
            let n = out.read_until(b'\n', &mut line).unwrap();
            assert!(n > 0, "{name}: the terminal closed before {what}: {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&line));
        }
    };
    stdin.write_all(b"hello\n").unwrap();
    wait_for("ready-2", &mut seen);
    stdin.write_all(b"\x03").unwrap();
    wait_for("int-9", &mut seen);
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    seen.push_str(&rest);
    assert!(seen.contains("has-tty") && seen.contains("got-hello"), "{name}: {seen:?}");
    assert_eq!(status.code(), Some(9), "{name}: the trap's exit code: {seen:?}");
}

fn host_exec(rootless: bool) {
    let test =
        if rootless { "rootless_host_exec_runs_on_the_host" } else { "rootful_host_exec_runs_on_the_host" };
    let Some(h) = Host::new(test, rootless) else { return };
    for a in h.arches.clone() {
        let name = format!("hostexec-{}-{a}", if rootless { "rootless" } else { "rootful" });
        let o = h
            .mtbx(&["create", "-y", "--tls-verify=false", "--image", &h.image, "--arch", a, &name])
            .output()
            .unwrap();
        assert!(o.status.success(), "create {name}: {}", said(&o));
        check(&h, &name);
    }
}

#[test]
fn rootful_host_exec_runs_on_the_host() {
    host_exec(false);
}

#[test]
fn rootless_host_exec_runs_on_the_host() {
    host_exec(true);
}
