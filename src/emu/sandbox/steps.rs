//! What both sandboxes' children do, and how they tell the parent which
//! step failed. Everything here runs between fork and exec, so it is
//! async-signal-safe: system calls (nix's, which pass a `CStr` through
//! as it is) on buffers prepared before the fork, no allocation.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;

use super::{SandboxError, Step};

pub(super) const SETGROUPS: &CStr = c"/proc/self/setgroups";
pub(super) const UID_MAP: &CStr = c"/proc/self/uid_map";
pub(super) const GID_MAP: &CStr = c"/proc/self/gid_map";
pub(super) const ROOT: &CStr = c"/";
pub(super) const BINFMT_MISC: &CStr = c"binfmt_misc";

/// open + one write + close.
pub(super) fn write_file(path: &CStr, data: &[u8]) -> Result<(), Errno> {
    let fd = nix::fcntl::open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    match nix::unistd::write(&fd, data)? {
        n if n == data.len() => Ok(()),
        _ => Err(Errno::EIO),
    }
}

/// Map the user namespace this process just entered: setgroups denied
/// (an unprivileged process may write a gid map only then), then the
/// maps.
pub(super) fn map_ids(uid_map: &[u8], gid_map: &[u8]) -> Result<(), (Step, Errno)> {
    write_file(SETGROUPS, b"deny").map_err(|e| (Step::Setgroups, e))?;
    write_file(UID_MAP, uid_map).map_err(|e| (Step::UidMap, e))?;
    write_file(GID_MAP, gid_map).map_err(|e| (Step::GidMap, e))
}

/// mount(2), its optional arguments None for NULL.
pub(super) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: MsFlags,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    nix::mount::mount(source, target, fstype, flags, data)
}

/// Every mount of the new mount namespace private, so that nothing
/// mounted in it propagates to the host's.
pub(super) fn make_mounts_private() -> Result<(), Errno> {
    mount(None, ROOT, None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)
}

/// A binfmt_misc instance at `mountpoint`: the user namespace's own.
pub(super) fn mount_binfmt_misc(mountpoint: &CStr) -> Result<(), Errno> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some(BINFMT_MISC), mountpoint, Some(BINFMT_MISC), flags, None)
}

/// Report a failed step through a pipe: [step, index, errno as 4 LE
/// bytes]; the index says which of several mounts or programs.
pub(super) fn report(fd: BorrowedFd<'_>, step: Step, errno: Errno) {
    report_at(fd, step, 0, errno)
}

pub(super) fn report_at(fd: BorrowedFd<'_>, step: Step, index: u8, errno: Errno) {
    let e = (errno as i32).to_le_bytes();
    let msg = [step as u8, index, e[0], e[1], e[2], e[3]];
    // Nothing to do if the parent is gone: the exit code tells it anyway.
    let _ = nix::unistd::write(fd, &msg);
}

pub(super) fn read_report(read: OwnedFd) -> Option<SandboxError> {
    let (step, _, errno) = read_raw_report(read)?;
    Some(SandboxError::Step { step, errno })
}

/// The first report on the pipe, once every writer has closed it.
pub(super) fn read_raw_report(read: OwnedFd) -> Option<(Step, u8, Errno)> {
    let mut buf = Vec::new();
    std::fs::File::from(read).take(64).read_to_end(&mut buf).ok()?;
    let step = Step::from_u8(*buf.first()?)?;
    let index = *buf.get(1)?;
    let errno = i32::from_le_bytes(buf.get(2..6)?.try_into().ok()?);
    Some((step, index, Errno::from_raw(errno)))
}

/// The report pipe (read end, write end), close-on-exec: an exec that
/// works closes the child's copy, so the parent reads nothing.
pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::Io { what: "creating a pipe".into(), source: e.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_as_written() {
        let (read, write) = pipe().unwrap();
        use std::os::fd::AsFd;
        report_at(write.as_fd(), Step::RootfsMount, 3, Errno::EACCES);
        drop(write);
        assert_eq!(read_raw_report(read), Some((Step::RootfsMount, 3, Errno::EACCES)));
    }
}
