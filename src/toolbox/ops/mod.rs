//! The operations both front ends call, over the typed podman engine:
//! what `create`, `enter`, `run`, `list`, `stop`, `rm` and `rmi` do, as
//! functions that return data and typed errors. `mtbx` and `toolbox` only
//! ask (prompts, spinners) and print, each in its own words, so they do
//! the same work by construction; tests drive the same steps without
//! parsing output. [`Toolbox`] is split by what a command does with a
//! container: [`create`] one, [`run`] in one, [`list`] them, [`remove`]
//! them; finding one is here.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use super::engine::Podman;
pub use super::engine::{set_podman_log_level, ContainerInfo, EngineError, Object};
use super::naming::Defaults;
use super::options::BoxOptions;
use super::selection::{SelectFlags, Selection, ShortNames};
use super::session::Session;
use super::{
    CreateSpec, ExecSpec, HostUser, ToolboxError, LABEL_ARCH, LABEL_AUTO_STOP, LABEL_CPU, LABEL_STAMP_DIR,
    LABEL_TOOLBOX, LABEL_TOOLBOX_OLD,
};
use crate::emu::arch::Arch;
use crate::error::{Classify, Kind, Reported};
use crate::storage::{StorageConfig, StorageError, Store};

mod copy;
mod create;
mod list;
mod provision;
mod remove;
mod run;
mod toolbx_made;

pub use copy::*;
pub use create::*;
pub use list::*;
pub use provision::*;
pub use remove::*;
pub use run::*;
pub use toolbx_made::*;

/// How long a starting container may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a toolbox command failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// podman is missing or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A toolbox rule (names, distros, the host) refused.
    #[error(transparent)]
    Toolbox(#[from] ToolboxError),
    /// The container, image or architecture asked for does not make sense.
    #[error(transparent)]
    Select(#[from] super::selection::SelectError),
    /// The name is taken.
    #[error("a container named {n} already exists: enter it with `mtbx enter {n}`, or remove it with `mtbx rm {n}`", n = crate::text::escaped(.0))]
    Exists(String),
    /// No such mtbx container.
    #[error("there is no mtbx container named {}: create it with `{}` (`mtbx list` shows them)", crate::text::escaped(.name), crate::text::escaped(.create))]
    NoContainer {
        /// The name looked for.
        name: String,
        /// The create command that would make it.
        create: String,
    },
    /// The mtbx binary cannot go into a container.
    #[error("containers need the static mtbx build ({why}); build it with scripts/setup.sh and run target/*-musl/release/mtbx")]
    NotStatic {
        /// What the ELF check found.
        why: crate::emu::elf::ElfError,
    },
    /// init-container did not finish its setup.
    #[error("container {name} did not start: {}", why.join("; "))]
    NotStarted {
        /// The container.
        name: String,
        /// init-container's own error lines, or the log's last line; none
        /// when it timed out still running.
        why: Vec<String>,
    },
    /// Provisioning (`create --packages`/`--init-hook`) or `upgrade`
    /// failed in the container; it is tried again at the next start.
    #[error("cannot {what} container {name}: {why}")]
    Provision {
        /// The container.
        name: String,
        /// `provision` or `upgrade`.
        what: &'static str,
        /// Why, in one line (the step and its exit status).
        why: String,
        /// The package manager's last lines, bounded.
        last: Vec<String>,
    },
    /// A podman rm failed.
    #[error("{source}{hint}")]
    Remove {
        /// podman's error.
        source: EngineError,
        /// What to try.
        hint: &'static str,
    },
    /// A container that is not one of mtbx's toolboxes.
    #[error(
        "container {0} is not an mtbx toolbox container: mtbx leaves it alone (`podman stop {0}` stops it)"
    )]
    NotToolbox(String),
    /// Nothing named to remove.
    #[error("name the images to remove, or pass --all")]
    NothingToRemove,
    /// The CPU model cannot be used.
    #[error(transparent)]
    Cpu(#[from] crate::emu::cpu::CpuError),
    /// toolbox.conf cannot be used.
    #[error(transparent)]
    Config(#[from] super::naming::ConfigError),
    /// `--home`, `--volume`, `--env` or `--device` cannot be used.
    #[error(transparent)]
    Options(#[from] super::options::OptionsError),
    /// The image store.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The provisioning a container records cannot be read.
    #[error(transparent)]
    Provisioning(#[from] crate::toolbox::provision::ProvisionError),
    /// A session's lock or mark.
    #[error(transparent)]
    Session(#[from] super::session::SessionError),
    /// A file or process operation.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `mtbx pull` reported something that is not its JSON report.
    #[error("cannot read mtbx pull's report")]
    PullReport(#[source] serde_json::Error),
    /// `mtbx pull` failed and said why on stderr.
    #[error("mtbx pull failed")]
    Pull(#[from] Reported),
}

impl Classify for OpsError {
    fn kind(&self) -> Kind {
        match self {
            OpsError::Toolbox(e) => e.kind(),
            OpsError::Cpu(e) => e.kind(),
            OpsError::Config(e) => e.kind(),
            OpsError::Options(e) => e.kind(),
            OpsError::Select(e) => e.kind(),
            OpsError::NothingToRemove | OpsError::NotToolbox(_) => Kind::BadInput,
            OpsError::Pull(r) => r.kind(),
            OpsError::Provision { .. } => Kind::Provision,
            OpsError::Provisioning(e) => e.kind(),
            _ => Kind::Failed,
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> OpsError {
    let what = what.into();
    move |source| OpsError::Io { what, source }
}

/// The container and image `sel` (and a container name) mean in mtbx's
/// own front end: short names through registries.conf.
pub fn select(
    d: &Defaults,
    sel: &SelectFlags,
    container: Option<&str>,
    variant: Option<&str>,
) -> Result<Selection, OpsError> {
    Ok(super::selection::select(d, &sel.request(container, variant), ShortNames::Registries)?)
}

/// The toolbox workflow, over one podman.
#[derive(Debug, Clone)]
pub struct Toolbox {
    podman: Podman,
    /// NVIDIA's CDI spec of this host, asked for once per command.
    nvidia: std::sync::OnceLock<Option<super::cdi::Spec>>,
}

impl Toolbox {
    /// The workflow over the podman on PATH.
    pub fn new() -> Result<Toolbox, OpsError> {
        Ok(Toolbox { podman: Podman::find()?, nvidia: std::sync::OnceLock::new() })
    }

    /// mtbx's containers (they carry the arch label).
    pub fn containers(&self) -> Result<Vec<ContainerInfo>, OpsError> {
        Ok(self.podman.containers(LABEL_ARCH)?)
    }

    /// The container a name, or else a selector, means.
    pub fn find(&self, name: Option<&str>, sel: &SelectFlags) -> Result<ContainerInfo, OpsError> {
        let name = self.name_for(name, sel)?;
        self.containers()?.into_iter().find(|c| c.name() == name).ok_or_else(|| {
            let create = match &sel.arch {
                Some(a) => format!("mtbx create --arch {a} {name}"),
                None => format!("mtbx create {name}"),
            };
            OpsError::NoContainer { name, create }
        })
    }

    /// The name a `run`/`enter` means: the one given, or Toolbx's name
    /// for the selector's image and architecture.
    pub fn name_for(&self, name: Option<&str>, sel: &SelectFlags) -> Result<String, OpsError> {
        match name {
            Some(n) => Ok(n.to_string()),
            None => Ok(select(&Defaults::load()?, sel, None, None)?.container),
        }
    }

    /// The container of exactly this name, if there is one (any kind).
    pub fn container(&self, name: &str) -> Result<Option<ContainerInfo>, OpsError> {
        Ok(self.podman.container(name)?)
    }

    /// Whether a container of this name exists (any kind).
    pub fn container_exists(&self, name: &str) -> bool {
        self.podman.container_exists(name)
    }

    /// Whether the container is running now.
    pub fn running(&self, name: &str) -> Result<bool, OpsError> {
        Ok(self.podman.running(name)?)
    }
}

/// The stamp directory of a container: the one recorded in its label when
/// create recorded one (the run-time environment, such as
/// XDG_RUNTIME_DIR under `sudo -u` or cron, may differ from create's),
/// else where this environment puts it.
pub fn stamp_dir_of(c: &ContainerInfo) -> PathBuf {
    c.label(LABEL_STAMP_DIR).map(PathBuf::from).unwrap_or_else(|| super::stamp_dir(c.name()))
}
