//! The user database of a root file system (`/etc/passwd`, `group`,
//! `shadow`, `gshadow`): the one reader and editor both `init-container`
//! (which rewrites the container's files) and `run --rootfs` (which binds a
//! copy over the tree's) use.
//!
//! The rules, the same for every caller:
//!
//! - A file is found as the programs of that root find it: links are
//!   resolved within the root (openat2 `RESOLVE_IN_ROOT`), never out of it,
//!   so `/etc/passwd -> /run/host/etc/passwd` in a tree names the tree's
//!   file, not the host's.
//! - Only a regular file is read: a FIFO or a device is refused before
//!   anything is read from it (reading would block forever, or never end).
//! - At most [`MAX_BYTES`] are read; a larger file is refused whole rather
//!   than cut in the middle of a record, which a rewrite would then keep.
//! - Lines are bytes: a Latin-1 GECOS is kept as it is.
//! - A rewrite never writes through a link or into the old inode: a new
//!   file in the same directory, then rename(2), so a reader sees the old
//!   file or the new one; a link at the path is replaced by the file, and
//!   what it pointed to is left alone.
//! - The new file keeps the mode, owner and group of the one it replaces:
//!   `/etc/shadow` is root:shadow 0640 on Debian, and unix_chkpwd reads it
//!   as group shadow, so a shadow left root:root breaks `sudo` with a
//!   password and screen lockers.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// The largest user database file read: hostile input is bounded.
pub const MAX_BYTES: u64 = 4 << 20;

/// Why a file was refused for its size (the inner error of
/// [`read_at`]'s refusal; see [`is_too_large`]).
#[derive(Debug, thiserror::Error)]
#[error("it is larger than {} MiB, more than mtbx reads", MAX_BYTES >> 20)]
pub struct TooLarge;

/// Whether `e` is [`read_at`]'s refusal of a file over [`MAX_BYTES`].
pub fn is_too_large(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TooLarge>())
}

/// What a rewrite gives the new file: the replaced file's mode (with the
/// file type bits off), owner and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// Permission bits, setuid/setgid/sticky included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl Kept {
    /// A file that did not exist: 0644, owned by whoever writes it.
    pub const NEW_MODE: u32 = 0o644;

    fn of(st: &rustix::fs::Stat) -> Kept {
        Kept { mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid }
    }

    /// Those of the regular file at `path` itself (a link is not followed):
    /// None when there is none.
    pub fn of_path(path: &Path) -> Option<Kept> {
        let st = rustix::fs::lstat(path).ok()?;
        (st.st_mode & libc::S_IFMT == libc::S_IFREG).then(|| Kept::of(&st))
    }
}

/// A file as read: its bytes, and what a rewrite of it keeps.
#[derive(Debug, Clone)]
pub struct DbFile {
    /// The contents, byte for byte.
    pub bytes: Vec<u8>,
    /// Mode and owner of the file read (the link's target, for a link).
    pub kept: Kept,
}

/// Read `rel` under the root `root` (see the module's rules): None when
/// there is no such file; an error naming what it is when it is not a
/// regular file ([`crate::sys::files::is_not_regular`]), or when it is
/// larger than [`MAX_BYTES`] ([`is_too_large`]).
pub fn read_at(root: BorrowedFd<'_>, rel: &Path) -> std::io::Result<Option<DbFile>> {
    read_opened(crate::sys::files::open_regular_at(root, rel, ResolveFlags::IN_ROOT))
}

/// The file `open` opened (a missing one is None), bounded.
fn read_opened(open: std::io::Result<std::fs::File>) -> std::io::Result<Option<DbFile>> {
    let f = match open {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let kept = Kept::of(&rustix::fs::fstat(&f)?);
    let mut bytes = Vec::new();
    f.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, TooLarge));
    }
    Ok(Some(DbFile { bytes, kept }))
}

/// Replace `path` with `bytes` atomically: a new file in the same
/// directory given `kept`'s owner and mode (or [`Kept::NEW_MODE`]), then
/// renamed over the path. An owner the writer may not give (an id the user
/// namespace does not map) is left as the writer's, as any tool's edit
/// would leave it; the mode is always kept.
pub fn write(path: &Path, bytes: &[u8], kept: Option<Kept>) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::fsutil::mkdir_all(dir, 0o755)?;
    let mut tmp = tempfile::Builder::new().prefix(".mtbx-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if let Some(k) = kept {
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(k.uid), Some(k.gid));
    }
    // After the chown, which clears setuid and setgid bits.
    let mode = kept.map_or(Kept::NEW_MODE, |k| k.mode);
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The `/etc` of a root file system, edited under the module's rules.
/// Its errors name the file (`/etc/group: it is a FIFO, ...`).
pub struct Etc {
    /// The root's host path (where rewrites are written).
    dir: PathBuf,
    /// The root, opened once: every read resolves within it.
    root: OwnedFd,
}

impl Etc {
    /// The root file system at `dir` (`/` inside a container).
    pub fn open(dir: &Path) -> std::io::Result<Etc> {
        let root = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Etc { dir: dir.to_path_buf(), root })
    }

    fn rel(name: &str) -> PathBuf {
        Path::new("etc").join(name)
    }

    fn named(rel: &Path, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(e.kind(), format!("/{}: {e}", rel.display()))
    }

    /// The file at `rel` (relative to the root: `run/host/etc/passwd`) as
    /// read by [`read_at`].
    pub fn read_file(&self, rel: &Path) -> std::io::Result<Option<DbFile>> {
        let read = if self.dir == Path::new("/") {
            // The process's own root (init-container's): ordinary path
            // resolution already stays within it, and needs no openat2,
            // which kernels before 5.6 (a toolbox host may run one) and
            // older seccomp profiles lack.
            read_opened(crate::sys::files::open_regular(&self.dir.join(rel), true))
        } else {
            read_at(self.root.as_fd(), rel)
        };
        read.map_err(|e| Self::named(rel, e))
    }

    /// `/etc/<name>` as read by [`read_at`].
    pub fn read(&self, name: &str) -> std::io::Result<Option<DbFile>> {
        self.read_file(&Self::rel(name))
    }

    /// The bytes of `/etc/<name>`, empty when there is none.
    pub fn bytes(&self, name: &str) -> std::io::Result<Vec<u8>> {
        Ok(self.read(name)?.map(|f| f.bytes).unwrap_or_default())
    }

    /// Replace `/etc/<name>`, which was `old` when read, with `bytes`
    /// ([`write`], keeping `old`'s mode and owner); the same bytes as
    /// `old`'s leave it as it is.
    pub fn write(&self, name: &str, old: Option<&DbFile>, bytes: &[u8]) -> std::io::Result<()> {
        if old.is_some_and(|f| f.bytes == bytes) {
            return Ok(());
        }
        let rel = Self::rel(name);
        write(&self.dir.join(&rel), bytes, old.map(|f| f.kept)).map_err(|e| Self::named(&rel, e))
    }

    /// Rewrite `/etc/<name>` with what `edit` makes of its bytes (empty
    /// when there is no such file); `edit` returning None, or the same
    /// bytes, leaves the file as it is.
    pub fn rewrite(&self, name: &str, edit: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> std::io::Result<()> {
        let old = self.read(name)?;
        match edit(old.as_ref().map_or(&[][..], |f| &f.bytes[..])) {
            Some(new) => self.write(name, old.as_ref(), &new),
            None => Ok(()),
        }
    }
}

/// The lines of a file's bytes, without their `\n` (a last line may lack
/// one; nothing follows a final `\n`).
pub fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let none = text.is_empty();
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.split(|b| *b == b'\n').filter(move |_| !none)
}

/// Field `n` (from 0) of a colon-separated line.
pub fn field(line: &[u8], n: usize) -> Option<&[u8]> {
    line.split(|b| *b == b':').nth(n)
}

/// Every line through `edit` (None drops it), each ending in `\n`.
pub fn edit_lines(text: &[u8], mut edit: impl FnMut(&[u8]) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for l in lines(text) {
        if let Some(new) = edit(l) {
            out.extend_from_slice(&new);
            out.push(b'\n');
        }
    }
    if out.is_empty() {
        // As before the editor was shared: an edit of nothing is one
        // empty line.
        out.push(b'\n');
    }
    out
}

/// `text` with `line` at the end (a last line without `\n` gets one).
pub fn append(text: &[u8], line: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(line);
    out.push(b'\n');
    out
}

/// The name and id of a passwd or group line (fields 0 and 2).
fn key(l: &[u8]) -> (&[u8], &[u8]) {
    (field(l, 0).unwrap_or(b""), field(l, 2).unwrap_or(b""))
}

/// A passwd or group `text` with the entry `line` added, or None when its
/// name or its id is there already (what is there is left as it is).
pub fn add_entry(text: &[u8], line: &[u8]) -> Option<Vec<u8>> {
    let (name, id) = key(line);
    if text.split(|b| *b == b'\n').map(key).any(|(n, i)| n == name || i == id) {
        return None;
    }
    Some(append(text, line))
}

/// A passwd or group `text` with the entry `line` in place of every entry
/// of its name or its id, at the end; the other lines as they were.
pub fn set_entry(text: &[u8], line: &[u8]) -> Vec<u8> {
    let (name, id) = key(line);
    let mut out: Vec<u8> = Vec::with_capacity(text.len() + line.len() + 1);
    for l in lines(text).filter(|l| {
        let (n, i) = key(l);
        n != name && i != id
    }) {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out.extend_from_slice(line);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    fn etc() -> (tempfile::TempDir, Etc) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        let e = Etc::open(d.path()).unwrap();
        (d, e)
    }

    #[test]
    fn line_edits() {
        let two = b"root:x:0:0:root:/root:/bin/sh\nme:x:1000:1000:Ren\xe9:/home/me:/bin/sh\n";
        let no_nl = b"root:x:0:0:root:/root:/bin/sh\nme:x:1000:1000:Ren\xe9:/home/me:/bin/sh";
        let you = b"you:x:1001:1001:you:/home/you:/bin/sh";
        let with_you = [&two[..], you, b"\n"].concat();
        // (what, the text, the edit, what it makes)
        type Edit = fn(&[u8]) -> Option<Vec<u8>>;
        type Case<'a> = (&'a str, &'a [u8], Edit, Option<Vec<u8>>);
        let cases: &[Case] = &[
            (
                "add: a new name and id",
                two,
                |t| add_entry(t, b"you:x:1001:1001:you:/home/you:/bin/sh"),
                Some(with_you.clone()),
            ),
            (
                "add: no trailing newline gets one",
                no_nl,
                |t| add_entry(t, b"you:x:1001:1001:you:/home/you:/bin/sh"),
                Some(with_you.clone()),
            ),
            ("add: no file, one line", b"", |t| add_entry(t, b"you:x:7:"), Some(b"you:x:7:\n".to_vec())),
            ("add: the name is there", two, |t| add_entry(t, b"me:x:1002:1002::/home/me:/bin/sh"), None),
            ("add: the id is there", two, |t| add_entry(t, b"other:x:1000:1000::/:/bin/sh"), None),
            (
                "set: the same name replaced, at the end, others untouched",
                b"root:x:0:0::/root:/bin/sh\nme:x:5:5::/:/bin/sh\nbin:x:1:1::/:/bin/sh\n",
                |t| Some(set_entry(t, b"me::1000:1000::/home/me:/bin/sh")),
                Some(
                    b"root:x:0:0::/root:/bin/sh\nbin:x:1:1::/:/bin/sh\nme::1000:1000::/home/me:/bin/sh\n"
                        .to_vec(),
                ),
            ),
            (
                "set: the same id replaced, no trailing newline",
                b"root:x:0:0::/root:/bin/sh\nold:x:1000:1000::/home/old:/bin/sh",
                |t| Some(set_entry(t, b"me::1000:1000::/home/me:/bin/sh")),
                Some(b"root:x:0:0::/root:/bin/sh\nme::1000:1000::/home/me:/bin/sh\n".to_vec()),
            ),
            (
                "edit: a line dropped, one changed, bytes kept",
                b"root:*:1::\nme:!:2::\nRen\xe9:x:3::",
                |t| {
                    Some(edit_lines(t, |l| match field(l, 0) {
                        Some(b"me") => None,
                        Some(b"root") => Some(b"root::1::".to_vec()),
                        _ => Some(l.to_vec()),
                    }))
                },
                Some(b"root::1::\nRen\xe9:x:3::\n".to_vec()),
            ),
            (
                "append: after a last line without newline",
                b"a",
                |t| Some(append(t, b"b")),
                Some(b"a\nb\n".to_vec()),
            ),
        ];
        for (what, text, edit, want) in cases {
            assert_eq!(edit(text), *want, "{what}");
        }
        assert_eq!(lines(b"a\n\nb").collect::<Vec<_>>(), [&b"a"[..], b"", b"b"]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n").collect::<Vec<_>>(), [&b""[..]]);
    }

    /// /etc/shadow is root:shadow 0640 on Debian: unix_chkpwd reads it as
    /// group shadow, so an edit that left it root:root broke `sudo` with
    /// a password and screen lockers. Every edit keeps owner and mode.
    #[test]
    fn an_edited_shadow_keeps_its_group_and_mode() {
        let (d, etc) = etc();
        let shadow = d.path().join("etc/shadow");
        std::fs::write(&shadow, "root:*:19000:0:99999:7:::\nann:!:19000::::::\n").unwrap();
        // As root (CI) another group than the creator's proves it is kept.
        let group = if crate::sys::getuid() == 0 { 42 } else { nix::unistd::getgid().as_raw() };
        std::os::unix::fs::chown(&shadow, None, Some(group)).unwrap();
        std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o640)).unwrap();
        let ino = std::fs::metadata(&shadow).unwrap().ino();
        etc.rewrite("shadow", |t| Some(edit_lines(t, |l| (!l.starts_with(b"ann:")).then(|| l.to_vec()))))
            .unwrap();
        let m = std::fs::metadata(&shadow).unwrap();
        assert_eq!(std::fs::read_to_string(&shadow).unwrap(), "root:*:19000:0:99999:7:::\n");
        assert_eq!((m.gid(), m.mode() & 0o7777), (group, 0o640));
        assert_ne!(m.ino(), ino, "a new file renamed over the old one");
        assert!(
            std::fs::read_dir(d.path().join("etc")).unwrap().count() == 1,
            "no temporary file left beside it"
        );
    }

    /// As root, the owner too: a file of another user keeps that user.
    #[test]
    fn owner_and_mode_are_kept() {
        let (d, etc) = etc();
        let p = d.path().join("etc/gshadow");
        std::fs::write(&p, "root:*::\n").unwrap();
        let (uid, gid) = if crate::sys::getuid() == 0 {
            (4242, 4343)
        } else {
            (crate::sys::getuid(), nix::unistd::getgid().as_raw())
        };
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        etc.rewrite("gshadow", |t| Some(append(t, b"ann:!::"))).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, 0o400));
        assert_eq!(std::fs::read(&p).unwrap(), b"root:*::\nann:!::\n");
        // A file that was not there: 0644, the writer's.
        etc.rewrite("group", |t| Some(append(t, b"ann:x:1000:"))).unwrap();
        let m = std::fs::metadata(d.path().join("etc/group")).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (crate::sys::getuid(), 0o644));
        // An edit that changes nothing writes nothing.
        let ino = m.ino();
        etc.rewrite("group", |t| Some(t.to_vec())).unwrap();
        assert_eq!(std::fs::metadata(d.path().join("etc/group")).unwrap().ino(), ino);
    }

    /// A symlinked /etc/passwd is read as the root's programs see it
    /// (within the root: an absolute link names the root's file, never the
    /// host's), and replaced by a regular file: the link's target is never
    /// written.
    #[test]
    fn a_symlinked_passwd_is_replaced_not_written_through() {
        let (d, etc) = etc();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/etc")).unwrap();
        std::fs::write(r.join("usr/etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::set_permissions(r.join("usr/etc/passwd"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("/usr/etc/passwd", r.join("etc/passwd")).unwrap();
        etc.rewrite("passwd", |t| Some(set_entry(t, b"ann::1000:1000::/home/ann:/bin/sh"))).unwrap();
        let m = std::fs::symlink_metadata(r.join("etc/passwd")).unwrap();
        assert!(m.file_type().is_file(), "the link is replaced by a file");
        assert_eq!(m.mode() & 0o7777, 0o600, "with the mode of what it named");
        assert_eq!(
            std::fs::read_to_string(r.join("etc/passwd")).unwrap(),
            "root:x:0:0::/root:/bin/sh\nann::1000:1000::/home/ann:/bin/sh\n"
        );
        assert_eq!(std::fs::read_to_string(r.join("usr/etc/passwd")).unwrap(), "root:x:0:0::/root:/bin/sh\n");

        // A link out of the root reads the root's own path (here: none).
        let outside = tempfile::tempdir().unwrap();
        let host = outside.path().join("passwd");
        std::fs::write(&host, "host:x:0:0::/:/bin/sh\n").unwrap();
        std::fs::remove_file(r.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(&host, r.join("etc/passwd")).unwrap();
        assert!(etc.read("passwd").unwrap().is_none(), "not the file outside the root");
        std::os::unix::fs::symlink(
            "../../../../../../..".to_string() + host.to_str().unwrap(),
            r.join("etc/group"),
        )
        .unwrap();
        assert!(etc.read("group").unwrap().is_none(), "`..` stops at the root");
        etc.rewrite("passwd", |t| Some(set_entry(t, b"ann::1000:1000::/home/ann:/bin/sh"))).unwrap();
        assert_eq!(std::fs::read_to_string(&host).unwrap(), "host:x:0:0::/:/bin/sh\n", "never written");
    }

    /// A FIFO as /etc/group is refused at once (an open would wait for a
    /// writer, a read for its end) and left in place.
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (d, etc) = etc();
        let fifo = d.path().join("etc/group");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = etc.rewrite("group", |t| Some(append(t, b"ann:x:1000:"))).unwrap_err();
        assert_eq!(e.to_string(), "/etc/group: it is a FIFO, not a regular file");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        std::fs::create_dir(d.path().join("etc/shadow")).unwrap();
        assert!(crate::sys::files::is_not_regular(
            &read_at(etc.root.as_fd(), Path::new("etc/shadow")).unwrap_err()
        ));
    }

    /// init-container's root is `/`, read without openat2.
    #[test]
    fn the_own_root_is_read_as_any_path() {
        let etc = Etc::open(Path::new("/")).unwrap();
        assert_eq!(etc.read("passwd").unwrap().unwrap().bytes, std::fs::read("/etc/passwd").unwrap());
        assert!(etc.read("no-such-file-of-mtbx").unwrap().is_none());
    }

    #[test]
    fn a_file_over_the_limit_is_refused_whole() {
        let (d, etc) = etc();
        let p = d.path().join("etc/passwd");
        std::fs::write(&p, vec![b'x'; MAX_BYTES as usize]).unwrap();
        assert_eq!(etc.read("passwd").unwrap().unwrap().bytes.len() as u64, MAX_BYTES);
        std::fs::write(&p, vec![b'x'; MAX_BYTES as usize + 1]).unwrap();
        let e = read_at(etc.root.as_fd(), Path::new("etc/passwd")).unwrap_err();
        assert!(is_too_large(&e) && e.to_string().contains("larger than 4 MiB"), "{e}");
        let e = etc.rewrite("passwd", |t| Some(append(t, b"ann:x:1000:"))).unwrap_err();
        assert_eq!(e.to_string(), "/etc/passwd: it is larger than 4 MiB, more than mtbx reads");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), MAX_BYTES + 1, "left as it was");
    }
}
