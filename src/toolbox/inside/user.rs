//! The host user inside: passwd, group and shadow entries as Toolbx's
//! useradd makes them, and password-less sudo.

use std::path::Path;

use crate::fsutil::write_atomic;
use crate::toolbox;
use crate::userdb::{self, field, Etc};

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
/// host's passwd is read from `root`/run/host/etc/passwd. The files are
/// read and rewritten by [`crate::userdb`]'s rules.
pub fn setup_user_in(root: &Path, u: &toolbox::HostUser) -> std::io::Result<()> {
    let etc = Etc::open(root)?;
    let shell = if root.join(u.shell.strip_prefix("/").unwrap_or(&u.shell)).exists() {
        u.shell.display().to_string()
    } else {
        "/bin/sh".to_string()
    };
    let (name, uid, gid) = (u.name.as_bytes(), u.uid.to_string(), u.gid.to_string());
    let groups = etc.bytes("group")?;
    if !userdb::lines(&groups).any(|l| field(l, 2) == Some(gid.as_bytes())) {
        let taken = userdb::lines(&groups).any(|l| field(l, 0) == Some(name));
        let name = if taken { format!("{}-{}", u.name, u.gid) } else { u.name.clone() };
        etc.rewrite("group", |t| Some(userdb::append(t, format!("{name}:x:{gid}:").as_bytes())))?;
    }
    if u.uid != 0 {
        add_to_sudo_group(&etc, name)?;
    }
    let passwd = etc.bytes("passwd")?;
    // root keeps its password field (deleted in shadow below); the user's
    // is empty, as `useradd --password ""` leaves it. busybox's own passwd
    // reader (static busybox images) drops a record whose password field
    // is empty, so there the user gets the classic form: `x`, and an empty
    // password in shadow.
    let classic = busybox_userland(root);
    let password: &[u8] = if u.uid == 0 {
        userdb::lines(&passwd)
            .find(|l| field(l, 0) == Some(b"root"))
            .and_then(|l| field(l, 1))
            .unwrap_or(b"x")
    } else if classic {
        b"x"
    } else {
        b""
    };
    let gecos = host_gecos(&etc, u.uid).unwrap_or_else(|| name.to_vec());
    let passwd_line = [
        name,
        b":",
        password,
        b":",
        uid.as_bytes(),
        b":",
        gid.as_bytes(),
        b":",
        &gecos,
        format!(":{}:{shell}", u.home.display()).as_bytes(),
    ]
    .concat();
    etc.rewrite("passwd", |t| Some(userdb::set_entry(t, &passwd_line)))?;
    if let Some(shadow) = etc.read("shadow")? {
        let mut text = userdb::edit_lines(&shadow.bytes, |l| {
            let mut f: Vec<&[u8]> = l.split(|b| *b == b':').collect();
            match f.first() {
                Some(&n) if n == name && u.uid != 0 => None,
                Some(&b"root") if f.len() > 1 => {
                    f[1] = b"";
                    Some(f.join(&b':'))
                }
                _ => Some(l.to_vec()),
            }
        });
        if classic && u.uid != 0 {
            text = userdb::append(&text, format!("{}::19000:0:99999:7:::", u.name).as_bytes());
        }
        etc.write("shadow", Some(&shadow), &text)?;
    } else if !classic {
        etc.rewrite("passwd", |t| {
            Some(userdb::edit_lines(t, |l| match l.strip_prefix(b"root:") {
                Some(rest) => {
                    let after = rest.iter().position(|b| *b == b':').map_or(&b""[..], |i| &rest[i + 1..]);
                    Some([&b"root::"[..], after].concat())
                }
                None => Some(l.to_vec()),
            }))
        })?;
    }
    if u.uid != 0 && (root.join("etc/sudoers").exists() || root.join("etc/sudoers.d").is_dir()) {
        write_atomic(
            &root.join("etc/sudoers.d/mtbx"),
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
fn host_gecos(etc: &Etc, uid: u32) -> Option<Vec<u8>> {
    let passwd = etc.read_file(Path::new("run/host/etc/passwd")).ok()??.bytes;
    let uid = uid.to_string();
    let gecos = userdb::lines(&passwd)
        .map(|l| l.split(|b| *b == b':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && f[2] == uid.as_bytes())
        .map(|f| f[4].to_vec());
    gecos
}

/// Add `user` to the members of `sudo`, or else `wheel`, when the image has one.
fn add_to_sudo_group(etc: &Etc, user: &[u8]) -> std::io::Result<()> {
    etc.rewrite("group", |text| {
        let name = ["sudo", "wheel"]
            .into_iter()
            .find(|g| userdb::lines(text).any(|l| field(l, 0) == Some(g.as_bytes())))?;
        Some(userdb::edit_lines(text, |l| {
            let f: Vec<&[u8]> = l.split(|b| *b == b':').collect();
            if f.len() != 4 || f[0] != name.as_bytes() || f[3].split(|b| *b == b',').any(|m| m == user) {
                return Some(l.to_vec());
            }
            let members: Vec<u8> = if f[3].is_empty() { user.to_vec() } else { [f[3], b",", user].concat() };
            Some([f[0], f[1], f[2], &members].join(&b':'))
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image's files as [`crate::userdb`] reads them: a FIFO as
    /// /etc/group is refused at once (it used to block init-container
    /// forever) and a link as /etc/passwd that leads out of the root is
    /// not read (it read the host's file), and is replaced, never written
    /// through.
    #[test]
    fn a_fifo_fails_the_set_up_and_a_link_is_replaced() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        let u = crate::toolbox::HostUser::example("ann", 1000, 1000, "/home/ann", "/bin/sh");
        let fifo = r.join("etc/group");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = setup_user_in(r, &u).unwrap_err();
        assert_eq!(e.to_string(), "/etc/group: it is a FIFO, not a regular file");
        std::fs::remove_file(&fifo).unwrap();

        let outside = tempfile::tempdir().unwrap();
        let host = outside.path().join("passwd");
        std::fs::write(&host, "host:x:0:0:host:/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(&host, r.join("etc/passwd")).unwrap();
        setup_user_in(r, &u).unwrap();
        assert_eq!(std::fs::read_to_string(&host).unwrap(), "host:x:0:0:host:/:/bin/sh\n");
        assert!(std::fs::symlink_metadata(r.join("etc/passwd")).unwrap().is_file());
        assert_eq!(
            std::fs::read_to_string(r.join("etc/passwd")).unwrap(),
            "ann::1000:1000:ann:/home/ann:/bin/sh\n",
            "nothing of the file outside the root"
        );
    }

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
        let u = crate::toolbox::HostUser::example("ann", 1000, 1000, "/home/ann", "/bin/zsh");
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
        let r = crate::toolbox::HostUser::example("root", 0, 0, "/root", "/bin/bash");
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
        let u = crate::toolbox::HostUser::example("ann", 1000, 100, "/home/ann", "/bin/sh");
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
        let u = crate::toolbox::HostUser::example("ann", 1000, 1000, "/home/ann", "/bin/sh");
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
