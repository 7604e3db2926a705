//! File-level calls whose libc types have no safe constructor.

/// A POSIX record lock description covering the whole file, of type
/// `l_type` (F_RDLCK, F_WRLCK or F_UNLCK), for F_OFD_SETLK(W).
pub fn whole_file_lock(l_type: libc::c_short) -> libc::flock {
    // SAFETY: flock is plain data and all-zero is a valid value of it;
    // l_start 0 and l_len 0 cover the whole file, and l_pid must be 0 for
    // OFD locks. Zeroing also fills the padding fields some targets have,
    // which a struct literal could not name.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl
}

/// `flock(2)` without waiting: a shared lock (`exclusive` false) or an
/// exclusive one on `file`'s open file description; on a description
/// that holds the other kind, the lock is converted. Ok(false) when
/// another description holds a conflicting lock.
pub fn try_flock(file: &std::fs::File, exclusive: bool) -> std::io::Result<bool> {
    use rustix::fs::FlockOperation;
    let op = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    match rustix::fs::flock(file, op) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What a path names when it had to be a regular file and is not: "a
/// FIFO", "a directory", ... (the inner error of [`open_regular`]'s
/// refusal).
#[derive(Debug, thiserror::Error)]
#[error("it is {0}, not a regular file")]
pub struct NotRegular(pub &'static str);

fn not_regular(mode: u32) -> std::io::Error {
    let what = match mode & libc::S_IFMT {
        libc::S_IFIFO => "a FIFO",
        libc::S_IFDIR => "a directory",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        _ => "not a file",
    };
    std::io::Error::new(std::io::ErrorKind::InvalidInput, NotRegular(what))
}

/// Whether `e` is [`open_regular`]'s refusal of something else than a
/// regular file.
pub fn is_not_regular(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotRegular>())
}

/// The file an open descriptor names, for reading, if it is a regular
/// file: a FIFO or a device is refused before anything is read from it
/// (reading would block forever, or never end); the descriptor is made
/// blocking again (it was opened non-blocking, see [`open_regular`]).
fn regular(fd: std::os::fd::OwnedFd) -> std::io::Result<std::fs::File> {
    let st = rustix::fs::fstat(&fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(not_regular(st.st_mode));
    }
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(std::fs::File::from(fd))
}

/// The one way mtbx opens a file it reads from outside (a layout's
/// index, an archive, a root file system's passwd, a desktop entry):
/// open(2) with O_NONBLOCK, so that a FIFO's open cannot block waiting
/// for a writer, then fstat, so that only a regular file is ever read.
/// `follow` false adds O_NOFOLLOW: a symbolic link as the last component
/// is refused (ELOOP).
pub fn open_regular(path: &std::path::Path, follow: bool) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    regular(rustix::fs::open(path, flags, Mode::empty())?)
}

/// [`open_regular`] for `rel` under the directory `dir`, resolved by
/// openat2(2) with `how` (RESOLVE_BENEATH: links that lead out of `dir`
/// are refused by the kernel; RESOLVE_IN_ROOT: `dir` is `/` for them).
pub fn open_regular_at(
    dir: std::os::fd::BorrowedFd<'_>,
    rel: &std::path::Path,
    how: rustix::fs::ResolveFlags,
) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat2(dir, rel, flags, Mode::empty(), how | ResolveFlags::NO_MAGICLINKS)?;
    regular(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_directories_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::fs::write(d.path().join("file"), b"x").unwrap();
        std::os::unix::fs::symlink("file", d.path().join("link")).unwrap();
        let e = open_regular(&fifo, true).unwrap_err();
        assert!(is_not_regular(&e) && e.to_string().contains("a FIFO"), "{e}");
        assert!(is_not_regular(&open_regular(d.path(), true).unwrap_err()));
        assert!(open_regular(&d.path().join("link"), true).is_ok());
        assert!(open_regular(&d.path().join("link"), false).is_err());
        let dir = rustix::fs::open(d.path(), rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
        let beneath = rustix::fs::ResolveFlags::BENEATH;
        use std::os::fd::AsFd;
        assert!(open_regular_at(dir.as_fd(), std::path::Path::new("link"), beneath).is_ok());
        assert!(is_not_regular(
            &open_regular_at(dir.as_fd(), std::path::Path::new("fifo"), beneath).unwrap_err()
        ));
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("out")).unwrap();
        assert!(open_regular_at(dir.as_fd(), std::path::Path::new("out"), beneath).is_err());
        // Still blocking, as a reader expects.
        let f = open_regular(&d.path().join("file"), true).unwrap();
        assert!(!rustix::fs::fcntl_getfl(&f).unwrap().contains(rustix::fs::OFlags::NONBLOCK));
    }
}
