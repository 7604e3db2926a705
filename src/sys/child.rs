//! Calls for a child between fork and exec (the sandbox's, see
//! `emu::sandbox`): the ones that nix has no safe, allocation-free
//! function for. A child forked from a multithreaded process may only
//! make async-signal-safe calls, since another thread may have held a
//! lock (the allocator's, the C library's) at the fork; so everything
//! here works on buffers made before the fork and allocates nothing.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{ForkResult, Pid};

/// fork(2) made by the raw clone(2) system call, with `namespaces`
/// (CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID) created for the child.
/// Unlike unshare(2), this works from a multithreaded process: the new
/// namespaces are the child's, which has one thread. No new stack: the
/// child runs on a copy of this one, as after fork. The C library's
/// fork() is not used: its at-fork handlers take the library's locks,
/// which a child of a multithreaded parent may find held forever.
///
/// # Safety
///
/// The contract of [`nix::unistd::fork`]: in the child, until it execs
/// or leaves with [`exit_child`], only async-signal-safe calls (no
/// allocation, no lock another thread could have held), and it must not
/// return into code that would then run the parent's destructors or
/// unwind.
pub unsafe fn clone_fork(namespaces: CloneFlags) -> Result<ForkResult, Errno> {
    let flags = namespaces.bits() as libc::c_long | libc::SIGCHLD as libc::c_long;
    // SAFETY: clone without a new stack, parent tid, child tid or TLS is
    // fork with flags; the caller upholds fork's contract for the child.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
    match pid {
        p if p < 0 => Err(Errno::last()),
        0 => Ok(ForkResult::Child),
        p => Ok(ForkResult::Parent { child: Pid::from_raw(p as libc::pid_t) }),
    }
}

/// Leave the process at once with `code`, as a forked child must: no
/// atexit handlers, no flushing of buffers that are copies of the
/// parent's.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit(2) ends the process; nothing runs after it, so no
    // invariant of this process can be observed broken.
    unsafe { libc::_exit(code) }
}

/// NUL-terminated strings and the NULL-terminated array of pointers to
/// them that execve(2) takes, made before the fork.
pub struct CStrArray {
    /// Owns what `ptrs` points into (a CString's bytes stay where they
    /// are when the vector moves).
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStrArray {
    /// The array of `strings`.
    pub fn new(strings: Vec<CString>) -> CStrArray {
        let ptrs = strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        CStrArray { _strings: strings, ptrs }
    }
}

/// execve(2) `path` with `argv` and `env`, without allocating (nix's
/// execve builds its pointer arrays on the heap). Returns only on
/// failure, with the error.
pub fn execve(path: &CStr, argv: &CStrArray, env: &CStrArray) -> Errno {
    // SAFETY: path is NUL-terminated, and both arrays are NULL-terminated
    // arrays of pointers into strings their CStrArray owns, which live
    // for the call.
    unsafe { libc::execve(path.as_ptr(), argv.ptrs.as_ptr(), env.ptrs.as_ptr()) };
    Errno::last()
}

/// The process [`forward_signals`]' handler passes signals on to (0:
/// none yet, the signal is dropped).
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid > 0 {
        if let Ok(sig) = Signal::try_from(sig) {
            // kill(2) is async-signal-safe.
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
        }
    }
}

/// Handle `signals` by passing them on to the process named by
/// [`forward_signals_to`] (SA_RESTART: interrupted calls go on). For a
/// process that waits for a child which must get the signals: pid 1 of
/// a PID namespace, which the kernel does not kill with a signal it has
/// no handler for.
pub fn forward_signals(signals: &[Signal]) -> Result<(), Errno> {
    let action = SigAction::new(SigHandler::Handler(forward), SaFlags::SA_RESTART, SigSet::empty());
    for &sig in signals {
        // SAFETY: the handler only loads an atomic and calls kill(2), both
        // async-signal-safe, and touches no other state of the process.
        unsafe { nix::sys::signal::sigaction(sig, &action) }?;
    }
    Ok(())
}

/// Where [`forward_signals`]' handler sends signals from now on.
pub fn forward_signals_to(pid: Pid) {
    FORWARD_TO.store(pid.as_raw(), Ordering::SeqCst);
}

/// Every signal back to its default disposition (SIGKILL and SIGSTOP
/// have no other). For a child about to exec: a disposition set to
/// ignore survives exec, and mtbx ignores SIGPIPE.
pub fn default_signal_dispositions() {
    for sig in 1..32 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: SIG_DFL installs no handler code.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pointer_array_ends_in_null_and_names_the_strings() {
        let a = CStrArray::new(vec![c"sh".into(), c"-c".into()]);
        assert_eq!(a.ptrs.len(), 3);
        assert!(a.ptrs[2].is_null());
        // SAFETY: the pointers point into strings `a` owns.
        let first = unsafe { CStr::from_ptr(a.ptrs[0]) };
        assert_eq!(first, c"sh");
    }
}
