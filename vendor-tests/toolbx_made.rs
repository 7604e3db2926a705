//! Containers Toolbx itself made, used through mtbx as `toolbox`: the
//! ones every Toolbx user already has. Debian's own Toolbx (package
//! podman-toolbox) creates a toolbox of a real Debian image (built at test
//! time, with capsh as Toolbx's images have it); mtbx, as `toolbox`, lists
//! it, starts it (Toolbx's own init-container sets it up), runs commands
//! in it as Toolbx does (exit codes, the working directory and its
//! fallback, a missing command), enters it, and removes it. Then the same
//! for a container whose `toolbox init-container` is mtbx, as when mtbx
//! took the place of the host's /usr/bin/toolbox. Rootful and as the
//! rootless test user, with XDG_RUNTIME_DIR set, as Toolbx needs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::images::index;
use common::podman::PodmanEnv;
use common::real_registry::RealRegistry;
use common::{skip, text};

const DEBIAN_TOOLBX: &str = "/usr/bin/toolbox";

struct Made {
    env: PodmanEnv,
    _reg: RealRegistry,
    image: String,
    /// mtbx under the name `toolbox`, where the user can run it.
    mtbx_toolbox: PathBuf,
    home: PathBuf,
    runtime: PathBuf,
    user: String,
    uid: u32,
    gid: u32,
    /// The runtime directory this test made (rootless), removed after.
    made_runtime: Option<PathBuf>,
    /// Where the name `toolbox` links to mtbx (rootful).
    _links: tempfile::TempDir,
}

fn debian_toolbx(test: &str) -> bool {
    let out = Command::new(DEBIAN_TOOLBX).arg("--version").output();
    let is_toolbx = out.is_ok_and(|o| text(&o.stdout).starts_with("toolbox version 0."));
    let from_debian = Command::new("dpkg")
        .args(["-S", DEBIAN_TOOLBX])
        .output()
        .is_ok_and(|o| text(&o.stdout).starts_with("podman-toolbox:"));
    if !(is_toolbx && from_debian) {
        skip(test, "needs Debian's Toolbx at /usr/bin/toolbox (apt-get install podman-toolbox)");
    }
    is_toolbx && from_debian
}

impl Made {
    fn new(test: &str, rootless: bool) -> Option<Made> {
        let mtbx = std::env::var_os("MTBX_STATIC_BIN").map(PathBuf::from).filter(|p| p.is_file());
        let Some(mtbx) = mtbx else {
            skip(test, "needs the static mtbx build in MTBX_STATIC_BIN (scripts/test.sh sets it)");
            return None;
        };
        if !debian_toolbx(test) {
            return None;
        }
        let env = if rootless { PodmanEnv::rootless(test)? } else { PodmanEnv::rootful(test)? };
        let tar = common::debian::rootfs_including(test, "amd64", &["libcap2-bin"])?;
        let built = common::debian::image(&tar, "amd64", &[]);
        let reg = RealRegistry::start(test)?;
        reg.push("debian-toolbx-made", "12", &index(&[&built]));
        let image = format!("{}/debian-toolbx-made:12", reg.addr);
        // The name decides the voice: a copy named `toolbox` for the test
        // user, a link of that name for root.
        let links = tempfile::Builder::new().prefix("mtbx-toolbox-").tempdir().unwrap();
        let mtbx_toolbox = match &env.user {
            Some(_) => env.reachable(&mtbx, "toolbox"),
            None => {
                let link = links.path().join("toolbox");
                std::os::unix::fs::symlink(&mtbx, &link).unwrap();
                link
            }
        };
        let (user, uid, gid, home) = match &env.user {
            Some(u) => (u.name.clone(), u.uid, u.gid, u.home.clone()),
            None => ("root".to_string(), 0, 0, PathBuf::from("/root")),
        };
        // Toolbx mounts XDG_RUNTIME_DIR and keeps its stamps there: a
        // login's /run/user/UID, made here where the login is not.
        let runtime = PathBuf::from(format!("/run/user/{uid}"));
        let made_runtime = if runtime.is_dir() {
            None
        } else {
            std::fs::create_dir_all(&runtime).unwrap();
            std::os::unix::fs::chown(&runtime, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
            Some(runtime.clone())
        };
        let m = Made {
            env,
            _reg: reg,
            image,
            mtbx_toolbox,
            home,
            runtime,
            user,
            uid,
            gid,
            made_runtime,
            _links: links,
        };
        let pulled = m.env.podman(&["pull", "-q", "--tls-verify=false", &m.image]).output().unwrap();
        assert!(pulled.status.success(), "pull: {}", text(&pulled.stderr));
        Some(m)
    }

    /// `program args` as the user would run it, with XDG_RUNTIME_DIR set,
    /// in `dir`.
    fn run(&self, program: &Path, args: &[&str], dir: &Path, stdin: Option<&str>) -> Output {
        let runtime = format!("XDG_RUNTIME_DIR={}", self.runtime.display());
        let home = format!("HOME={}", self.home.display());
        // A login sets SHELL, which some Toolbx versions (Debian 13's)
        // take the user's shell from.
        let shell = format!("SHELL={}", login_shell(&self.user));
        let mut all = vec![runtime.as_str(), home.as_str(), shell.as_str(), program.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut c = self.env.command(Path::new("env"), &all);
        c.current_dir(dir);
        c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn toolbox(&self, args: &[&str]) -> Output {
        self.run(&self.mtbx_toolbox, args, &self.home, None)
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for name in ["made-by-toolbx", "made-for-mtbx"] {
            let _ = self.env.podman(&["rm", "--force", name]).output();
        }
        if let Some(r) = &self.made_runtime {
            let _ = std::fs::remove_dir_all(r);
        }
    }
}

/// The user's shell in the host's passwd (/bin/sh when it says none).
fn login_shell(user: &str) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() == 7 && f[0] == user && !f[6].is_empty())
        .map_or("/bin/sh".to_string(), |f| f[6].to_string())
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// What mtbx as `toolbox` does with one container, whoever's init it runs.
fn used_as_toolbx_uses_it(m: &Made, name: &str) {
    let listed = ok(m.toolbox(&["list", "--containers"]), "list");
    let host = mtbx::emu::arch::Arch::host().platform();
    assert!(
        listed.lines().any(|l| l.split_whitespace().nth(1) == Some(name) && l.ends_with(&host)),
        "{listed}"
    );
    // Stopped: started, set up, then the command, as the user, in the
    // working directory, through a login shell.
    let out = ok(
        m.toolbox(&["run", "-c", name, "sh", "-c", "id -un; pwd; test -f /run/.toolboxenv && echo marked"]),
        "run",
    );
    assert_eq!(out, format!("{}\n{}\nmarked\n", m.user, m.home.display()));
    // Running: the same, now without a start.
    let status = m.toolbox(&["run", "-c", name, "sh", "-c", "exit 7"]);
    assert_eq!(status.status.code(), Some(7), "{}", text(&status.stderr));
    let missing = m.toolbox(&["run", "-c", name, "no-such-command"]);
    assert_eq!(missing.status.code(), Some(127));
    assert!(
        text(&missing.stderr)
            .ends_with(&format!("Error: command no-such-command not found in container {name}\n")),
        "{}",
        text(&missing.stderr)
    );
    // A directory only the host has: Toolbx's fallback to the home.
    let host_only = tempfile::Builder::new().prefix("mtbx-host-only-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(host_only.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = m.run(&m.mtbx_toolbox, &["run", "-c", name, "pwd"], host_only.path(), None);
    assert_eq!(text(&out.stdout), format!("{}\n", m.home.display()), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(2).collect();
    assert_eq!(
        tail,
        [
            format!("Using {} instead.", m.home.display()),
            format!("Error: directory {} not found in container {name}", host_only.path().display())
        ],
        "{stderr}"
    );
    // enter, fed by a pipe: the login shell reads it.
    let out = m.run(&m.mtbx_toolbox, &["enter", name], &m.home, Some("echo in-$((6*7))\n"));
    assert!(text(&out.stdout).contains("in-42"), "{}{}", text(&out.stdout), text(&out.stderr));
    ok(m.toolbox(&["rm", "--force", name]), "rm");
    let gone = m.env.podman(&["container", "exists", name]).output().unwrap();
    assert_eq!(gone.status.code(), Some(1), "rm removed it");
}

fn toolbx_made_containers_used_as_toolbox(test: &str, rootless: bool) {
    let Some(m) = Made::new(test, rootless) else { return };
    // Made by Debian's Toolbx: its init-container is Toolbx's.
    let created = m.run(
        Path::new(DEBIAN_TOOLBX),
        &["-y", "create", "--image", &m.image, "made-by-toolbx"],
        &m.home,
        None,
    );
    ok(created, "Debian's toolbox create");
    used_as_toolbx_uses_it(&m, "made-by-toolbx");

    // Made as Toolbx makes them, where the host's toolbox is mtbx: the
    // entry point `toolbox init-container` is mtbx.
    let (uid, gid) = (m.uid.to_string(), m.gid.to_string());
    let home = m.home.display().to_string();
    let mut args = vec![
        "create",
        "--dns",
        "none",
        "--hostname",
        "toolbox",
        "--ipc",
        "host",
        "--network",
        "host",
        "--no-hosts",
        "--pid",
        "host",
        "--privileged",
        "--security-opt",
        "label=disable",
        "--user",
        "root:root",
        "--label",
        "com.github.containers.toolbox=true",
    ];
    if rootless {
        args.extend(["--userns", "keep-id"]);
    }
    // Toolbx's runtime directory, which it shares with its containers:
    // XDG_RUNTIME_DIR for users, /run/toolbox for root.
    let toolbx_runtime = if rootless { m.runtime.clone() } else { PathBuf::from("/run/toolbox") };
    std::fs::create_dir_all(&toolbx_runtime).unwrap();
    let volumes = [
        format!("{home}:{home}:rslave"),
        format!("{}:/usr/bin/toolbox:ro", m.mtbx_toolbox.display()),
        format!("{r}:{r}", r = toolbx_runtime.display()),
        "/:/run/host:rslave".to_string(),
        "/dev:/dev:rslave".to_string(),
    ];
    for v in &volumes {
        args.extend(["--volume", v]);
    }
    args.extend(["--name", "made-for-mtbx", &m.image, "toolbox", "--log-level", "debug", "init-container"]);
    args.extend(["--gid", &gid, "--home", &home, "--shell", "/bin/bash", "--uid", &uid, "--user", &m.user]);
    let runtime = format!("XDG_RUNTIME_DIR={}", m.runtime.display());
    let mut create = vec![runtime.as_str(), "podman"];
    create.extend(args);
    ok(m.env.command(Path::new("env"), &create).output().unwrap(), "podman create as Toolbx does");
    used_as_toolbx_uses_it(&m, "made-for-mtbx");
}

#[test]
fn rootful_containers_made_by_toolbx_are_used_by_mtbx_as_toolbox() {
    toolbx_made_containers_used_as_toolbox(
        "rootful_containers_made_by_toolbx_are_used_by_mtbx_as_toolbox",
        false,
    );
}

#[test]
fn rootless_containers_made_by_toolbx_are_used_by_mtbx_as_toolbox() {
    toolbx_made_containers_used_as_toolbox(
        "rootless_containers_made_by_toolbx_are_used_by_mtbx_as_toolbox",
        true,
    );
}
