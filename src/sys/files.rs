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
