//! The host user inside: passwd, group and shadow entries as Toolbx's
//! useradd makes them, and password-less sudo.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::fsutil::write_atomic;
use crate::toolbox;

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
pub(super) fn rewrite(path: &Path, text: &str) -> std::io::Result<()> {
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
}
