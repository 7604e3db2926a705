//! The two halves of mtbx that run inside a toolbox container, natively
//! (the static binary is bind-mounted in), whatever the container's
//! architecture:
//!
//! - `init-container`, the entrypoint: a binfmt_misc instance of the
//!   container's own user namespace with QEMU registered (flags P, F and C,
//!   so setuid programs such as sudo work), proof that a program of the
//!   container's architecture runs, then what Toolbx's init-container sets
//!   up (markers, the user, the host's files, mounts and CA trust), a
//!   readiness stamp; then it waits to be stopped. It reports in
//!   `mtbx-init:` lines on stderr, which land in the container's log where
//!   create/enter show them.
//! - `container-exec`, what `run`/`enter` execute through `podman exec`:
//!   become the user without capabilities, go to the directory, run the
//!   command through a login shell.
//!
//! docs/toolbx-parity.md compares each step with Toolbx's.

use std::ffi::{CString, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::emu::arch::Arch;
use crate::emu::binfmt::{BinfmtFs, Flags, Registration};
use crate::fsutil::write_atomic;
use crate::toolbox;

/// What init-container is told by `podman create`.
#[derive(Debug, Clone)]
pub struct InitArgs {
    /// The container's platform.
    pub arch: &'static Arch,
    /// The host user.
    pub user: toolbox::HostUser,
    /// The interpreter inside the container (foreign platforms).
    pub qemu: Option<PathBuf>,
    /// The QEMU CPU model every program runs under (`create --cpu`).
    pub cpu: Option<String>,
}

/// Why init-container stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InitError(String);

/// Log lines for create/enter, each prefixed: `prefix` is
/// [`ERROR_PREFIX`] or [`WARNING_PREFIX`].
fn say(prefix: &str, msg: &str) {
    for line in msg.lines() {
        eprintln!("{prefix}{line}");
    }
}

/// Toolbx's test hooks for its entry point, honoured so the same tests
/// exercise mtbx's failure paths: TOOLBX_DELAY_ENTRY_POINT=N waits N
/// seconds before the set-up, TOOLBX_FAIL_ENTRY_POINT=N fails it (with a
/// second line when N > 1).
fn test_hooks() -> Result<(), InitError> {
    let positive = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok()).filter(|n| *n > 0);
    if let Some(secs) = positive("TOOLBX_DELAY_ENTRY_POINT") {
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
    match positive("TOOLBX_FAIL_ENTRY_POINT") {
        None => Ok(()),
        Some(1) => Err(InitError("TOOLBX_FAIL_ENTRY_POINT is set".into())),
        Some(_) => Err(InitError(
            "TOOLBX_FAIL_ENTRY_POINT is set\nThis environment variable should only be set when testing."
                .into(),
        )),
    }
}

/// The log lines create/enter look for to show a failure.
pub const ERROR_PREFIX: &str = "mtbx-init: error: ";
/// The log lines enter/run pass on as warnings.
pub const WARNING_PREFIX: &str = "mtbx-init: warning: ";

/// Whether this process runs in a container mtbx created: podman's
/// /run/.containerenv and mtbx's stamp mount are both there. init-container
/// rewrites /etc/passwd and friends; on a host that would be a disaster.
pub fn in_mtbx_container() -> bool {
    Path::new("/run/.containerenv").is_file() && Path::new(toolbox::STAMP_DIR).is_dir()
}

/// Run init-container: set up, stamp, wait for SIGTERM. Returns the exit code.
pub fn init_container(args: &InitArgs) -> i32 {
    if !in_mtbx_container() {
        eprintln!(
            "mtbx: error: init-container is the entrypoint of containers `mtbx create` makes, and changes the system it runs on; this is not one (no /run/.containerenv and {})",
            toolbox::STAMP_DIR
        );
        return 2;
    }
    match test_hooks().and_then(|()| setup(args)) {
        Ok(()) => {
            eprintln!("mtbx-init: ready");
            // Toolbx's last start-up line: tools that wait for a Toolbx
            // container's set-up (its own tests among them) look for it.
            eprintln!("Listening to file system and ticker events");
            wait_for_stop();
            0
        }
        Err(e) => {
            say(ERROR_PREFIX, &e.0);
            1
        }
    }
}

fn setup(args: &InitArgs) -> Result<(), InitError> {
    let err = |what: &str, e: &dyn std::fmt::Display| InitError(format!("{what}: {e}"));
    if let Some(qemu) = &args.qemu {
        crate::emu::elf::check_static(qemu, Arch::host())
            .map_err(|e| err("the interpreter is not usable", &e))?;
        register(args.arch, qemu, args.cpu.as_deref())?;
        verify(args.arch)?;
    }
    mark(args).map_err(|e| err("cannot write the toolbox markers", &e))?;
    link_host_dirs(Path::new("/"), &args.user);
    setup_user(&args.user).map_err(|e| err("cannot set up the user", &e))?;
    link_host_files(Path::new("/"));
    bind_host_paths();
    configure_kerberos_and_rpm(Path::new("/"));
    trust_host_cas(Path::new("/"));
    let stamp = toolbox::stamp_file(Path::new(toolbox::STAMP_DIR));
    write_atomic(&stamp, toolbox::stamp_text().as_bytes(), 0o644)
        .map_err(|e| err("cannot write the ready stamp", &e))?;
    // The user's, so that `mtbx rm` (run as the user) can remove it.
    let _ = std::os::unix::fs::chown(&stamp, Some(args.user.uid), Some(args.user.gid));
    Ok(())
}

/// The container's own binfmt_misc instance, with the interpreter
/// registered with [`Flags::CONTAINER`] (P, O, C, F). On a
/// kernel without per-namespace instances, an entry the host already has
/// is used, with a warning. With a CPU model, the entry's interpreter is
/// the model's shim ([`crate::emu::cpu`]): a link under /run/mtbx to the
/// bind-mounted mtbx, whose path names the model and the interpreter; a
/// host entry cannot carry a model, so then there is no fallback.
fn register(arch: &Arch, qemu: &Path, cpu: Option<&str>) -> Result<(), InitError> {
    let fs = BinfmtFs::default();
    match fs.mount() {
        Ok(()) => {
            let reg = match cpu {
                None => Registration::for_arch(arch, qemu, Flags::CONTAINER),
                Some(model) => crate::emu::cpu::shim_registration(
                    arch,
                    qemu,
                    model,
                    &Path::new(toolbox::HOST_DIR).join("mtbx"),
                    Path::new(RUN_DIR),
                    Flags::CONTAINER,
                )
                .map_err(|e| InitError(format!("cannot register CPU model {model}: {e}")))?,
            };
            match fs.register(&reg) {
                Ok(()) => Ok(()),
                Err(e) if fs.entry(&reg.name).is_ok() => {
                    say(WARNING_PREFIX, &format!("{} already registered ({e}); using it", reg.name));
                    Ok(())
                }
                Err(e) => Err(InitError(format!(
                    "cannot register {} in the container's binfmt_misc: {e}",
                    reg.name
                ))),
            }
        }
        Err(mount_err) if cpu.is_some() => Err(InitError(format!(
            "cannot mount a binfmt_misc instance ({mount_err}); a CPU model needs one of the container's own (Linux >= 6.7)"
        ))),
        Err(mount_err) => {
            let host = crate::emu::host::HostBinfmt::read(&fs);
            match host.entry_for(arch) {
                Some(e) => {
                    say(
                        WARNING_PREFIX,
                        &format!(
                            "no binfmt_misc of the container's own (Linux >= 6.7 gives one; {mount_err}); using the host's entry {}, whose interpreter must exist inside the container",
                            e.name
                        ),
                    );
                    Ok(())
                }
                None => Err(InitError(format!(
                    "cannot mount a binfmt_misc instance ({mount_err}) and the host has no entry for {}: use Linux >= 6.7, or run `sudo mtbx binfmt register --arch {}` on the host",
                    arch.platform(),
                    arch.short_name()
                ))),
            }
        }
    }
}

/// Run the project's test program of this architecture and check what its
/// uname says.
fn verify(arch: &Arch) -> Result<(), InitError> {
    let path = PathBuf::from(format!("/tmp/.mtbx-check-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&path, crate::emu::testprog::program(arch))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
    };
    write().map_err(|e| InitError(format!("cannot write the check program: {e}")))?;
    let out = std::process::Command::new(&path).output();
    let _ = std::fs::remove_file(&path);
    let out =
        out.map_err(|e| InitError(format!("a program for {} does not run here: {e}", arch.platform())))?;
    let got = crate::emu::testprog::parse_output(&out.stdout);
    if !out.status.success() || !arch.uname.contains(&got.as_str()) {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.lines().next().unwrap_or("").trim();
        return Err(InitError(format!(
            "a program for {} printed {got:?} and exited with {}{}: is the interpreter really for {}?",
            arch.platform(),
            out.status.code().map_or("a signal".to_string(), |c| c.to_string()),
            if said.is_empty() { String::new() } else { format!(" ({said})") },
            arch.platform()
        )));
    }
    Ok(())
}

/// The host user as Toolbx's useradd makes it, written natively so that
/// images without useradd, passwd or sudo work too: a passwd entry with an
/// empty password field and the host's GECOS (`USER::UID:GID:GECOS:HOME:SHELL`,
/// kept out of shadow so that field is the password), a group of its own,
/// membership of `sudo` or `wheel` (whichever the image has, `sudo` first
/// as Toolbx looks), root's password deleted, and password-less sudo where
/// sudo exists. A shell the container lacks becomes /bin/sh.
pub fn setup_user(u: &toolbox::HostUser) -> std::io::Result<()> {
    setup_user_in(Path::new("/"), u)
}

/// [`setup_user`] under `root` (tests use a scratch directory); the
/// host's passwd is read from `root`/run/host/etc/passwd.
pub fn setup_user_in(root: &Path, u: &toolbox::HostUser) -> std::io::Result<()> {
    let etc = root.join("etc");
    let shell = if root.join(u.shell.strip_prefix("/").unwrap_or(&u.shell)).exists() {
        u.shell.display().to_string()
    } else {
        "/bin/sh".to_string()
    };
    let uid = u.uid.to_string();
    let groups = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
    if !groups.lines().any(|l| l.split(':').nth(2) == Some(&u.gid.to_string())) {
        let taken = groups.lines().any(|l| l.split(':').next() == Some(&u.name));
        let name = if taken { format!("{}-{}", u.name, u.gid) } else { u.name.clone() };
        append_line(&etc.join("group"), &format!("{name}:x:{}:", u.gid))?;
    }
    if u.uid != 0 {
        add_to_sudo_group(&etc.join("group"), &u.name)?;
    }
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap_or_default();
    // root keeps its password field (deleted in shadow below); the user's
    // is empty, as `useradd --password ""` leaves it. busybox's own passwd
    // reader (static busybox images) drops a record whose password field
    // is empty, so there the user gets the classic form: `x`, and an empty
    // password in shadow.
    let classic = busybox_userland(root);
    let password = if u.uid == 0 {
        passwd
            .lines()
            .find(|l| l.split(':').next() == Some("root"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("x")
    } else if classic {
        "x"
    } else {
        ""
    };
    let gecos = host_gecos(root, u.uid).unwrap_or_else(|| u.name.clone());
    let passwd_line =
        format!("{}:{password}:{}:{}:{gecos}:{}:{}", u.name, u.uid, u.gid, u.home.display(), shell);
    replace_or_append(
        &etc.join("passwd"),
        |l| l.split(':').next() == Some(&u.name) || l.split(':').nth(2) == Some(&uid),
        &passwd_line,
    )?;
    if etc.join("shadow").exists() {
        edit_lines(&etc.join("shadow"), |l| {
            let mut f: Vec<&str> = l.split(':').collect();
            match f.first() {
                Some(&n) if n == u.name && u.uid != 0 => None,
                Some(&"root") if f.len() > 1 => {
                    f[1] = "";
                    Some(f.join(":"))
                }
                _ => Some(l.to_string()),
            }
        })?;
        if classic && u.uid != 0 {
            append_line(&etc.join("shadow"), &format!("{}::19000:0:99999:7:::", u.name))?;
        }
    } else if !classic {
        edit_lines(&etc.join("passwd"), |l| match l.split_once(':') {
            Some(("root", rest)) => Some(format!("root::{}", rest.split_once(':').map_or("", |r| r.1))),
            _ => Some(l.to_string()),
        })?;
    }
    if u.uid != 0 && (etc.join("sudoers").exists() || etc.join("sudoers.d").is_dir()) {
        write_atomic(
            &etc.join("sudoers.d/mtbx"),
            format!("{} ALL=(ALL) NOPASSWD: ALL\n", u.name).as_bytes(),
            0o440,
        )?;
    }
    Ok(())
}

/// Whether the image's programs are busybox's applets (its /bin/sh is a
/// link to busybox), which read passwd with busybox's own parser.
fn busybox_userland(root: &Path) -> bool {
    std::fs::read_link(root.join("bin/sh")).is_ok_and(|t| t.file_name().is_some_and(|n| n == "busybox"))
}

/// The GECOS field of `uid` in the host's passwd (as /run/host shows it),
/// empty when the host's is; None for users the host's files do not list
/// (LDAP, SSSD), who get their login name.
fn host_gecos(root: &Path, uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string(root.join("run/host/etc/passwd")).ok()?;
    let uid = uid.to_string();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && f[2] == uid)
        .map(|f| f[4].to_string())
}

/// Add `user` to the members of `sudo`, or else `wheel`, when the image has one.
fn add_to_sudo_group(group: &Path, user: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(group).unwrap_or_default();
    let Some(name) =
        ["sudo", "wheel"].into_iter().find(|g| text.lines().any(|l| l.split(':').next() == Some(g)))
    else {
        return Ok(());
    };
    edit_lines(group, |l| {
        let mut f: Vec<String> = l.split(':').map(String::from).collect();
        if f.len() != 4 || f[0] != name || f[3].split(',').any(|m| m == user) {
            return Some(l.to_string());
        }
        if !f[3].is_empty() {
            f[3].push(',');
        }
        f[3].push_str(user);
        Some(f.join(":"))
    })
}

/// Rewrite a file line by line (None drops a line), keeping its mode.
fn edit_lines(path: &Path, edit: impl Fn(&str) -> Option<String>) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut out: String = text.lines().filter_map(edit).collect::<Vec<_>>().join("\n");
    out.push('\n');
    if out != text {
        rewrite(path, &out)?;
    }
    Ok(())
}

fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    rewrite(path, &text)
}

fn replace_or_append(path: &Path, matches: impl Fn(&str) -> bool, line: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<&str> = text.lines().filter(|l| !matches(l)).collect();
    out.push(line);
    let mut joined = out.join("\n");
    joined.push('\n');
    rewrite(path, &joined)
}

/// Replace a system file atomically with its mode and owner kept: shadow
/// belongs to group shadow on Debian, and unix_chkpwd reads it as that.
fn rewrite(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok();
    write_atomic(path, text.as_bytes(), mode_of(path, 0o644))?;
    if let Some(m) = meta {
        let _ = std::os::unix::fs::chown(path, Some(m.uid()), Some(m.gid()));
    }
    Ok(())
}

fn mode_of(path: &Path, default: u32) -> u32 {
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(default)
}

/// Where mtbx tells programs inside about the container.
pub const RUN_DIR: &str = "/run/mtbx";

/// The prompt script for foreign containers. Debian's and Ubuntu's bash
/// prompts show `$debian_chroot` in parentheses (their ~/.bashrc sets PS1
/// again after the profile, with it); elsewhere the prompt gets a prefix.
/// Named to run after the images' own (Fedora's toolbox.sh sets PS1).
const PROMPT_SCRIPT: &str = r#"# Written by mtbx: this container runs another architecture under QEMU,
# and the prompt says which, so emulated shells stand out.
if [ -n "${MTBX_ARCH-}" ] && [ -n "${PS1-}" ]; then
    case "$PS1" in
        *debian_chroot*) debian_chroot="${debian_chroot:-$MTBX_ARCH}" ;;
        *"[$MTBX_ARCH]"*) ;;
        *) PS1="[$MTBX_ARCH] $PS1" ;;
    esac
fi
"#;

/// The markers programs and profile scripts look for: Toolbx's
/// /run/.toolboxenv and /run/.toolbxenv (the images' prompt and welcome
/// scripts key on them), and mtbx's own /run/mtbx/arch (`arm64`), with
/// /run/mtbx/emulated naming the interpreter of a foreign container, whose
/// prompt then shows the architecture.
fn mark(args: &InitArgs) -> std::io::Result<()> {
    mark_in(Path::new("/"), args)
}

fn mark_in(root: &Path, args: &InitArgs) -> std::io::Result<()> {
    for f in ["run/.toolboxenv", "run/.toolbxenv"] {
        std::fs::OpenOptions::new().create(true).append(true).open(root.join(f))?;
    }
    let run = root.join(RUN_DIR.trim_start_matches('/'));
    crate::fsutil::mkdir_all(&run, 0o755)?;
    write_atomic(&run.join("arch"), format!("{}\n", args.arch.short_name()).as_bytes(), 0o644)?;
    // The CPU model, for programs and people inside (`cat /run/mtbx/cpu`).
    match &args.cpu {
        Some(model) => write_atomic(&run.join("cpu"), format!("{model}\n").as_bytes(), 0o644)?,
        None => {
            let _ = std::fs::remove_file(run.join("cpu"));
        }
    }
    let emulated = run.join("emulated");
    let prompt = root.join("etc/profile.d/zz-mtbx-arch.sh");
    match &args.qemu {
        Some(q) => {
            write_atomic(&emulated, format!("{}\n", q.display()).as_bytes(), 0o644)?;
            if prompt.parent().is_some_and(Path::is_dir) {
                write_atomic(&prompt, PROMPT_SCRIPT.as_bytes(), 0o644)?;
            }
        }
        None => {
            let _ = std::fs::remove_file(&emulated);
        }
    }
    Ok(())
}

/// The host's links among /home, /media and /mnt (Fedora Atomic:
/// /home -> var/home, /mnt -> var/mnt, /media -> run/media), made inside
/// too, as Toolbx's --home-link, --media-link and --mnt-link do; and the
/// user's passwd home linked to the canonical one create mounted, when
/// they differ and the container lacks the passwd path.
fn link_host_dirs(root: &Path, u: &toolbox::HostUser) {
    let host = root.join("run/host");
    for dir in ["home", "media", "mnt"] {
        let Ok(target) = std::fs::read_link(host.join(dir)) else { continue };
        let target = Path::new("/").join(target.strip_prefix("/").unwrap_or(&target));
        let local = root.join(dir);
        if std::fs::read_link(&local).is_ok() {
            continue;
        }
        // Only an empty directory gives way, as in Toolbx.
        let _ = std::fs::remove_dir(&local);
        let made = crate::fsutil::mkdir_all(&root.join(target.strip_prefix("/").unwrap_or(&target)), 0o755)
            .and_then(|()| std::os::unix::fs::symlink(&target, &local));
        if let Err(e) = made {
            say(WARNING_PREFIX, &format!("cannot link /{dir} to {} as the host does: {e}", target.display()));
        }
    }
    let home = root.join(u.home.strip_prefix("/").unwrap_or(&u.home));
    if home.exists() {
        return;
    }
    if let Some(canonical) = resolve_under(&host, &u.home).filter(|c| c != &u.home) {
        let made = home
            .parent()
            .map_or(Ok(()), |p| crate::fsutil::mkdir_all(p, 0o755))
            .and_then(|()| std::os::unix::fs::symlink(&canonical, &home));
        if let Err(e) = made {
            say(WARNING_PREFIX, &format!("cannot link {} to {}: {e}", u.home.display(), canonical.display()));
        }
    }
}

/// `path` with every symlink resolved as the host sees it, reading the
/// host's tree at `host` (absolute link targets mean the host's root).
fn resolve_under(host: &Path, path: &Path) -> Option<PathBuf> {
    let mut done = PathBuf::from("/");
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_os_string()),
            std::path::Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&part);
        match std::fs::read_link(host.join(next.strip_prefix("/").ok()?)) {
            Ok(t) => {
                links += 1;
                if links > 40 {
                    return None;
                }
                if t.is_absolute() {
                    done = PathBuf::from("/");
                }
                for c in t.components().rev() {
                    match c {
                        std::path::Component::Normal(n) => todo.push(n.to_os_string()),
                        std::path::Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            Err(_) => done = next,
        }
    }
    Some(done)
}

/// The host's name resolution, host.conf and time zone, as Toolbx links
/// them (absolute symlinks on the host are followed under /run/host), and
/// one thing better: the container's host name resolves. Toolbx links
/// /etc/hosts to the host's, which does not know `toolbx`, so sudo warns
/// "unable to resolve host toolbx" on every call; when the host's file
/// lacks the name, mtbx writes a copy with it added, at every start.
fn link_host_files(root: &Path) {
    let host = root.join("run/host");
    for f in ["etc/resolv.conf", "etc/host.conf"] {
        if let Some(target) = host_target(&host, f) {
            relink(&root.join(f), &target);
        }
    }
    let hostname =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    if let Ok(hosts) = std::fs::read_to_string(host.join("etc/hosts")) {
        let local = root.join("etc/hosts");
        if hostname.is_empty() || resolves(&hosts, &hostname) {
            if let Some(target) = host_target(&host, "etc/hosts") {
                relink(&local, &target);
            }
        } else {
            let mut text = hosts;
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "# Added by mtbx: the container's host name, so that sudo finds it.\n127.0.1.1\t{hostname}\n"
            ));
            let _ = std::fs::remove_file(&local);
            if let Err(e) = write_atomic(&local, text.as_bytes(), 0o644) {
                say(WARNING_PREFIX, &format!("cannot write {}: {e}", local.display()));
            }
        }
    }
    link_time_zone(root);
}

/// Whether an /etc/hosts text maps `name`.
fn resolves(hosts: &str, name: &str) -> bool {
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .any(|l| l.split_whitespace().skip(1).any(|n| n == name))
}

/// The container-side path to the host's `f` (relative to the host's /):
/// the host's own file under /run/host, or, when it is an absolute
/// symlink (resolv.conf -> /run/systemd/resolve/stub-resolv.conf), its
/// target under /run/host. None when nothing is there.
fn host_target(host: &Path, f: &str) -> Option<PathBuf> {
    let file = host.join(f);
    let target = match std::fs::read_link(&file) {
        Ok(t) if t.is_absolute() => host.join(t.strip_prefix("/").unwrap_or(&t)),
        _ => file,
    };
    target.exists().then(|| Path::new("/run/host").join(target.strip_prefix(host).unwrap_or(&target)))
}

fn relink(local: &Path, target: &Path) {
    if std::fs::read_link(local).is_ok_and(|t| t == target) {
        return;
    }
    let _ = std::fs::remove_file(local);
    if let Err(e) = std::os::unix::fs::symlink(target, local) {
        say(WARNING_PREFIX, &format!("cannot link {} to the host's: {e}", local.display()));
    }
}

/// /etc/localtime pointing where the host's points (the same
/// /usr/share/zoneinfo/ZONE when the image has the zone, else the host's
/// file under /run/host, whose path still names the zone), and
/// /etc/timezone saying the zone, as Toolbx writes it; UTC when the host
/// has no /etc/localtime.
fn link_time_zone(root: &Path) {
    let host = root.join("run/host");
    let link = std::fs::read_link(host.join("etc/localtime")).ok();
    let zone = link
        .as_ref()
        .and_then(|t| t.to_str())
        .and_then(|t| t.split_once("zoneinfo/").map(|(_, z)| z.to_string()))
        .or_else(|| std::fs::read_to_string(host.join("etc/timezone")).ok().map(|z| z.trim().to_string()))
        .filter(|z| !z.is_empty() && !z.split('/').any(|c| c == ".."));
    let localtime = root.join("etc/localtime");
    let image_zone = zone.as_ref().map(|z| Path::new("/usr/share/zoneinfo").join(z));
    match image_zone {
        Some(z) if root.join(z.strip_prefix("/").unwrap_or(&z)).is_file() => relink(&localtime, &z),
        _ => match host_target(&host, "etc/localtime").or_else(|| {
            // A relative link on the host (../usr/share/zoneinfo/ZONE).
            zone.as_ref().map(|z| Path::new("/run/host/usr/share/zoneinfo").join(z))
        }) {
            Some(t) if root.join(t.strip_prefix("/").unwrap_or(&t)).exists() => relink(&localtime, &t),
            _ => {}
        },
    }
    let zone = if host.join("etc/localtime").exists() { zone } else { Some("UTC".into()) };
    if let Some(z) = zone {
        let tz = root.join("etc/timezone");
        let _ = std::fs::remove_file(&tz);
        if let Err(e) = write_atomic(&tz, format!("{z}\n").as_bytes(), 0o644) {
            say(WARNING_PREFIX, &format!("cannot write {}: {e}", tz.display()));
        }
    }
}

/// What Toolbx's init-container bind-mounts from the host (under
/// /run/host) at the same place, and with which propagation: the machine
/// id, systemd's and udev's runtime state, libvirt, Flatpak, the journal,
/// core dumps, /tmp (X11's sockets live in /tmp/.X11-unix) and /var/mnt.
const HOST_BINDS: &[(&str, bool)] = &[
    ("/etc/machine-id", false),
    ("/run/libvirt", false),
    ("/run/systemd/journal", false),
    ("/run/systemd/resolve", false),
    ("/run/systemd/sessions", false),
    ("/run/systemd/system", false),
    ("/run/systemd/users", false),
    ("/run/udev/data", false),
    ("/run/udev/tags", false),
    ("/tmp", true),
    ("/var/lib/flatpak", false),
    ("/var/lib/libvirt", false),
    ("/var/lib/systemd/coredump", false),
    ("/var/log/journal", false),
    ("/var/mnt", true),
];

/// Bind-mount [`HOST_BINDS`] that exist on the host; a failure is a
/// warning (the container still works without, say, the journal).
fn bind_host_paths() {
    for &(path, slave) in HOST_BINDS {
        let source = Path::new("/run/host").join(path.trim_start_matches('/'));
        if let Err(e) = bind(&source, Path::new(path), slave) {
            say(WARNING_PREFIX, &format!("cannot mount the host's {path}: {e}"));
        }
    }
    // SELinux labels of the host mean nothing inside; Toolbx hides them.
    if Path::new("/sys/fs/selinux").is_dir() {
        let _ = bind(Path::new("/usr/share/empty"), Path::new("/sys/fs/selinux"), false);
    }
}

fn bind(source: &Path, target: &Path, slave: bool) -> std::io::Result<()> {
    use nix::mount::{mount, MsFlags};
    let Ok(meta) = std::fs::metadata(source) else { return Ok(()) };
    if meta.is_dir() {
        crate::fsutil::mkdir_all(target, 0o755)?;
    } else {
        if let Some(p) = target.parent() {
            crate::fsutil::mkdir_all(p, 0o755)?;
        }
        if !target.exists() {
            std::fs::OpenOptions::new().create(true).append(true).open(target)?;
        }
    }
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)?;
    if slave {
        mount(None::<&str>, target, None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)?;
    }
    Ok(())
}

/// System CA bundles, where each distribution family keeps the one file
/// TLS clients (apt's GnuTLS, dnf's libcurl, OpenSSL) read: Debian, Ubuntu
/// and Alpine; Fedora, RHEL and Arch (p11-kit's extract); openSUSE.
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/var/lib/ca-certificates/ca-bundle.pem",
];

const CA_BEGIN: &str = "# mtbx: certificates the host trusts and this image lacks (rewritten at every start)";
const CA_END: &str = "# mtbx: end";

/// The host's CA trust inside: certificates in the host's bundle that the
/// image's bundle lacks (a corporate or proxy CA the host added) are
/// appended to the image's bundle, in a marked section rewritten at every
/// start, so apt and dnf inside reach what the host reaches. The file is
/// written, not bind-mounted: the image's ca-certificates package must
/// stay able to replace it (an update drops the section until the next
/// start). Toolbx instead starts a p11-kit server on the host, which only
/// clients that read trust through p11-kit see.
fn trust_host_cas(root: &Path) {
    let host = root.join("run/host");
    let Some(host_text) = CA_BUNDLES.iter().find_map(|b| {
        resolve_under(&host, Path::new(b))
            .and_then(|p| std::fs::read_to_string(host.join(p.strip_prefix("/").ok()?)).ok())
    }) else {
        return;
    };
    for b in CA_BUNDLES {
        let bundle = root.join(b.trim_start_matches('/'));
        if bundle.is_symlink() || !bundle.is_file() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&bundle) else { continue };
        if let Some(merged) = merge_cas(&text, &host_text) {
            if let Err(e) = rewrite(&bundle, &merged) {
                say(WARNING_PREFIX, &format!("cannot add the host's CA certificates to {b}: {e}"));
            }
        }
    }
}

/// `image` without a previous mtbx section, plus a section of the PEM
/// certificates of `host` it lacks; None when that changes nothing.
fn merge_cas(image: &str, host: &str) -> Option<String> {
    let own = match (image.find(CA_BEGIN), image.find(CA_END)) {
        (Some(b), Some(e)) if e > b => {
            let end = image[e..].find('\n').map_or(image.len(), |n| e + n + 1);
            format!("{}{}", image[..b].trim_end_matches('\n'), &image[end..]).trim_end().to_string() + "\n"
        }
        _ => image.to_string(),
    };
    let known: std::collections::HashSet<String> = pem_certificates(&own).map(|(_, body)| body).collect();
    let missing: Vec<&str> =
        pem_certificates(host).filter(|(_, body)| !known.contains(body)).map(|(pem, _)| pem).collect();
    let mut out = own;
    if !missing.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(CA_BEGIN);
        out.push('\n');
        for pem in missing {
            out.push_str(pem);
            out.push('\n');
        }
        out.push_str(CA_END);
        out.push('\n');
    }
    (out != image).then_some(out)
}

/// Each PEM certificate of a bundle: its text, and its base64 body with
/// the whitespace removed, which identifies it whatever the line breaks.
fn pem_certificates(text: &str) -> impl Iterator<Item = (&str, String)> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut rest = text;
    std::iter::from_fn(move || {
        let b = rest.find(BEGIN)?;
        let e = rest[b..].find(END)? + b + END.len();
        let pem = &rest[b..e];
        rest = &rest[e..];
        let body = pem[BEGIN.len()..pem.len() - END.len()].split_whitespace().collect();
        Some((pem, body))
    })
}

/// Kerberos through the host's KCM (sssd-kcm's socket is mounted at
/// create) where the image has krb5's drop-in directory, and RPM told not
/// to touch what is bind-mounted from the host, as Toolbx configures them.
fn configure_kerberos_and_rpm(root: &Path) {
    let krb = root.join("etc/krb5.conf.d");
    if krb.is_dir() && !krb.join("kcm_default_ccache").exists() {
        // Toolbx's very file: an image or a tool that recognises it (or a
        // container that moves between Toolbx and mtbx) sees the same.
        let text = "# Written by Toolbx\n# https://containertoolbx.org/\n#\n\
                    # # To disable the KCM credential cache, comment out the following lines.\n\n\
                    [libdefaults]\n    default_ccache_name = KCM:\n";
        if let Err(e) = write_atomic(&krb.join("kcm_default_ccache"), text.as_bytes(), 0o644) {
            say(WARNING_PREFIX, &format!("cannot configure Kerberos: {e}"));
        }
    }
    let rpm = root.join("usr/lib/rpm/macros.d");
    if rpm.is_dir() {
        let text = "# Written by Toolbx\n# https://containertoolbx.org/\n\n\
                    %_netsharedpath /dev:/media:/mnt:/proc:/sys:/tmp:/var/lib/flatpak:/var/lib/libvirt\n";
        if let Err(e) = write_atomic(&rpm.join("macros.toolbox"), text.as_bytes(), 0o644) {
            say(WARNING_PREFIX, &format!("cannot configure RPM: {e}"));
        }
    }
}

fn wait_for_stop() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT] {
        set.add(s);
    }
    let _ = set.thread_block();
    let _ = set.wait();
}

/// What `run`/`enter` execute inside: the user, the directory, the command.
#[derive(Debug, Clone)]
pub struct ExecArgs {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Login name.
    pub user: String,
    /// Home.
    pub home: PathBuf,
    /// Directory to start in when it exists inside.
    pub workdir: Option<PathBuf>,
    /// The command; empty means the user's login shell.
    pub command: Vec<OsString>,
}

/// Why container-exec could not run the command: 126 or 127 as shells
/// say, so scripts tell a missing command from the command's own failure.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Dropping to the user's ids failed.
    #[error("cannot become {user} inside the container")]
    Become {
        /// The user.
        user: String,
        /// The failed call.
        #[source]
        source: nix::errno::Errno,
    },
    /// exec failed.
    #[error("cannot run {command}")]
    Run {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Classify for ExecError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            ExecError::Run { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                crate::error::Kind::CommandNotFound
            }
            _ => crate::error::Kind::CannotExec,
        }
    }
}

/// Become the user and run the command as Toolbx runs it: through a
/// login shell (`bash --login -c 'exec "$@"'`, or `sh -l` in images
/// without bash), so /etc/profile, /etc/profile.d and ~/.bash_profile set
/// the PATHs of SDKs and toolchains; with every capability dropped, which
/// Toolbx does with capsh and mtbx natively (images without libcap's tools
/// work too); in the directory asked for, or in the home with Toolbx's
/// message when the container lacks it. An empty command is the user's
/// login shell. Returns only on failure.
pub fn container_exec(a: &ExecArgs) -> Result<std::convert::Infallible, ExecError> {
    use std::os::unix::process::CommandExt;

    use nix::unistd::{initgroups, setgid, setgroups, setuid, Gid, Uid};
    let shell = user_shell(&a.user).unwrap_or_else(|| "/bin/sh".into());
    let gid = Gid::from_raw(a.gid);
    // The user's groups as the container's /etc/group lists them (wheel,
    // sudo, ...); only the primary one when that cannot be read.
    let groups = CString::new(a.user.as_bytes())
        .map_err(|_| nix::errno::Errno::EINVAL)
        .and_then(|name| initgroups(&name, gid))
        .or_else(|_| setgroups(&[gid]));
    groups
        .and_then(|()| setgid(gid))
        .and_then(|()| setuid(Uid::from_raw(a.uid)))
        .map_err(|source| ExecError::Become { user: a.user.clone(), source })?;
    if a.uid != 0 {
        crate::sys::drop_capabilities().map_err(|e| ExecError::Become {
            user: a.user.clone(),
            source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EPERM)),
        })?;
    }
    let dir = match &a.workdir {
        Some(d) if d.is_dir() => d,
        Some(d) => {
            eprintln!("Error: directory {} not found in container {}", d.display(), container_name());
            eprintln!("Using {} instead.", a.home.display());
            &a.home
        }
        None => &a.home,
    };
    let _ = std::env::set_current_dir(dir);
    let (program, args) = login_command(&shell, &a.command);
    let source = std::process::Command::new(&program)
        .args(args)
        .env("HOME", &a.home)
        .env("USER", &a.user)
        .env("LOGNAME", &a.user)
        .env("SHELL", &shell)
        .exec();
    Err(ExecError::Run { command: program.to_string_lossy().into_owned(), source })
}

/// The program and arguments that run `command` through a login shell:
/// bash, as Toolbx uses it, or the POSIX shell where there is no bash. The
/// user's shell itself with `-l` when there is no command.
fn login_command(shell: &str, command: &[OsString]) -> (OsString, Vec<OsString>) {
    if command.is_empty() {
        return (shell.into(), vec!["-l".into()]);
    }
    let (sh, login) = match ["/bin/bash", "/usr/bin/bash"].into_iter().find(|b| Path::new(b).is_file()) {
        Some(bash) => (bash, "--login"),
        None => ("/bin/sh", "-l"),
    };
    let name = Path::new(sh).file_name().unwrap_or_default().to_os_string();
    let mut args: Vec<OsString> = vec![login.into(), "-c".into(), r#"exec "$@""#.into(), name];
    args.extend(command.iter().cloned());
    (sh.into(), args)
}

/// The container's name, as podman writes it into /run/.containerenv of
/// privileged containers.
fn container_name() -> String {
    std::fs::read_to_string("/run/.containerenv")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("name=\"").and_then(|n| n.strip_suffix('"')).map(String::from))
        })
        .unwrap_or_else(|| "this container".into())
}

fn user_shell(user: &str) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd
        .lines()
        .find(|l| l.split(':').next() == Some(user))
        .and_then(|l| l.split(':').nth(6))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    /// /etc/shadow is root:shadow 0640 on Debian: unix_chkpwd reads it as
    /// group shadow, so an edit that left it root:root broke `sudo` with
    /// a password and screen lockers. Every edit keeps owner and mode.
    #[test]
    fn an_edited_shadow_keeps_its_group_and_mode() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let shadow = dir.path().join("shadow");
        std::fs::write(&shadow, "root:*:19000:0:99999:7:::\nann:!:19000::::::\n").unwrap();
        // As root (CI) another group than the creator's proves it is kept.
        let group = if crate::sys::getuid() == 0 { 42 } else { nix::unistd::getgid().as_raw() };
        std::os::unix::fs::chown(&shadow, None, Some(group)).unwrap();
        std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o640)).unwrap();
        super::edit_lines(&shadow, |l| (!l.starts_with("ann:")).then(|| l.to_string())).unwrap();
        let m = std::fs::metadata(&shadow).unwrap();
        assert_eq!(std::fs::read_to_string(&shadow).unwrap(), "root:*:19000:0:99999:7:::\n");
        assert_eq!((m.gid(), m.mode() & 0o7777), (group, 0o640));
    }

    use super::*;

    #[test]
    fn the_user_is_added_once_and_root_keeps_its_entry() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir_all(etc.join("sudoers.d")).unwrap();
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        std::fs::write(root.path().join("bin/bash"), "").unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\nold:x:1000:1000::/home/old:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
        std::fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
        let u = toolbox::HostUser {
            name: "ann".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/ann".into(),
            shell: "/bin/zsh".into(),
        };
        setup_user_in(root.path(), &u).unwrap();
        setup_user_in(root.path(), &u).unwrap();
        let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap();
        assert_eq!(
            passwd, "root:x:0:0:root:/root:/bin/bash\nann::1000:1000:ann:/home/ann:/bin/sh\n",
            "uid 1000 taken over, zsh missing -> sh, no password (as useradd --password '')"
        );
        assert_eq!(std::fs::read_to_string(etc.join("group")).unwrap(), "root:x:0:\nann:x:1000:\n");
        assert_eq!(
            std::fs::read_to_string(etc.join("shadow")).unwrap(),
            "root::19000:0:99999:7:::\n",
            "the user is not in shadow (passwd's empty field is the password); root's password is deleted"
        );
        assert_eq!(
            std::fs::read_to_string(etc.join("sudoers.d/mtbx")).unwrap(),
            "ann ALL=(ALL) NOPASSWD: ALL\n"
        );
        let r = toolbox::HostUser {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: "/root".into(),
            shell: "/bin/bash".into(),
        };
        setup_user_in(root.path(), &r).unwrap();
        let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap();
        assert!(passwd.starts_with("ann:") && passwd.contains("root:x:0:0:root:/root:/bin/bash"), "{passwd}");
    }

    #[test]
    fn the_user_gets_the_hosts_gecos_and_the_sudo_group_the_image_has() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir_all(root.path().join("run/host/etc")).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            root.path().join("run/host/etc/passwd"),
            "ann:x:1000:1000:Ann Example,,,:/home/ann:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\nwheel:x:10:root\nsudo:x:27:\nusers:x:100:\n").unwrap();
        let u = toolbox::HostUser {
            name: "ann".into(),
            uid: 1000,
            gid: 100,
            home: "/home/ann".into(),
            shell: "/bin/sh".into(),
        };
        setup_user_in(root.path(), &u).unwrap();
        setup_user_in(root.path(), &u).unwrap();
        assert_eq!(
            std::fs::read_to_string(etc.join("passwd")).unwrap(),
            "root::0:0:root:/root:/bin/sh\nann::1000:100:Ann Example,,,:/home/ann:/bin/sh\n",
            "no shadow: root's password is deleted in passwd"
        );
        assert_eq!(
            std::fs::read_to_string(etc.join("group")).unwrap(),
            "root:x:0:\nwheel:x:10:root\nsudo:x:27:ann\nusers:x:100:\n",
            "sudo before wheel, as Toolbx looks; the host's gid 100 kept by its name"
        );
        assert!(!etc.join("sudoers.d/mtbx").exists(), "no sudo in the image, no sudoers");
    }

    #[test]
    fn markers_and_the_prompt_of_a_foreign_container() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("run")).unwrap();
        std::fs::create_dir_all(root.path().join("etc/profile.d")).unwrap();
        let args = InitArgs {
            arch: Arch::parse("arm64").unwrap(),
            user: toolbox::HostUser {
                name: "ann".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/ann".into(),
                shell: "/bin/sh".into(),
            },
            cpu: None,
            qemu: Some("/run/mtbx-host/qemu-aarch64".into()),
        };
        mark_in(root.path(), &args).unwrap();
        let r = root.path();
        assert!(r.join("run/.toolboxenv").is_file() && r.join("run/.toolbxenv").is_file());
        assert_eq!(std::fs::read_to_string(r.join("run/mtbx/arch")).unwrap(), "arm64\n");
        assert!(r.join("run/mtbx/emulated").is_file());
        let script = r.join("etc/profile.d/zz-mtbx-arch.sh");
        // The script as sh runs it: a prefix, or Debian's chroot marker.
        let run = |ps1: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(". {}; printf '%s|%s' \"$PS1\" \"${{debian_chroot-}}\"", script.display()))
                .env("MTBX_ARCH", "arm64")
                .env("PS1", ps1)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(run("$ "), "[arm64] $ |");
        assert_eq!(
            run("${debian_chroot:+($debian_chroot)}\\u$ "),
            "${debian_chroot:+($debian_chroot)}\\u$ |arm64"
        );
        let native = InitArgs { arch: Arch::host(), qemu: None, ..args };
        mark_in(root.path(), &native).unwrap();
        assert!(!r.join("run/mtbx/emulated").exists());
    }

    #[test]
    fn host_names_and_time_zone_as_toolbx_links_them_and_the_host_name_resolves() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["etc", "run/host/etc", "run/host/usr/share/zoneinfo/Europe", "usr/share/zoneinfo/Europe"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("run/host/etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(r.join("run/host/etc/resolv.conf"), "nameserver 10.0.0.1\n").unwrap();
        std::fs::write(r.join("run/host/usr/share/zoneinfo/Europe/Berlin"), "TZif").unwrap();
        std::os::unix::fs::symlink("/usr/share/zoneinfo/Europe/Berlin", r.join("run/host/etc/localtime"))
            .unwrap();
        link_host_files(r);
        assert_eq!(
            std::fs::read_link(r.join("etc/resolv.conf")).unwrap(),
            Path::new("/run/host/etc/resolv.conf")
        );
        assert_eq!(std::fs::read_to_string(r.join("etc/timezone")).unwrap(), "Europe/Berlin\n");
        assert_eq!(
            std::fs::read_link(r.join("etc/localtime")).unwrap(),
            Path::new("/run/host/usr/share/zoneinfo/Europe/Berlin"),
            "the image lacks the zone: the host's file"
        );
        std::fs::write(r.join("usr/share/zoneinfo/Europe/Berlin"), "TZif").unwrap();
        link_host_files(r);
        assert_eq!(
            std::fs::read_link(r.join("etc/localtime")).unwrap(),
            Path::new("/usr/share/zoneinfo/Europe/Berlin"),
            "the image has it: the host's own link target"
        );
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let hosts = std::fs::read_to_string(r.join("etc/hosts")).unwrap();
        assert!(hosts.starts_with("127.0.0.1 localhost\n") && resolves(&hosts, hostname.trim()), "{hosts}");
        std::fs::write(r.join("run/host/etc/hosts"), format!("127.0.0.1 localhost {hostname}")).unwrap();
        link_host_files(r);
        assert_eq!(std::fs::read_link(r.join("etc/hosts")).unwrap(), Path::new("/run/host/etc/hosts"));
    }

    #[test]
    fn the_home_follows_the_hosts_links() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("run/host/var/home/ann")).unwrap();
        std::fs::create_dir_all(r.join("run/host/data/ann")).unwrap();
        std::fs::create_dir_all(r.join("home")).unwrap();
        std::os::unix::fs::symlink("var/home", r.join("run/host/home")).unwrap();
        assert_eq!(
            resolve_under(&r.join("run/host"), Path::new("/home/ann")).unwrap(),
            Path::new("/var/home/ann")
        );
        let u = toolbox::HostUser {
            name: "ann".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/ann".into(),
            shell: "/bin/sh".into(),
        };
        link_host_dirs(r, &u);
        assert_eq!(std::fs::read_link(r.join("home")).unwrap(), Path::new("/var/home"), "--home-link");
        // A home that is a link of its own (/srv/ann -> /data/ann).
        std::fs::create_dir_all(r.join("run/host/srv")).unwrap();
        std::os::unix::fs::symlink("/data/ann", r.join("run/host/srv/ann")).unwrap();
        link_host_dirs(r, &toolbox::HostUser { home: "/srv/ann".into(), ..u });
        assert_eq!(std::fs::read_link(r.join("srv/ann")).unwrap(), Path::new("/data/ann"));
    }

    #[test]
    fn commands_run_through_a_login_shell() {
        let (p, a) = login_command("/bin/zsh", &[]);
        assert_eq!((p.to_str().unwrap(), a), ("/bin/zsh", vec![OsString::from("-l")]));
        let (p, a) = login_command("/bin/zsh", &["uname".into(), "-m".into()]);
        let bash = Path::new("/bin/bash").is_file() || Path::new("/usr/bin/bash").is_file();
        assert!(p.to_str().unwrap().ends_with(if bash { "bash" } else { "sh" }));
        assert_eq!(a[1..], ["-c", r#"exec "$@""#, if bash { "bash" } else { "sh" }, "uname", "-m"]);
    }

    #[test]
    fn kerberos_uses_kcm_and_rpm_leaves_the_hosts_mounts_alone() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        configure_kerberos_and_rpm(r);
        assert!(!r.join("etc/krb5.conf.d").exists(), "nothing where the image lacks the tools");
        std::fs::create_dir_all(r.join("etc/krb5.conf.d")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib/rpm/macros.d")).unwrap();
        configure_kerberos_and_rpm(r);
        let kcm = std::fs::read_to_string(r.join("etc/krb5.conf.d/kcm_default_ccache")).unwrap();
        assert!(kcm.contains("[libdefaults]\n    default_ccache_name = KCM:\n"), "{kcm}");
        assert!(
            kcm.starts_with("# Written by Toolbx\n# https://containertoolbx.org/\n#\n"),
            "Toolbx's file: {kcm}"
        );
        let rpm = std::fs::read_to_string(r.join("usr/lib/rpm/macros.d/macros.toolbox")).unwrap();
        assert!(
            rpm.contains(
                "%_netsharedpath /dev:/media:/mnt:/proc:/sys:/tmp:/var/lib/flatpak:/var/lib/libvirt\n"
            ),
            "{rpm}"
        );
        // An administrator's own KCM file is kept.
        std::fs::write(r.join("etc/krb5.conf.d/kcm_default_ccache"), "# mine\n").unwrap();
        configure_kerberos_and_rpm(r);
        assert_eq!(
            std::fs::read_to_string(r.join("etc/krb5.conf.d/kcm_default_ccache")).unwrap(),
            "# mine\n"
        );
    }

    #[test]
    fn busybox_images_get_the_classic_form_their_parser_reads() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::os::unix::fs::symlink("busybox", r.join("bin/sh")).unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(r.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
        let u = toolbox::HostUser {
            name: "ann".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/ann".into(),
            shell: "/bin/sh".into(),
        };
        setup_user_in(r, &u).unwrap();
        setup_user_in(r, &u).unwrap();
        assert_eq!(
            std::fs::read_to_string(r.join("etc/passwd")).unwrap(),
            "root:x:0:0:root:/root:/bin/sh\nann:x:1000:1000:ann:/home/ann:/bin/sh\n"
        );
        assert_eq!(
            std::fs::read_to_string(r.join("etc/shadow")).unwrap(),
            "root::19000:0:99999:7:::\nann::19000:0:99999:7:::\n"
        );
    }

    #[test]
    fn the_hosts_extra_cas_are_added_once_and_follow_the_host() {
        let pem = |b: &str| format!("-----BEGIN CERTIFICATE-----\n{b}\n-----END CERTIFICATE-----");
        let image = format!("# Mozilla\n{}\n{}\n", pem("AAAA\nBBBB"), pem("CCCC"));
        let host = format!("{}\n{}\n", pem("AAAABBBB"), pem("CORP"));
        let merged = merge_cas(&image, &host).unwrap();
        assert_eq!(
            merged,
            format!("{image}{CA_BEGIN}\n{}\n{CA_END}\n", pem("CORP")),
            "only what the image lacks"
        );
        assert_eq!(merge_cas(&merged, &host), None, "a second start changes nothing");
        let host2 = format!("{}\n{}\n", pem("CORP2"), pem("CCCC"));
        assert_eq!(
            merge_cas(&merged, &host2).unwrap(),
            format!("{image}{CA_BEGIN}\n{}\n{CA_END}\n", pem("CORP2"))
        );
        assert_eq!(
            merge_cas(&merged, &image).unwrap(),
            image,
            "the host dropped its CA: so does the container"
        );

        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc/ssl/certs")).unwrap();
        std::fs::create_dir_all(r.join("run/host/etc/pki/ca-trust/extracted/pem")).unwrap();
        std::fs::write(r.join("etc/ssl/certs/ca-certificates.crt"), &image).unwrap();
        std::fs::write(r.join("run/host/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"), &host).unwrap();
        trust_host_cas(r);
        let got = std::fs::read_to_string(r.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
        assert!(
            got.contains("CORP") && got.starts_with(&image),
            "a Fedora host's bundle into a Debian image: {got}"
        );
    }
}
