//! The two halves of mtbx that run inside a toolbox container, natively
//! (the static binary is bind-mounted in), whatever the container's
//! architecture:
//!
//! - `init-container`, the entrypoint: a binfmt_misc instance of the
//!   container's own user namespace with QEMU registered (flags P, F and C,
//!   so setuid programs such as sudo work), proof that a program of the
//!   container's architecture runs, the host user set up, host files linked
//!   in, a readiness stamp; then it waits to be stopped. It reports in
//!   `mtbx-init:` lines on stderr, which land in the container's log where
//!   create/enter show them.
//! - `container-exec`, what `run`/`enter` execute through `podman exec`:
//!   become the user, go to the directory, run the command.

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
        register(args.arch, qemu)?;
        verify(args.arch)?;
    }
    setup_user(&args.user).map_err(|e| err("cannot set up the user", &e))?;
    link_host_files();
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
/// is used, with a warning.
fn register(arch: &Arch, qemu: &Path) -> Result<(), InitError> {
    let fs = BinfmtFs::default();
    match fs.mount() {
        Ok(()) => {
            let reg = Registration::for_arch(arch, qemu, Flags::CONTAINER);
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

/// passwd, group and shadow entries for the host user (kept when present
/// with the same uid), a home, a shell the container has, and
/// password-less sudo where sudo exists.
pub fn setup_user(u: &toolbox::HostUser) -> std::io::Result<()> {
    setup_user_in(Path::new("/"), u)
}

/// [`setup_user`] under `root` (tests use a scratch directory).
pub fn setup_user_in(root: &Path, u: &toolbox::HostUser) -> std::io::Result<()> {
    let etc = root.join("etc");
    let shell = if root.join(u.shell.strip_prefix("/").unwrap_or(&u.shell)).exists() {
        u.shell.display().to_string()
    } else {
        "/bin/sh".to_string()
    };
    let groups = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
    if !groups.lines().any(|l| l.split(':').nth(2) == Some(&u.gid.to_string())) {
        let taken = groups.lines().any(|l| l.split(':').next() == Some(&u.name));
        let name = if taken { format!("{}-{}", u.name, u.gid) } else { u.name.clone() };
        append_line(&etc.join("group"), &format!("{name}:x:{}:", u.gid))?;
    }
    let passwd_line = format!("{}:x:{}:{}:{}:{}:{}", u.name, u.uid, u.gid, u.name, u.home.display(), shell);
    replace_or_append(
        &etc.join("passwd"),
        |l| l.split(':').next() == Some(&u.name) || l.split(':').nth(2) == Some(&u.uid.to_string()),
        &passwd_line,
    )?;
    if etc.join("shadow").exists() {
        replace_or_append(
            &etc.join("shadow"),
            |l| l.split(':').next() == Some(&u.name),
            &format!("{}::19000:0:99999:7:::", u.name),
        )?;
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

fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    write_atomic(path, text.as_bytes(), mode_of(path, 0o644))
}

fn replace_or_append(path: &Path, matches: impl Fn(&str) -> bool, line: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<&str> = text.lines().filter(|l| !matches(l)).collect();
    out.push(line);
    let mut joined = out.join("\n");
    joined.push('\n');
    write_atomic(path, joined.as_bytes(), mode_of(path, 0o644))
}

fn mode_of(path: &Path, default: u32) -> u32 {
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(default)
}

/// /etc/hosts, resolv.conf and localtime from the host (under /run/host),
/// as Toolbx links them; an absolute symlink on the host is followed
/// under /run/host. Missing host files are left alone.
fn link_host_files() {
    for f in ["etc/hosts", "etc/resolv.conf", "etc/localtime"] {
        let host = Path::new("/run/host").join(f);
        let target = match std::fs::read_link(&host) {
            Ok(t) if t.is_absolute() => Path::new("/run/host").join(t.strip_prefix("/").unwrap_or(&t)),
            Ok(t) => host.parent().map(|p| p.join(t)).unwrap_or(host.clone()),
            Err(_) => host.clone(),
        };
        if !target.exists() {
            continue;
        }
        let local = Path::new("/").join(f);
        let _ = std::fs::remove_file(&local);
        if let Err(e) = std::os::unix::fs::symlink(&target, &local) {
            say(WARNING_PREFIX, &format!("cannot link {} to the host's: {e}", local.display()));
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

/// Become the user and exec the command (the login shell when there is
/// none); returns only on failure.
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
    let dir = a.workdir.as_ref().filter(|d| d.is_dir()).unwrap_or(&a.home);
    let _ = std::env::set_current_dir(dir);
    let (program, args): (std::ffi::OsString, Vec<std::ffi::OsString>) = match a.command.split_first() {
        None => (shell.clone().into(), vec!["-l".into()]),
        Some((p, rest)) => (p.clone(), rest.to_vec()),
    };
    let source = std::process::Command::new(&program)
        .args(args)
        .env("HOME", &a.home)
        .env("USER", &a.user)
        .env("LOGNAME", &a.user)
        .env("SHELL", &shell)
        .exec();
    Err(ExecError::Run { command: program.to_string_lossy().into_owned(), source })
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
            passwd, "root:x:0:0:root:/root:/bin/bash\nann:x:1000:1000:ann:/home/ann:/bin/sh\n",
            "uid 1000 taken over, zsh missing -> sh"
        );
        assert_eq!(std::fs::read_to_string(etc.join("group")).unwrap(), "root:x:0:\nann:x:1000:\n");
        assert!(std::fs::read_to_string(etc.join("shadow")).unwrap().contains("ann::19000"));
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
}
