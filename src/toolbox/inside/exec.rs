//! container-exec: what `run` and `enter` execute inside through
//! `podman exec`.

use std::ffi::{CString, OsString};
use std::path::{Path, PathBuf};

use super::ExecError;

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
    // A container made with --home: that home, whatever the host's says.
    let own = super::own_home(Path::new("/"));
    let a = &ExecArgs { home: own.unwrap_or_else(|| a.home.clone()), ..a.clone() };

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
            // First the failed chdir itself, with the system's reason, as
            // Toolbx users see podman's runtime say it; then Toolbx's words.
            if let Err(e) = std::env::set_current_dir(d) {
                let why =
                    e.raw_os_error().map_or(e.to_string(), |n| nix::errno::Errno::from_raw(n).desc().into());
                eprintln!("Error: chdir to `{}`: {why}", d.display());
            }
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

/// The login shell the container's passwd gives `user`.
fn user_shell(user: &str) -> Option<String> {
    use crate::userdb::{field, lines, Etc};
    let passwd = Etc::open(Path::new("/")).ok()?.read("passwd").ok()??.bytes;
    let shell = lines(&passwd).find(|l| field(l, 0) == Some(user.as_bytes())).and_then(|l| field(l, 6))?;
    String::from_utf8(shell.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_run_through_a_login_shell() {
        let (p, a) = login_command("/bin/zsh", &[]);
        assert_eq!((p.to_str().unwrap(), a), ("/bin/zsh", vec![OsString::from("-l")]));
        let (p, a) = login_command("/bin/zsh", &["uname".into(), "-m".into()]);
        let bash = Path::new("/bin/bash").is_file() || Path::new("/usr/bin/bash").is_file();
        assert!(p.to_str().unwrap().ends_with(if bash { "bash" } else { "sh" }));
        assert_eq!(a[1..], ["-c", r#"exec "$@""#, if bash { "bash" } else { "sh" }, "uname", "-m"]);
    }
}
