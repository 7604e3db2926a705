//! The process-level half of the CPU-model shim (see [`crate::emu::cpu`]):
//! what the shim must undo before it becomes QEMU, so that the emulated
//! program starts in the state the kernel would have given QEMU directly.
//!
//! Rust's runtime changes two things before `main`: it ignores SIGPIPE,
//! and it opens /dev/null on any of descriptors 0, 1, 2 that were closed.
//! Both would be inherited by QEMU and so by the guest (`yes | head` would
//! see EPIPE instead of dying; a program started with stdout closed would
//! find it open). So a constructor, which the C library runs before Rust's
//! runtime starts, records the state as the process received it, and
//! [`exec_qemu`] restores it. The kernel also gave the shim an open
//! descriptor of the program (binfmt_misc flag O, `AT_EXECFD`, not
//! close-on-exec): [`exec_qemu`] closes it, so it does not leak into the
//! guest.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static SIGPIPE_IGNORED_AT_START: AtomicBool = AtomicBool::new(false);
static CLOSED_STD_FDS_AT_START: AtomicU8 = AtomicU8::new(0);

/// Runs before Rust's runtime initialisation (the C library calls
/// `.init_array` entries before `main`); it only reads: one sigaction
/// query and three fcntl calls, a few microseconds per mtbx start.
extern "C" fn record_start_state() {
    // SAFETY: sigaction with a null new action only reads the current
    // disposition into a zeroed struct on the stack.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0 {
            SIGPIPE_IGNORED_AT_START.store(old.sa_sigaction == libc::SIG_IGN, Ordering::Relaxed);
        }
    }
    let mut closed = 0u8;
    for fd in 0..3 {
        // SAFETY: F_GETFD only reads a descriptor's flags (EBADF if closed).
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            closed |= 1 << fd;
        }
    }
    CLOSED_STD_FDS_AT_START.store(closed, Ordering::Relaxed);
}

#[used]
#[link_section = ".init_array"]
static RECORD_START_STATE: extern "C" fn() = record_start_state;

/// `AT_EXECFD` from the auxiliary vector: the descriptor binfmt_misc's
/// flag O hands the interpreter, if it did.
fn exec_fd() -> Option<libc::c_int> {
    // SAFETY: getauxval reads this process's auxiliary vector; errno is
    // how it tells an absent entry (ENOENT) from a zero one.
    unsafe {
        *libc::__errno_location() = 0;
        let v = libc::getauxval(libc::AT_EXECFD);
        if v == 0 && *libc::__errno_location() != 0 {
            None
        } else {
            libc::c_int::try_from(v).ok()
        }
    }
}

/// Become `qemu` with `args` (argv[0] first), after restoring the state
/// the process started with and closing the program's descriptor. The
/// credentials stay as the kernel set them: execve of a file without
/// setuid bits keeps the effective ids, so a setuid program (flag C) runs
/// with its owner's rights under QEMU as it would without the shim.
/// Returns only on failure, with the error of execve.
pub fn exec_qemu(qemu: OsString, args: Vec<OsString>) -> std::io::Error {
    let to_c = |s: OsString| CString::new(s.into_vec()).map_err(std::io::Error::other);
    let qemu = match to_c(qemu) {
        Ok(q) => q,
        Err(e) => return e,
    };
    let args: Vec<CString> = match args.into_iter().map(to_c).collect() {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    if let Some(fd) = exec_fd() {
        // SAFETY: the kernel opened this descriptor for us and nothing in
        // this process uses it; QEMU opens the program by its path.
        unsafe { libc::close(fd) };
    }
    let closed = CLOSED_STD_FDS_AT_START.load(Ordering::Relaxed);
    for fd in 0..3 {
        if closed & (1 << fd) != 0 {
            // SAFETY: closes the /dev/null Rust's runtime opened in place
            // of a descriptor that was closed when the process started.
            unsafe { libc::close(fd) };
        }
    }
    if !SIGPIPE_IGNORED_AT_START.load(Ordering::Relaxed) {
        // SAFETY: restores the default disposition; installs no handler.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // SAFETY: argv is a NULL-terminated array of pointers into `args`,
    // which outlives the call; environ is the process's own environment.
    unsafe {
        extern "C" {
            static environ: *const *const libc::c_char;
        }
        libc::execve(qemu.as_ptr(), argv.as_ptr(), environ);
    }
    std::io::Error::last_os_error()
}

/// Whether binfmt_misc passed the program's original argv[0] (flag P):
/// the kernel says so in `AT_FLAGS`, as QEMU itself reads it.
pub fn preserve_argv0() -> bool {
    /// AT_FLAGS_PRESERVE_ARGV0 (include/uapi/linux/binfmts.h).
    const AT_FLAGS_PRESERVE_ARGV0: libc::c_ulong = 1;
    // SAFETY: getauxval only reads this process's auxiliary vector.
    unsafe { libc::getauxval(libc::AT_FLAGS) & AT_FLAGS_PRESERVE_ARGV0 != 0 }
}
