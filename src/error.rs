//! What kind of failure an error is, in ripgrep's shape: library errors
//! say what kind they are ([`Classify`]), commands return `anyhow::Result`
//! and use `?`, and one function at the top (`cli::errors`) prints one
//! line and picks the exit code from the first classified error of the
//! chain. So a new error type is one `impl Classify` plus one line in
//! that function's list, and no command decides an exit code by hand.
//! This module depends on nothing else of mtbx, so every subsystem can
//! use it without a cycle.

use std::error::Error as StdError;

/// What kind of failure, for exit codes and for whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The user's input is wrong: fix the command line or a config file.
    BadInput,
    /// The image, tag, platform, container or blob does not exist.
    NotFound,
    /// Credentials missing or refused.
    Auth,
    /// The registry could not be reached or kept failing.
    Network,
    /// Anything else that went wrong, including a peer's bad response.
    Failed,
    /// The command exists but could not be executed (as a shell says 126).
    CannotExec,
    /// The command does not exist (as a shell says 127).
    CommandNotFound,
    /// A container's provisioning or upgrade (its package manager or an
    /// init hook) failed.
    Provision,
}

impl Kind {
    /// The documented exit code (README, "Exit codes").
    pub const fn exit_code(self) -> i32 {
        match self {
            Kind::Failed => 1,
            Kind::BadInput => 2,
            Kind::NotFound => 3,
            Kind::Auth => 4,
            Kind::Network => 5,
            Kind::Provision => 6,
            Kind::CannotExec => 126,
            Kind::CommandNotFound => 127,
        }
    }
}

/// A library error that knows its kind.
pub trait Classify: StdError {
    /// The kind of failure.
    fn kind(&self) -> Kind;
}

/// An error and its causes on one line, `outer: cause: root`, for
/// front ends that print or log a whole chain.
pub fn chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Bad input found by the command line itself (a conflicting option, a
/// name that does not exist): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

impl Classify for BadInput {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

/// A failure a child process already reported on stderr: nothing more is
/// printed, and mtbx exits with the child's code.
#[derive(Debug, thiserror::Error)]
#[error("exited with code {0}")]
pub struct Reported(pub i32);

impl Classify for Reported {
    fn kind(&self) -> Kind {
        Kind::Failed
    }
}

/// The value of a finished task. A task that panicked panics here with
/// its own payload (`resume_unwind`), so the first message stays the one
/// that says what went wrong, rather than an `expect` on the join hiding
/// it behind its own.
pub async fn joined<T>(task: tokio::task::JoinHandle<T>) -> T {
    match task.await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            // Only a runtime shutting down cancels mtbx's tasks, and none
            // is awaited then.
            Err(e) => panic!("a task was cancelled: {e}"),
        },
    }
}

#[cfg(test)]
mod join_tests {
    #[test]
    fn a_panicking_task_panics_with_its_own_message() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async {
                super::joined(tokio::task::spawn_blocking(|| -> u8 { panic!("the real cause") })).await
            })
        }));
        let payload = got.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>().copied(), Some("the real cause"));
        assert_eq!(rt.block_on(async { super::joined(tokio::task::spawn_blocking(|| 7)).await }), 7);
    }
}
