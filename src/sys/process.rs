//! Process-level calls with preconditions the compiler cannot check: each
//! function here checks them at run time, or its callers cannot break them.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Remove `key` from the environment, which is sound only while no other
/// thread can read the environment: refused once this process has a
/// second thread.
pub fn remove_env_var_single_threaded(key: &str) -> std::io::Result<()> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(std::io::Error::other(format!(
            "cannot remove {key} from the environment: {threads} threads are running"
        )));
    }
    // SAFETY: this process has a single thread (checked just above), so
    // nothing reads the environment concurrently.
    unsafe { std::env::remove_var(key) };
    Ok(())
}

/// Own a descriptor this process inherited across exec, by its number.
/// Only an open descriptor without close-on-exec qualifies: Rust's std
/// opens every descriptor close-on-exec, so this one can only have come
/// from the parent. It is made close-on-exec here, so a second claim on
/// the same number is refused rather than owning it twice.
pub fn take_inherited_fd(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor's flags; a number that is
    // not open gives EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if flags & libc::FD_CLOEXEC != 0 {
        return Err(std::io::Error::other(format!(
            "descriptor {fd} was not inherited (it is close-on-exec)"
        )));
    }
    // SAFETY: as F_GETFD above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open and was not opened by this program
    // (checked above); from here on this OwnedFd is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Let `cmd`'s child inherit `fds` (they stay close-on-exec in this
/// process, so no other child gets them).
pub fn inherit_across_exec(cmd: &mut Command, fds: &[BorrowedFd<'_>]) {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: between fork and exec the closure calls only fcntl, which is
    // async-signal-safe, and allocates nothing (raw is moved in whole).
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &raw {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Start `cmd`'s child in a session of its own (setsid), and with
/// `controlling_tty`, make its stdin (a terminal) the session's
/// controlling terminal: a command host-exec runs, which must not share
/// the agent's session and, on a terminal, gets Ctrl-C and job control
/// from it.
pub fn new_session(cmd: &mut Command, controlling_tty: bool) {
    // SAFETY: between fork and exec the closure calls only setsid(2) and
    // ioctl(2), both async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if controlling_tty && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Ignore Ctrl-C in this process: a parent that must outlive its child,
/// which handles the signal itself.
pub fn ignore_sigint() -> std::io::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety
    // requirement applies.
    unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) }?;
    Ok(())
}

/// Ignore the signals a terminal sends to its whole foreground process
/// group (Ctrl-C's SIGINT, Ctrl-\\'s SIGQUIT): a parent that waits for a
/// child in the same group, which gets them too and decides. And SIGTTOU,
/// so that it can take the terminal back from a child that had it.
pub fn ignore_terminal_signals() -> std::io::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for s in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTTOU] {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { signal(s, SigHandler::SigIgn) }?;
    }
    Ok(())
}

/// A resource limit of this process: (soft, hard), `u64::MAX` for none.
pub fn rlimit(resource: nix::sys::resource::Resource) -> std::io::Result<(u64, u64)> {
    nix::sys::resource::getrlimit(resource).map_err(std::io::Error::from)
}

/// Whether this process may raise its hard limit of open files to `to`:
/// it tries (a raise this process keeps, as podman raises its own). Only
/// CAP_SYS_RESOURCE allows a raise above the current hard limit, and
/// `fs.nr_open` caps it even then.
pub fn can_raise_nofile(to: u64) -> bool {
    use nix::sys::resource::{setrlimit, Resource};
    match rlimit(Resource::RLIMIT_NOFILE) {
        Ok((_, hard)) if hard >= to => true,
        Ok((soft, _)) => setrlimit(Resource::RLIMIT_NOFILE, soft, to).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inherited_descriptors_can_be_taken() {
        let own = std::fs::File::open("/proc/self/exe").unwrap();
        let e = take_inherited_fd(own.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("not inherited"), "{e}");
        assert_eq!(take_inherited_fd(1 << 20).unwrap_err().raw_os_error(), Some(libc::EBADF));
        // A descriptor without close-on-exec, as a parent hands one down:
        // taken once, refused the second time.
        let (r, _w) = nix::unistd::pipe().unwrap();
        let raw = std::os::fd::IntoRawFd::into_raw_fd(r);
        let taken = take_inherited_fd(raw).unwrap();
        assert!(take_inherited_fd(raw).is_err(), "a second claim on the same number");
        drop(taken);
    }

    #[test]
    fn the_environment_is_left_alone_while_threads_run() {
        let _other = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)));
        std::env::set_var("MTBX_TEST_REMOVE_ENV", "1");
        assert!(remove_env_var_single_threaded("MTBX_TEST_REMOVE_ENV").is_err());
        assert_eq!(std::env::var("MTBX_TEST_REMOVE_ENV").as_deref(), Ok("1"));
    }
}
