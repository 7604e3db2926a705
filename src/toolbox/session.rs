//! Sessions and `--auto-stop` (Toolbx issue #114: stop a container when
//! its last session ends).
//!
//! Every `mtbx run`/`enter` (and so every exported wrapper) holds a shared
//! `flock` on `sessions.lock` in the container's stamp directory for its
//! whole life. The kernel drops the lock when the process ends, however
//! it ends, so there is no count to get wrong. When a session of an
//! auto-stop container ends, it asks for the exclusive lock without
//! waiting: it gets it only when no other session holds the shared one,
//! i.e. it was the last. It then stops the container while holding the
//! exclusive lock, so a session starting meanwhile waits for the stop to
//! finish and then starts the container again (it never runs a command
//! in a container that is being stopped under it).
//!
//! Whether a container stops by itself is a file in the stamp directory
//! (`auto-stop`), so the check costs no podman call; `create --auto-stop`
//! writes it and records the `io.github.mtbx.auto-stop` label, which
//! `list` shows and from which a run rewrites the file when the stamp
//! directory was lost (a reboot clears `XDG_RUNTIME_DIR`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file every session holds shared.
pub const LOCK_FILE: &str = "sessions.lock";
/// The file whose presence says: stop after the last session.
pub const AUTO_STOP_FILE: &str = "auto-stop";
/// How long a session waits for another mtbx to finish stopping the
/// container (podman stop's own limit is 10 s before it kills).
pub const STOP_WAIT: Duration = Duration::from_secs(120);

/// Why a session could not begin.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The lock file cannot be opened or locked.
    #[error("cannot lock {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another mtbx took too long stopping the container.
    #[error("another mtbx has been stopping this container for {} s: see `podman ps`, or retry", STOP_WAIT.as_secs())]
    StopTooLong,
}

impl crate::error::Classify for SessionError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Failed
    }
}

/// A live session: the shared lock on the container's lock file.
#[derive(Debug)]
pub struct Session {
    file: File,
    dir: PathBuf,
}

/// The last session of an auto-stop container, holding the exclusive
/// lock: stop the container, then drop it.
#[derive(Debug)]
pub struct LastSession {
    _file: File,
}

impl Session {
    /// Begin a session in the stamp directory `dir` (which must exist):
    /// wait (at most [`STOP_WAIT`]) while another session stops the
    /// container, then hold the lock shared.
    pub fn begin(dir: &Path) -> Result<Session, SessionError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(LOCK_FILE);
        let lock_err = |source| SessionError::Lock { path: path.clone(), source };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(lock_err)?;
        let start = Instant::now();
        loop {
            match crate::sys::files::try_flock(&file, false) {
                Ok(true) => return Ok(Session { file, dir: dir.to_path_buf() }),
                Ok(false) if start.elapsed() < STOP_WAIT => std::thread::sleep(Duration::from_millis(20)),
                Ok(false) => return Err(SessionError::StopTooLong),
                Err(e) => return Err(lock_err(e)),
            }
        }
    }

    /// Whether the container stops after its last session.
    pub fn auto_stop(&self) -> bool {
        is_auto_stop(&self.dir)
    }

    /// End the session. For an auto-stop container that was its last
    /// session, the exclusive lock to stop it under; None otherwise (the
    /// shared lock is gone either way).
    pub fn end(self) -> Option<LastSession> {
        if !self.auto_stop() {
            return None;
        }
        self.end_last()
    }

    /// End the session as the one that stops the container, whether or
    /// not it stops by itself (`upgrade` stops a container it started):
    /// the exclusive lock when no other session holds the shared one.
    pub fn end_last(self) -> Option<LastSession> {
        // flock converts shared to exclusive on the same descriptor; it
        // fails without waiting when any other session holds it shared.
        match crate::sys::files::try_flock(&self.file, true) {
            Ok(true) => Some(LastSession { _file: self.file }),
            _ => None,
        }
    }
}

/// Whether the stamp directory `dir` says: stop after the last session.
pub fn is_auto_stop(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(AUTO_STOP_FILE)).is_ok_and(|m| m.is_file())
}

/// Record in the stamp directory whether the container stops by itself.
pub fn set_auto_stop(dir: &Path, on: bool) -> std::io::Result<()> {
    let f = dir.join(AUTO_STOP_FILE);
    match (on, is_auto_stop(dir)) {
        (true, false) => crate::fsutil::write_atomic(&f, b"stop after the last mtbx session\n", 0o644),
        (false, true) => std::fs::remove_file(f),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// flock locks belong to open files, so sessions of one process
    /// behave as sessions of many.
    #[test]
    fn only_the_last_session_of_an_auto_stop_container_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = Session::begin(dir.path()).unwrap();
        let b = Session::begin(dir.path()).unwrap();
        assert!(a.end().is_none(), "not auto-stop: never");
        let a = Session::begin(dir.path()).unwrap();
        set_auto_stop(dir.path(), true).unwrap();
        assert!(a.end().is_none(), "b is still alive");
        let last = b.end().expect("b was the last");
        // A session starting while the last one stops waits for it.
        let d = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let _s = Session::begin(&d).unwrap();
            std::time::Instant::now()
        });
        std::thread::sleep(Duration::from_millis(200));
        let released = std::time::Instant::now();
        drop(last);
        assert!(waiter.join().unwrap() >= released, "the new session began after the stop");
        set_auto_stop(dir.path(), false).unwrap();
        assert!(!is_auto_stop(dir.path()));
    }
}
