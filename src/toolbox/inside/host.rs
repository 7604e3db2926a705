//! The host inside, as Toolbx's init-container brings it: the host's
//! links among /home, /media and /mnt, its name resolution and time zone,
//! and what it bind-mounts from /run/host.

use std::path::{Path, PathBuf};

use super::{say, WARNING_PREFIX};
use crate::fsutil::write_atomic;
use crate::toolbox;

/// The host's links among /home, /media and /mnt (Fedora Atomic:
/// /home -> var/home, /mnt -> var/mnt, /media -> run/media), made inside
/// too, as Toolbx's --home-link, --media-link and --mnt-link do; and the
/// user's passwd home linked to the canonical one create mounted, when
/// they differ and the container lacks the passwd path.
pub(super) fn link_host_dirs(root: &Path, u: &toolbox::HostUser) {
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
pub(super) fn resolve_under(host: &Path, path: &Path) -> Option<PathBuf> {
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
pub(super) fn link_host_files(root: &Path) {
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
pub(super) fn link_time_zone(root: &Path) {
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
        if let Err(e) = write_atomic(&tz, format!("{z}\n").as_bytes(), 0o644) {
            say(WARNING_PREFIX, &format!("cannot write {}: {e}", tz.display()));
        }
    }
}

/// Follow the host's time zone while the container runs, as Toolbx's
/// init-container does: every change of the host's /etc/localtime or
/// /etc/timezone (`timedatectl set-timezone` replaces the link) relinks
/// the container's and rewrites /etc/timezone. Without inotify (no
/// instance left, a file system without it) the zone stays as set at
/// the start, with a warning, as in Toolbx.
pub(super) fn follow_time_zone(root: &Path) {
    use rustix::fs::inotify;
    let etc = root.join("run/host/etc");
    let watch = inotify::init(inotify::CreateFlags::CLOEXEC).and_then(|fd| {
        let flags = inotify::WatchFlags::CREATE
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::CLOSE_WRITE
            | inotify::WatchFlags::DELETE;
        inotify::add_watch(&fd, &etc, flags).map(|_| fd)
    });
    let fd = match watch {
        Ok(fd) => fd,
        Err(e) => {
            say(WARNING_PREFIX, &format!("cannot watch the host's time zone: {e}"));
            return;
        }
    };
    // One event's worth at least (a header and a name of NAME_MAX).
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut events = inotify::Reader::new(&fd, &mut buf);
    loop {
        match events.next() {
            Ok(e) => {
                let name = e.file_name().map(|n| n.to_bytes());
                if matches!(name, Some(b"localtime") | Some(b"timezone")) {
                    link_time_zone(root);
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                say(WARNING_PREFIX, &format!("stopped following the host's time zone: {e}"));
                return;
            }
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
pub(super) fn bind_host_paths() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_change_of_the_hosts_time_zone_reaches_the_running_container() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().to_path_buf();
        for d in ["etc", "run/host/etc", "usr/share/zoneinfo/Europe", "usr/share/zoneinfo/Asia"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for z in ["Europe/Berlin", "Asia/Tokyo"] {
            std::fs::write(r.join("usr/share/zoneinfo").join(z), "TZif").unwrap();
        }
        let host_link = r.join("run/host/etc/localtime");
        std::os::unix::fs::symlink("/usr/share/zoneinfo/Europe/Berlin", &host_link).unwrap();
        link_time_zone(&r);
        assert_eq!(std::fs::read_to_string(r.join("etc/timezone")).unwrap(), "Europe/Berlin\n");
        let watched = r.clone();
        std::thread::spawn(move || follow_time_zone(&watched));
        // As timedatectl does it: a new link renamed over the old one. The
        // watch may not be in place yet: repeat until the change is seen.
        let tmp = r.join("run/host/etc/.localtime.new");
        for _ in 0..600 {
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink("/usr/share/zoneinfo/Asia/Tokyo", &tmp).unwrap();
            std::fs::rename(&tmp, &host_link).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            if std::fs::read_to_string(r.join("etc/timezone")).unwrap() == "Asia/Tokyo\n" {
                break;
            }
        }
        assert_eq!(std::fs::read_to_string(r.join("etc/timezone")).unwrap(), "Asia/Tokyo\n");
        assert_eq!(
            std::fs::read_link(r.join("etc/localtime")).unwrap(),
            Path::new("/usr/share/zoneinfo/Asia/Tokyo")
        );
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
        let u = crate::toolbox::HostUser::example("ann", 1000, 1000, "/home/ann", "/bin/sh");
        link_host_dirs(r, &u);
        assert_eq!(std::fs::read_link(r.join("home")).unwrap(), Path::new("/var/home"), "--home-link");
        // A home that is a link of its own (/srv/ann -> /data/ann).
        std::fs::create_dir_all(r.join("run/host/srv")).unwrap();
        std::os::unix::fs::symlink("/data/ann", r.join("run/host/srv/ann")).unwrap();
        link_host_dirs(r, &toolbox::HostUser { home: "/srv/ann".into(), ..u });
        assert_eq!(std::fs::read_link(r.join("srv/ann")).unwrap(), Path::new("/data/ann"));
    }
}
