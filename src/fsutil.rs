//! File-system helpers shared by every module that writes state other
//! programs read: a reader must see the old file or the new one, never half.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replace `path` with `data` atomically: a temporary file in the same
/// directory, written, synced and given `mode`, then renamed over the
/// target. A crash leaves either the old content or the new.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    mkdir_all(dir, 0o755)?;
    let mut tmp = tempfile::Builder::new().prefix(".mtbx-").tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Create `path` and its missing parents with exactly `mode` (the parents
/// too, as containers/storage creates its directories 0700). mkdir(2)
/// masks the mode with the caller's umask, which a login may set to 0002
/// (group-writable) or 0077: each directory made here is given `mode`
/// afterwards, so what mtbx creates never depends on who ran it.
/// Directories that already exist are left as they are.
pub fn mkdir_all(path: &Path, mode: u32) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        mkdir_all(parent, mode)?;
    }
    mkdir_exact(path, mode).map(drop)
}

/// Create one directory with exactly `mode` (see [`mkdir_all`]); whether
/// this call made it (false: it was already there as a directory).
pub fn mkdir_exact(path: &Path, mode: u32) -> std::io::Result<bool> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(false),
        Err(e) => return Err(e),
    }
    // Opened without following a link: a directory swapped for a link
    // between the two calls is refused rather than followed.
    let dir = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::fs::fchmod(&dir, rustix::fs::Mode::from_raw_mode(mode))?;
    Ok(true)
}

/// The first executable `name` on PATH.
pub fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Whether process `pid` still exists (a signal 0 probe; EPERM means it
/// exists but belongs to someone else).
pub fn pid_alive(pid: i32) -> bool {
    use nix::sys::signal::kill;
    matches!(kill(nix::unistd::Pid::from_raw(pid), None), Ok(()) | Err(nix::errno::Errno::EPERM))
}

/// Random bytes from the kernel, for lock tokens and link names. A kernel
/// that keeps refusing is an error, not a retry loop.
pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    getrandom::fill(buf).map_err(std::io::Error::from)
}

/// The process's umask, as /proc/self/status shows it (reading it with
/// umask(2) would mean setting it, for a moment, under other threads);
/// 022 when it cannot be read.
pub fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}
