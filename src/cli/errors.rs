//! The one place an error becomes an exit code: the error types mtbx
//! knows are listed here (the top of the crate may depend on every
//! subsystem; [`crate::error`] itself depends on none).

use std::error::Error as StdError;

use crate::error::{BadInput, Classify, Kind, Reported};

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
        Reported,
        crate::cli::arch_cmd::ArchCmdError,
        crate::cli::binfmt_cmd::BinfmtCmdError,
        crate::toolbox::ToolboxError,
        crate::toolbox::ops::OpsError,
        crate::toolbox::options::OptionsError,
        crate::toolbox::engine::EngineError,
        crate::toolbox::inside::ExecError,
        crate::toolbox::host_exec::HostExecError,
        crate::toolbox::host_exec::agent::AgentError,
        crate::toolbox::export::ExportError,
        crate::toolbox::session::SessionError,
        crate::toolbox::provision::ProvisionError,
        crate::toolbox::assemble::AssembleError,
        crate::toolbox::selection::SelectError,
        crate::toolbox::naming::ConfigError,
        crate::toolbox::naming::ResolveError,
        crate::image::registry::RegistryError,
        crate::image::inspect::InspectError,
        crate::image::proxy::ProxyError,
        crate::image::local::LocalError,
        crate::image::resolved::ImageError,
        crate::image::reference::RefError,
        crate::image::platform::ArchConflict,
        crate::pull::PullError,
        crate::pull::save::SaveError,
        crate::storage::StorageError,
        crate::storage::config::ConfigError,
        crate::storage::apply::ApplyError,
        crate::emu::arch::UnknownArch,
        crate::image::registries_conf::RegistriesError,
        crate::sys::userns::UsernsError,
        crate::emu::register::RegisterError,
        crate::emu::rootfs::RootfsError,
        crate::emu::sandbox::SandboxError,
        crate::emu::cpu::CpuError,
    );
    None
}

/// The kind of an error: that of the outermost error in its chain whose
/// type knows one, [`Kind::Failed`] otherwise.
pub(crate) fn kind_of(err: &anyhow::Error) -> Kind {
    err.chain().find_map(classify).unwrap_or(Kind::Failed)
}

/// The exit code for an error: a child's own code when it already
/// reported the failure, else its kind's.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    match already_reported(err) {
        Some(code) => code,
        None => kind_of(err).exit_code(),
    }
}

/// The code of a failure a child process already reported, if it is one.
pub fn already_reported(err: &anyhow::Error) -> Option<i32> {
    err.chain().find_map(|e| e.downcast_ref::<Reported>()).map(|r| r.0)
}

/// Whether the error is a write into a pipe whose reader has gone.
pub(crate) fn broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>().and_then(|j| j.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}
