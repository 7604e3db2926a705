//! A full copy of a layer tree, for vfs (each vfs layer starts as a copy
//! of its parent): owners, modes, times, xattrs, hardlinks, symlinks and
//! device nodes preserved. Regular files go through copy_file_range, which
//! reflinks where the file system can.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::{io, StorageError};

const WHAT: &str = "cannot copy the parent layer";

/// Copy the tree at `src` to `dst` (which must not exist yet, or be an
/// empty directory). A failure names the file it happened on.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), StorageError> {
    let mut links: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    if !dst.exists() {
        std::fs::create_dir(dst).map_err(io("cannot create a staging directory", dst))?;
    }
    copy_dir(src, dst, &mut links)?;
    std::fs::symlink_metadata(src).and_then(|m| finish(dst, &m, true)).map_err(io(WHAT, src))
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> Result<(), StorageError> {
    for entry in std::fs::read_dir(src).map_err(io(WHAT, src))? {
        let entry = entry.map_err(io(WHAT, src))?;
        copy_entry(&entry.path(), &dst.join(entry.file_name()), links)?;
    }
    Ok(())
}

fn copy_entry(
    from: &Path,
    to: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> Result<(), StorageError> {
    let fail = || io(WHAT, from);
    let m = std::fs::symlink_metadata(from).map_err(fail())?;
    let ft = m.file_type();
    if !ft.is_dir() && m.nlink() > 1 {
        if let Some(first) = links.get(&(m.dev(), m.ino())) {
            return std::fs::hard_link(first, to).map_err(fail());
        }
        links.insert((m.dev(), m.ino()), to.to_path_buf());
    }
    if ft.is_dir() {
        std::fs::create_dir(to).map_err(fail())?;
        copy_dir(from, to, links)?;
        finish(to, &m, true).map_err(fail())?;
    } else if ft.is_symlink() {
        std::fs::read_link(from)
            .and_then(|target| std::os::unix::fs::symlink(target, to))
            .and_then(|()| finish(to, &m, false))
            .map_err(fail())?;
    } else if ft.is_file() {
        std::fs::copy(from, to).and_then(|_| finish(to, &m, true)).map_err(fail())?;
    } else {
        let kind = SFlag::from_bits_truncate(m.mode() & libc::S_IFMT);
        mknod(to, kind, Mode::from_bits_truncate(m.mode() & 0o7777), m.rdev())
            .map_err(std::io::Error::from)
            .and_then(|()| finish(to, &m, true))
            .map_err(fail())?;
    }
    copy_xattrs(from, to)
}

/// Owner, then mode (chown clears setuid), then times.
fn finish(path: &Path, m: &std::fs::Metadata, chmod: bool) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(m.uid()), Some(m.gid()))?;
    if chmod {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    }
    let at = TimeSpec::new(m.atime(), m.atime_nsec());
    let mt = TimeSpec::new(m.mtime(), m.mtime_nsec());
    utimensat(nix::fcntl::AT_FDCWD, path, &at, &mt, UtimensatFlags::NoFollowSymlink)?;
    Ok(())
}

/// Every xattr, whatever the length of its name list or value: a layer
/// copied without one (a file capability, an opaque marker) would differ
/// from its parent, so any failure fails the copy.
fn copy_xattrs(from: &Path, to: &Path) -> Result<(), StorageError> {
    use rustix::fs::{lgetxattr, lgetxattr_query, llistxattr, llistxattr_query, lsetxattr, XattrFlags};
    let names = read_sized(|| llistxattr_query(from), |buf| llistxattr(from, buf))
        .map_err(io("cannot list xattrs", from))?;
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let what = format!("cannot copy xattr {}", String::from_utf8_lossy(name));
        let value = read_sized(|| lgetxattr_query(from, name), |buf| lgetxattr(from, name, buf))
            .map_err(io(&what, from))?;
        lsetxattr(to, name, &value, XattrFlags::empty()).map_err(|e| io(&what, to)(e.into()))?;
    }
    Ok(())
}

/// A list or value of the size the kernel reports, asked again if it grew
/// in between.
fn read_sized(
    query: impl Fn() -> rustix::io::Result<usize>,
    get: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> std::io::Result<Vec<u8>> {
    loop {
        let mut buf = vec![0u8; query()?];
        match get(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_xattr_is_copied_however_long_the_list() {
        // tmpfs takes user xattrs by the hundred; ext4 keeps them in one block.
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("SKIPPED every_xattr_is_copied_however_long_the_list: no /dev/shm");
            return;
        };
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir(&src).unwrap();
        let file = src.join("f");
        std::fs::write(&file, b"x").unwrap();
        let names: Vec<String> =
            (0..200).map(|i| format!("user.{}", format!("k{i:03}").repeat(10))).collect();
        for n in &names {
            rustix::fs::lsetxattr(&file, n.as_str(), n.as_bytes(), rustix::fs::XattrFlags::empty()).unwrap();
        }
        let big = vec![7u8; 60_000];
        rustix::fs::lsetxattr(&file, "user.big", &big, rustix::fs::XattrFlags::empty()).unwrap();
        copy_tree(&src, &dst).unwrap();
        let copied = dst.join("f");
        let list =
            read_sized(|| rustix::fs::llistxattr_query(&copied), |b| rustix::fs::llistxattr(&copied, b))
                .unwrap();
        assert!(list.len() > 4096, "the name list is past 4 KiB: {}", list.len());
        for n in &names {
            let v = read_sized(
                || rustix::fs::lgetxattr_query(&copied, n.as_str()),
                |b| rustix::fs::lgetxattr(&copied, n.as_str(), b),
            )
            .unwrap();
            assert_eq!(v, n.as_bytes(), "{n}");
        }
        let v = read_sized(
            || rustix::fs::lgetxattr_query(&copied, "user.big"),
            |b| rustix::fs::lgetxattr(&copied, "user.big", b),
        )
        .unwrap();
        assert_eq!(v, big);
    }
}
