//! One path from an error to an exit code, in ripgrep's shape: library
//! errors say what kind of failure they are ([`Classify`]), commands return
//! `anyhow::Result` and use `?`, and [`report`] at the top prints one line
//! and picks the code from the first classified error in the chain. So a
//! new error type is one `impl Classify` and one line in [`classify`], and
//! no command decides an exit code by hand.

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

/// The kind of one error of the chain, if its type is known here.
fn classify(e: &(dyn StdError + 'static)) -> Option<Kind> {
    macro_rules! known {
        ($($t:ty),* $(,)?) => {
            $(if let Some(e) = e.downcast_ref::<$t>() {
                return Some(e.kind());
            })*
        };
    }
    known!(
        BadInput,
        crate::image::registry::RegistryError,
        crate::image::inspect::InspectError,
        crate::image::proxy::ProxyError,
        crate::image::resolved::ImageError,
        crate::image::registries_conf::RegistriesError,
        crate::image::reference::RefError,
        crate::image::platform::ArchConflict,
        crate::pull::PullError,
    );
    None
}

/// The kind of an error: that of the outermost error in its chain whose
/// type knows one, [`Kind::Failed`] otherwise.
pub fn kind_of(err: &anyhow::Error) -> Kind {
    err.chain().find_map(classify).unwrap_or(Kind::Failed)
}
