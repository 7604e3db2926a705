//! Where the sandbox makes its children: the one module of `emu` allowed
//! `unsafe`. A child forked from a multithreaded process may only make
//! async-signal-safe calls until it execs or exits, which the compiler
//! cannot check; so each fork here runs one named function of the
//! sandbox in the child, a function that keeps to that rule (system calls
//! on buffers prepared before the fork, no allocation), and leaves by
//! exec or `exit_child`. A change to those functions must keep it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};

use super::program::Plan;
use super::rootfs::RootfsPlan;
use crate::sys::child::clone_fork;

/// Fork a child that runs [`Plan::probe_child`] with `report` as its
/// report pipe; the child's pid.
pub(super) fn probe(plan: &Plan, report: BorrowedFd<'_>) -> Result<Pid, Errno> {
    // SAFETY: the child runs only Plan::probe_child, async-signal-safe,
    // which leaves by exit_child.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => plan.probe_child(report),
        ForkResult::Parent { child } => Ok(child),
    }
}

/// Have `cmd`'s child run [`Plan::enter_before_exec`] before exec, which
/// reports a failed step on `report`. The hook owns `report` (and `plan`):
/// dropping `cmd` closes the parent's copy.
pub(super) fn enter_before_exec(cmd: &mut Command, plan: Plan, report: OwnedFd) {
    let hook = move || plan.enter_before_exec(report.as_fd());
    // SAFETY: the hook runs only Plan::enter_before_exec, async-signal-safe;
    // everything it touches was moved in before the fork.
    unsafe { cmd.pre_exec(hook) };
}

/// Clone a child into new user, mount and PID namespaces that runs
/// [`RootfsPlan::pid1`] with `report` as its report pipe; the child's pid
/// (as this process sees it). Each process owns its copy of `report`:
/// the parent's is closed on return.
pub(super) fn clone_sandbox(plan: &RootfsPlan, report: OwnedFd) -> Result<Pid, Errno> {
    let namespaces = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
    // SAFETY: the child runs only RootfsPlan::pid1, async-signal-safe,
    // which never returns (it leaves by exit_child).
    match unsafe { clone_fork(namespaces) }? {
        ForkResult::Child => plan.pid1(report),
        ForkResult::Parent { child } => Ok(child),
    }
}

/// In the sandbox's pid 1: fork the command's process, which runs
/// [`RootfsPlan::exec`]; its pid.
pub(super) fn fork_command(plan: &RootfsPlan, report: BorrowedFd<'_>) -> Result<Pid, Errno> {
    // SAFETY: the child runs only RootfsPlan::exec, async-signal-safe,
    // which leaves by execve or exit_child.
    match unsafe { clone_fork(CloneFlags::empty()) }? {
        ForkResult::Child => plan.exec(report),
        ForkResult::Parent { child } => Ok(child),
    }
}
