//! containers/storage's lock files, taken the way podman takes them so a
//! running podman and mtbx never write the same JSON at once.
//!
//! A lock is a POSIX record lock on the whole file. mtbx uses the
//! open-file-description flavour (F_OFD_SETLKW): it conflicts with podman's
//! classic fcntl locks exactly as they conflict with each other, but belongs
//! to the open file rather than the process, so two threads of mtbx exclude
//! each other too and closing some other descriptor never drops it. (flock(2)
//! would not conflict with podman's locks at all.)
//!
//! The first 64 bytes of a lock file are the last writer's token: unix
//! nanoseconds (u64 LE), a counter (u64 LE), the pid (u32 LE) and random
//! bytes. A writer replaces it before unlocking; podman compares it with the
//! token it last saw and reloads the JSON when it changed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

/// The size of the last-writer token.
pub const TOKEN_LEN: usize = 64;

/// An open lock file.
#[derive(Debug)]
pub struct LockFile {
    file: File,
    path: PathBuf,
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Held<'a> {
    lock: &'a LockFile,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl LockFile {
    /// Open (creating, mode 0644 as containers/storage does) the lock file.
    pub fn open(path: &Path) -> std::io::Result<LockFile> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o644).open(path)?;
        Ok(LockFile { file, path: path.to_path_buf() })
    }

    /// Wait for the exclusive lock.
    pub fn write(&self) -> std::io::Result<Held<'_>> {
        self.set(libc::F_WRLCK as libc::c_short)?;
        Ok(Held { lock: self })
    }

    /// Wait for a shared lock.
    pub fn read(&self) -> std::io::Result<Held<'_>> {
        self.set(libc::F_RDLCK as libc::c_short)?;
        Ok(Held { lock: self })
    }

    /// The last writer's token as it is now.
    pub fn token(&self) -> std::io::Result<[u8; TOKEN_LEN]> {
        let mut buf = [0u8; TOKEN_LEN];
        let n = self.file.read_at(&mut buf, 0)?;
        buf[n..].fill(0);
        Ok(buf)
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn set(&self, kind: libc::c_short) -> std::io::Result<()> {
        let fl = crate::sys::files::whole_file_lock(kind);
        loop {
            match fcntl(&self.file, FcntlArg::F_OFD_SETLKW(&fl)) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Held<'_> {
    /// Record that this process changed what the lock guards: a new
    /// last-writer token, so podman processes reload.
    pub fn touch(&self) -> std::io::Result<()> {
        self.lock.file.write_all_at(&new_token()?, 0)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.lock.set(libc::F_UNLCK as libc::c_short);
    }
}

fn new_token() -> std::io::Result<[u8; TOKEN_LEN]> {
    let mut t = [0u8; TOKEN_LEN];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t[0..8].copy_from_slice(&nanos.to_le_bytes());
    t[8..16].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    t[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    crate::fsutil::random_bytes(&mut t[20..])?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_changes_the_token_and_records_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let lock = LockFile::open(&dir.path().join("x.lock")).unwrap();
        let before = lock.token().unwrap();
        let held = lock.write().unwrap();
        held.touch().unwrap();
        let after = lock.token().unwrap();
        assert_ne!(before, after);
        assert_eq!(u32::from_le_bytes(after[16..20].try_into().unwrap()), std::process::id());
        drop(held);
        assert_eq!(std::fs::metadata(dir.path().join("x.lock")).unwrap().len(), TOKEN_LEN as u64);
    }

    #[test]
    fn two_descriptors_in_one_process_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let a = LockFile::open(&path).unwrap();
        let held = a.write().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p2 = path.clone();
        let t = std::thread::spawn(move || {
            let b = LockFile::open(&p2).unwrap();
            let _h = b.write().unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "second writer got in");
        drop(held);
        rx.recv().unwrap();
        t.join().unwrap();
    }
}
