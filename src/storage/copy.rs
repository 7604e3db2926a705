//! A full copy of a layer tree, for vfs (each vfs layer starts as a copy
//! of its parent): owners, modes, times, xattrs, hardlinks, symlinks and
//! device nodes preserved. Regular files go through copy_file_range, which
//! reflinks where the file system can.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// Copy the tree at `src` to `dst` (which must not exist yet, or be an
/// empty directory).
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let mut links: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    if !dst.exists() {
        std::fs::create_dir(dst)?;
    }
    copy_dir(src, dst, &mut links)?;
    let m = std::fs::symlink_metadata(src)?;
    finish(dst, &m, true)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let m = std::fs::symlink_metadata(&from)?;
        let ft = m.file_type();
        if !ft.is_dir() && m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                std::fs::hard_link(first, &to)?;
                continue;
            }
            links.insert((m.dev(), m.ino()), to.clone());
        }
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_dir(&from, &to, links)?;
            finish(&to, &m, true)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            finish(&to, &m, false)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
            finish(&to, &m, true)?;
        } else {
            let c = cstr(&to)?;
            // SAFETY: valid NUL-terminated path; mode and rdev from lstat.
            if unsafe { libc::mknod(c.as_ptr(), m.mode(), m.rdev()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            finish(&to, &m, true)?;
        }
        copy_xattrs(&from, &to)?;
    }
    Ok(())
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
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

fn copy_xattrs(from: &Path, to: &Path) -> std::io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    let mut names = vec![0u8; 4096];
    // SAFETY: valid path and buffer.
    let n = unsafe { libc::llistxattr(f.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Ok(());
    }
    names.truncate(n as usize);
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let key = CString::new(name).map_err(std::io::Error::other)?;
        let mut val = vec![0u8; 65536];
        // SAFETY: valid path, key and buffer.
        let len = unsafe { libc::lgetxattr(f.as_ptr(), key.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if len < 0 {
            continue;
        }
        // SAFETY: as above; failures (unsupported namespaces) are ignored.
        unsafe { libc::lsetxattr(t.as_ptr(), key.as_ptr(), val.as_ptr().cast(), len as usize, 0) };
    }
    Ok(())
}
