//! Inside a toolbox container as Toolbx makes it, on a real distribution:
//! Debian bookworm built at test time from Debian's packages (mmdebstrap,
//! tests/common/src/debian.rs), amd64 and arm64 in one multi-arch image in
//! the real registry, run by real podman as root and as the rootless test
//! user. Each point of Toolbx parity is checked from inside, with `mtbx
//! run` and with `mtbx enter` on a terminal: the marker files and the
//! architecture, the login shell's PATH, capabilities dropped, the
//! directory reached through a symlink and the fallback to the home, the
//! forwarded variables, the host's files, mounts and CA certificates, the
//! user's passwd, group and shadow lines, sudo without the host name
//! warning, --preserve-fds, detach keys off and Toolbx's terminal escapes.
//! The host's passwd, group, shadow and binfmt_misc stay as they were.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::images::{index, E};
use common::podman::PodmanEnv;
use common::real_registry::RealRegistry;
use common::{skip, text};

/// A line the image's profile adds to PATH, as an SDK's profile.d
/// script does.
const PROFILE_D_BIN: &str = "/opt/sdk/bin";
/// The directory ~/.bash_profile adds to PATH (rootless user only: the
/// rootful user is the host's root, whose home the test must not edit).
const BASH_PROFILE_BIN: &str = ".mtbx-parity/bin";

/// Variables Toolbx forwards that a desktop session sets, with values.
const FORWARDED: &[(&str, &str)] = &[
    ("XAUTHORITY", "/tmp/.mtbx-parity-xauth"),
    ("HISTSIZE", "4321"),
    ("HISTFILESIZE", "8765"),
    ("LANGUAGE", "de:en"),
    ("LC_TIME", "C.UTF-8"),
    ("VTE_VERSION", "7600"),
    ("KONSOLE_VERSION", "230805"),
    ("XDG_SESSION_TYPE", "wayland"),
    ("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/mtbx-parity"),
];

struct Parity {
    env: PodmanEnv,
    _reg: RealRegistry,
    image: String,
    mtbx: PathBuf,
    /// Debian architectures in the image (amd64 always; arm64 when its
    /// QEMU is here).
    arches: Vec<&'static str>,
    user: mtbx::toolbox::HostUser,
    /// A host directory under /tmp, shared with the containers.
    scratch: tempfile::TempDir,
}

fn static_mtbx(test: &str) -> Option<PathBuf> {
    let p = std::env::var_os("MTBX_STATIC_BIN").map(PathBuf::from).filter(|p| p.is_file());
    if p.is_none() {
        skip(test, "needs the static mtbx build in MTBX_STATIC_BIN (scripts/test.sh sets it)");
    }
    p
}

impl Parity {
    fn new(test: &str, rootless: bool) -> Option<Parity> {
        let mtbx = static_mtbx(test)?;
        let env = if rootless { PodmanEnv::rootless(test)? } else { PodmanEnv::rootful(test)? };
        let mut arches = vec!["amd64"];
        if common::have_qemu(mtbx::emu::arch::Arch::parse("arm64").unwrap()) {
            arches.push("arm64");
        } else {
            skip(test, "no static QEMU for arm64 (apt-get install qemu-user-static): amd64 only");
        }
        let profile = format!("export PATH=\"{PROFILE_D_BIN}:$PATH\"\n").into_bytes();
        let extra =
            [E::Dir("etc/profile.d", 0o755), E::File("etc/profile.d/mtbx-parity-sdk.sh", 0o644, profile)];
        let mut built = Vec::new();
        for a in &arches {
            let tar = common::debian::rootfs(test, a)?;
            built.push(common::debian::image(&tar, a, &extra));
        }
        let reg = RealRegistry::start(test)?;
        reg.push("debian-toolbox", "12", &index(&built.iter().collect::<Vec<_>>()));
        let image = format!("{}/debian-toolbox:12", reg.addr);
        let mtbx = env.reachable(&mtbx, "mtbx-static");
        let user = match &env.user {
            Some(u) => mtbx::toolbox::HostUser {
                name: u.name.clone(),
                uid: u.uid,
                gid: u.gid,
                home: u.home.clone(),
                shell: host_passwd(&u.name).map(|f| PathBuf::from(&f[6])).unwrap_or("/bin/sh".into()),
            },
            None => mtbx::toolbox::HostUser::current().unwrap(),
        };
        let scratch = tempfile::Builder::new().prefix("mtbx-parity-").tempdir_in("/tmp").unwrap();
        if let Some(u) = &env.user {
            std::os::unix::fs::chown(scratch.path(), Some(u.uid), Some(u.gid)).unwrap();
        }
        Some(Parity { env, _reg: reg, image, mtbx, arches, user, scratch })
    }

    fn mtbx(&self, args: &[&str]) -> Command {
        let mut c = self.env.command(&self.mtbx, args);
        c.current_dir(&self.user.home);
        c
    }

    fn ok(&self, c: &mut Command, what: &str) -> String {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{what}: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    fn create(&self, deb_arch: &str) -> String {
        let mut args = vec!["create", "-y", "--tls-verify=false", "--image", &self.image];
        if deb_arch != "amd64" {
            args.extend(["--arch", deb_arch]);
        }
        self.ok(&mut self.mtbx(&args), "create").trim().to_string()
    }
}

impl Drop for Parity {
    fn drop(&mut self) {
        let _ = self.mtbx(&["rm", "--all", "--force"]).output();
    }
}

/// The host's passwd fields of a user.
fn host_passwd(name: &str) -> Option<Vec<String>> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .map(|l| l.split(':').map(String::from).collect::<Vec<_>>())
        .find(|f| f.len() == 7 && f[0] == name)
}

fn host_files() -> [Vec<u8>; 3] {
    ["/etc/passwd", "/etc/group", "/etc/shadow"].map(|f| std::fs::read(f).unwrap_or_default())
}

/// The base64 bodies of a PEM bundle's certificates.
fn certificates(bundle: &str) -> Vec<String> {
    bundle
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|c| c.split("-----END CERTIFICATE-----").next())
        .map(|b| b.split_whitespace().collect())
        .collect()
}

/// `key=value` lines of a report printed inside.
fn report(out: &str) -> BTreeMap<String, String> {
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// What a shell inside reports about itself; run by `mtbx run` through
/// the login shell, in the directory `mtbx` was started in.
const REPORT: &str = r#"
echo "path=$PATH"
echo "pwd=$(pwd)"
echo "uname=$(uname -m)"
echo "arch_file=$(cat /run/mtbx/arch)"
echo "arch_env=$MTBX_ARCH"
echo "toolbox_path=$TOOLBOX_PATH"
echo "markers=$(ls /run/.toolboxenv /run/.toolbxenv | wc -l)"
for v in XAUTHORITY HISTSIZE HISTFILESIZE LANGUAGE LC_TIME VTE_VERSION KONSOLE_VERSION XDG_SESSION_TYPE DBUS_SYSTEM_BUS_ADDRESS; do
    eval "echo \"env_$v=\${$v-unset}\""
done
echo "caps=$(grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status | awk '{printf "%s ", $2}')"
echo "passwd=$(getent passwd "$(id -un)")"
echo "own_group=$(getent group "$(id -g)" | cut -d: -f1,3)"
echo "sudo_group=$(getent group sudo)"
echo "groups=$(id -Gn)"
echo "machine_id=$(cat /etc/machine-id)"
echo "timezone=$(cat /etc/timezone)"
echo "localtime=$(readlink /etc/localtime)"
echo "host_conf=$(readlink /etc/host.conf)"
echo "resolv=$(readlink /etc/resolv.conf)"
echo "hostname=$(cat /proc/sys/kernel/hostname)"
echo "hosts=$(getent hosts "$(cat /proc/sys/kernel/hostname)" | awk '{print $1}')"
echo "tmp_probe=$(cat "PROBE" 2>&1)"
"#;

fn check_run(p: &Parity, name: &str, deb_arch: &str) {
    let user = &p.user;
    let probe = p.scratch.path().join("probe");
    std::fs::write(&probe, "from the host's /tmp").unwrap();
    // A directory reached through a symlink: inside, its canonical path.
    let real = p.scratch.path().join("real/project");
    std::fs::create_dir_all(&real).unwrap();
    let link = p.scratch.path().join("link");
    let _ = std::os::unix::fs::symlink(p.scratch.path().join("real"), &link);
    if let Some(u) = &p.env.user {
        for d in [p.scratch.path().join("real"), real.clone()] {
            std::os::unix::fs::chown(&d, Some(u.uid), Some(u.gid)).unwrap();
        }
    }
    let script = REPORT.replace("PROBE", &probe.display().to_string());
    let mut c = p.mtbx(&["run", "-c", name, "sh", "-c", &script]);
    c.current_dir(link.join("project"));
    for (k, v) in FORWARDED {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{name}: {}{err}", text(&out.stdout));
    let r = report(&text(&out.stdout));
    let get = |k: &str| r.get(k).map(String::as_str).unwrap_or_else(|| panic!("{name}: no {k} in {r:?}"));

    // 1. Markers and identity.
    let uname = if deb_arch == "arm64" { "aarch64" } else { "x86_64" };
    assert_eq!(get("uname"), uname, "{name}");
    assert_eq!(get("markers"), "2", "{name}: /run/.toolboxenv and /run/.toolbxenv");
    assert_eq!(get("arch_file"), deb_arch, "{name}");
    assert_eq!(get("arch_env"), deb_arch, "{name}");
    // As invoked: the canonical directory, the name as typed.
    let invoked = std::fs::canonicalize(p.mtbx.parent().unwrap()).unwrap().join(p.mtbx.file_name().unwrap());
    assert_eq!(
        get("toolbox_path"),
        invoked.display().to_string(),
        "{name}: TOOLBOX_PATH is the host's binary"
    );
    // 2. The login shell's PATH, capabilities, the canonical directory.
    assert!(
        get("path").split(':').any(|d| d == PROFILE_D_BIN),
        "{name}: /etc/profile.d applies: {}",
        get("path")
    );
    if user.uid != 0 {
        let home_bin = user.home.join(BASH_PROFILE_BIN).display().to_string();
        assert!(
            get("path").split(':').any(|d| d == home_bin),
            "{name}: ~/.bash_profile applies: {}",
            get("path")
        );
        assert_eq!(get("caps").trim(), "0000000000000000 ".repeat(4).trim(), "{name}: no capabilities");
    }
    assert_eq!(get("pwd"), real.display().to_string(), "{name}: the canonical directory");
    // 3. Forwarded variables.
    for (k, v) in FORWARDED {
        assert_eq!(get(&format!("env_{k}")), *v, "{name}: {k} forwarded");
    }
    // 4. The host's files, mounts and names.
    let host_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    assert_eq!(get("machine_id"), host_id.trim(), "{name}: the host's machine id");
    let host_zone = std::fs::read_link("/etc/localtime")
        .ok()
        .and_then(|t| t.to_str().and_then(|t| t.split_once("zoneinfo/").map(|(_, z)| z.to_string())));
    if let Some(zone) = host_zone {
        assert_eq!(get("timezone"), zone, "{name}: /etc/timezone");
        assert!(get("localtime").ends_with(&format!("zoneinfo/{zone}")), "{name}: {}", get("localtime"));
    }
    if Path::new("/etc/host.conf").is_file() {
        assert_eq!(get("host_conf"), "/run/host/etc/host.conf", "{name}");
    }
    assert!(get("resolv").starts_with("/run/host/"), "{name}: {}", get("resolv"));
    assert_eq!(get("hostname"), "toolbx", "{name}");
    assert!(!get("hosts").is_empty(), "{name}: the host name resolves");
    assert_eq!(get("tmp_probe"), "from the host's /tmp", "{name}: /tmp is the host's (X11's sockets)");
    // 5. The user.
    let fields = host_passwd(&user.name).unwrap();
    let password = if user.uid == 0 { "x" } else { "" };
    let expected = format!(
        "{}:{password}:{}:{}:{}:{}:{}",
        user.name,
        user.uid,
        user.gid,
        fields[4],
        user.home.display(),
        user.shell.display()
    );
    assert_eq!(get("passwd"), expected, "{name}: USER::UID:GID:GECOS:HOME:SHELL from the host's");
    if user.uid != 0 {
        assert_eq!(get("own_group"), format!("{}:{}", user.name, user.gid), "{name}: a group of its own");
        assert!(
            get("sudo_group").split(':').nth(3).unwrap_or("").split(',').any(|m| m == user.name),
            "{name}"
        );
    }
    // Shadow (read through sudo, which must not warn about the host name).
    let out = p
        .mtbx(&[
            "run",
            "-c",
            name,
            "sudo",
            "-n",
            "sh",
            "-c",
            "id -u; grep -c \"^$1:\" /etc/shadow; grep ^root: /etc/shadow",
            "sh",
            &user.name,
        ])
        .output()
        .unwrap();
    let said = text(&out.stdout);
    let mut lines = said.lines();
    assert_eq!(lines.next(), Some("0"), "{name}: sudo without a password: {said}{}", text(&out.stderr));
    let in_shadow = lines.next();
    if user.uid != 0 {
        assert_eq!(in_shadow, Some("0"), "{name}: the user is not in shadow");
    }
    assert!(lines.next().is_some_and(|l| l.starts_with("root::")), "{name}: root's password deleted: {said}");
    assert_eq!(text(&out.stderr), "", "{name}: sudo says nothing (no 'unable to resolve host')");

    // The host's CA trust: every certificate of the host's bundle (this
    // machine adds its own CAs to Debian's) is in the image's.
    if let Ok(host_bundle) = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt") {
        let inside = p.ok(
            &mut p.mtbx(&["run", "-c", name, "cat", "/etc/ssl/certs/ca-certificates.crt"]),
            "cat the bundle",
        );
        let inside = certificates(&inside);
        let missing = certificates(&host_bundle).into_iter().filter(|c| !inside.contains(c)).count();
        assert_eq!(missing, 0, "{name}: certificates the host trusts and the container does not");
    }

    // A directory the container lacks: the failed chdir (where Toolbx's
    // users see podman's runtime say it), Toolbx's message, then the home.
    let missing = tempfile::Builder::new().prefix("mtbx-parity-").tempdir_in("/var/tmp").unwrap();
    if let Some(u) = &p.env.user {
        std::os::unix::fs::chown(missing.path(), Some(u.uid), Some(u.gid)).unwrap();
    }
    let out = p.mtbx(&["run", "-c", name, "pwd"]).current_dir(missing.path()).output().unwrap();
    assert_eq!(text(&out.stdout).trim(), user.home.display().to_string(), "{name}");
    assert_eq!(
        text(&out.stderr),
        format!(
            "Error: chdir to `{d}`: No such file or directory\n\
             Error: directory {d} not found in container {name}\nUsing {} instead.\n",
            user.home.display(),
            d = missing.path().display(),
        ),
        "{name}"
    );

    // --preserve-fds: descriptor 3 of podman exec reaches the command.
    let fd_file = p.scratch.path().join("fd3");
    std::fs::write(&fd_file, "through fd 3\n").unwrap();
    let command = ["sh".into(), "-c".into(), "cat <&3".into()];
    let args = mtbx::toolbox::ExecSpec {
        container: name,
        user,
        cwd: None,
        env: Vec::new(),
        command: &command,
        tty: false,
        preserve_fds: 1,
    }
    .args();
    let mut sh_args: Vec<String> =
        vec!["-c".into(), "exec 3<\"$FD3\"; exec podman \"$@\"".into(), "sh".into()];
    sh_args.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
    let sh_args: Vec<&str> = sh_args.iter().map(String::as_str).collect();
    let out = p.env.command(Path::new("sh"), &sh_args).env("FD3", &fd_file).output().unwrap();
    assert_eq!(text(&out.stdout), "through fd 3\n", "{name}: {}", text(&out.stderr));

    // 7. Labels.
    let label = p.env.podman_ok(&["inspect", "--format", "{{index .Config.Labels \"toolbox-arch\"}}", name]);
    match deb_arch {
        "amd64" => {
            assert!(matches!(label.trim(), "" | "<no value>"), "{name}: native, no toolbox-arch: {label}")
        }
        _ => assert_eq!(label.trim(), "linux/arm64", "{name}: the toolbox-arch label"),
    }
}

/// `mtbx enter` on a terminal (script(1) gives it one): the prompt shows
/// a foreign architecture, the login shell's PATH is there, Ctrl-P
/// reaches bash (its history), and Toolbx's OSC 777 escapes surround it.
fn check_enter(p: &Parity, name: &str, deb_arch: &str) {
    let cmd = format!("{} enter {name}", p.mtbx.display());
    let mut child = p
        .env
        .command(Path::new("script"), &["-qec", &cmd, "/dev/null"])
        .current_dir(&p.user.home)
        // Forwarded as Toolbx does: the shell keeps no history in the home.
        .env("HISTFILE", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Ctrl-P (0x10) recalls the last command: it runs twice.
    child.stdin.take().unwrap().write_all(b"echo recalled-$((20+3)) $PATH\n\x10\nexit 4\n").unwrap();
    let out: Output = child.wait_with_output().unwrap();
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{name}: {o}");
    assert!(o.matches("recalled-23").count() >= 2, "{name}: Ctrl-P reaches the shell: {o}");
    assert!(o.contains(PROFILE_D_BIN), "{name}: the login shell's PATH: {o}");
    let push = mtbx::toolbox::osc_container_push(name, p.user.uid);
    assert!(
        o.contains(&push) && o.contains(&mtbx::toolbox::osc_container_pop(p.user.uid)),
        "{name}: OSC 777: {o:?}"
    );
    if deb_arch != "amd64" {
        assert!(o.contains(&format!("({deb_arch})")), "{name}: the prompt names the architecture: {o}");
    } else {
        assert!(!o.contains("(amd64)"), "{name}: a native prompt is as the image makes it: {o}");
    }
}

fn parity(rootless: bool) {
    let test = if rootless {
        "rootless_debian_toolbox_has_toolbx_parity"
    } else {
        "rootful_debian_toolbox_has_toolbx_parity"
    };
    if Command::new("script").arg("--version").output().is_err() {
        return skip(test, "script(1) not installed (bsdutils): it gives enter a terminal");
    }
    let binfmt_before = common::host_binfmt_snapshot();
    let files_before = host_files();
    let Some(p) = Parity::new(test, rootless) else { return };
    // The test user's ~/.bash_profile adds a directory to PATH; whatever
    // was there before comes back afterwards, even when a check fails.
    let _profile = p.env.user.as_ref().map(|u| {
        let path = u.home.join(".bash_profile");
        let before = std::fs::read(&path).ok();
        let mut text = before.clone().unwrap_or_default();
        text.extend_from_slice(format!("\nexport PATH=\"$HOME/{BASH_PROFILE_BIN}:$PATH\"\n").as_bytes());
        std::fs::write(&path, text).unwrap();
        std::os::unix::fs::chown(&path, Some(u.uid), Some(u.gid)).unwrap();
        Restore { path, before }
    });
    // Debian's sudo leaves a note in the home of a user in group sudo.
    let _sudo_note = p.env.user.as_ref().map(|u| {
        let path = u.home.join(".sudo_as_admin_successful");
        Restore { before: std::fs::read(&path).ok(), path }
    });
    for a in p.arches.clone() {
        let name = p.create(a);
        check_run(&p, &name, a);
        check_enter(&p, &name, a);
    }
    drop(p);
    assert_eq!(common::host_binfmt_snapshot(), binfmt_before, "the host's binfmt_misc is untouched");
    assert!(host_files() == files_before, "the host's passwd, group and shadow are untouched");
}

/// A file put back as it was (or removed, if it was not there) on drop.
struct Restore {
    path: PathBuf,
    before: Option<Vec<u8>>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = match &self.before {
            Some(b) => std::fs::write(&self.path, b),
            None => std::fs::remove_file(&self.path),
        };
    }
}

#[test]
fn rootful_debian_toolbox_has_toolbx_parity() {
    parity(false);
}

#[test]
fn rootless_debian_toolbox_has_toolbx_parity() {
    parity(true);
}
