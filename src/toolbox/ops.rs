//! The toolbox workflow over the podman engine: what `create`, `enter`,
//! `run`, `list`, `rm` and `rmi` do, as functions that return data and
//! typed errors. The CLI only asks (prompts, spinners) and prints, and
//! tests can drive the same steps without parsing output.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

pub use super::engine::{set_podman_log_level, EngineError, Object};
use super::engine::{ContainerInfo, Podman};
use super::naming::Defaults;
use super::selection::{SelectFlags, Selection, ShortNames};
use super::session::Session;
use super::{
    CreateSpec, ExecSpec, HostUser, ToolboxError, LABEL_ARCH, LABEL_AUTO_STOP, LABEL_CPU, LABEL_STAMP_DIR,
    LABEL_TOOLBOX, LABEL_TOOLBOX_OLD,
};
use crate::emu::arch::Arch;
use crate::error::{Classify, Kind, Reported};
use crate::storage::{StorageConfig, StorageError, Store};

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
    /// The image store.
    #[error(transparent)]
    Storage(#[from] StorageError),
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
            OpsError::Select(e) => e.kind(),
            OpsError::NothingToRemove | OpsError::NotToolbox(_) => Kind::BadInput,
            OpsError::Pull(r) => r.kind(),
            _ => Kind::Failed,
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> OpsError {
    let what = what.into();
    move |source| OpsError::Io { what, source }
}

/// An image and architecture, resolved.
#[derive(Debug, Clone)]
pub struct Target {
    /// The reference to pull it by: an image in files as given (`oci:DIR`),
    /// any other one fully qualified.
    pub image: String,
    /// The architecture.
    pub arch: &'static Arch,
    /// Whether it is the host's own platform.
    pub native: bool,
}

impl From<&Selection> for Target {
    fn from(s: &Selection) -> Target {
        let image = match (&s.parsed, crate::image::local::parse(&s.image)) {
            (Some(p), None) => p.to_string(),
            _ => s.image.clone(),
        };
        Target { image, arch: s.arch, native: s.native }
    }
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

/// What `create` is asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// The container name; default: Toolbx's name for the target.
    pub name: Option<String>,
    /// The image and architecture.
    pub selector: SelectFlags,
    /// `--variant`.
    pub variant: Option<String>,
    /// `--qemu`.
    pub qemu: Option<PathBuf>,
    /// `--cpu`; when None, toolbox.conf's `cpu` for its `arch`.
    pub cpu: Option<String>,
    /// `--auto-stop`: stop after the last session.
    pub auto_stop: bool,
}

/// A create that passed every check, before any download.
#[derive(Debug, Clone)]
pub struct CreatePlan {
    /// The container name.
    pub name: String,
    /// The image and architecture.
    pub target: Target,
    /// The interpreter, for a foreign architecture.
    pub qemu: Option<PathBuf>,
    /// The QEMU CPU model, as the interpreter lists it.
    pub cpu: Option<String>,
    /// The static mtbx to bind-mount.
    pub mtbx: PathBuf,
    /// Whether the store has the image, or it must be pulled.
    pub need: Need,
    /// Stop after the last session.
    pub auto_stop: bool,
}

/// A created container.
#[derive(Debug, Clone)]
pub struct Created {
    /// Its name.
    pub name: String,
    /// The image it was made from, as the store names it.
    pub image: String,
    /// Its platform.
    pub platform: String,
    /// Its CPU model, when it has one.
    pub cpu: Option<String>,
}

/// The toolbox workflow, over one podman.
#[derive(Debug, Clone)]
pub struct Toolbox {
    podman: Podman,
}

impl Toolbox {
    /// The workflow over the podman on PATH.
    pub fn new() -> Result<Toolbox, OpsError> {
        Ok(Toolbox { podman: Podman::find()? })
    }

    /// Everything create checks before it downloads anything: the name,
    /// that it is free, the host's emulation, the static mtbx, and whether
    /// the image is already in the store (then create works offline, as
    /// Toolbx does).
    pub fn plan_create(&self, req: &CreateRequest) -> Result<CreatePlan, OpsError> {
        let d = Defaults::load()?;
        let selection = select(&d, &req.selector, req.name.as_deref(), req.variant.as_deref())?;
        super::check_name(&selection.container)?;
        if self.podman.container_exists(&selection.container) {
            return Err(OpsError::Exists(selection.container));
        }
        let model = match &req.cpu {
            Some(m) => Some(m.clone()),
            None => super::naming::cpu_for_arch(&d.config, selection.arch)?,
        };
        let mut plan = self.plan_for(&selection, req.qemu.as_deref(), model.as_deref())?;
        plan.auto_stop = req.auto_stop;
        Ok(plan)
    }

    /// The plan for the container `sel` means, with the host checks
    /// create makes before any download: the name, the host's emulation,
    /// the CPU model, the static mtbx, and whether the store has the image.
    pub fn plan_for(
        &self,
        sel: &Selection,
        qemu: Option<&Path>,
        cpu: Option<&str>,
    ) -> Result<CreatePlan, OpsError> {
        super::check_name(&sel.container)?;
        let target = Target::from(sel);
        let qemu = if target.native { None } else { Some(super::check_host(target.arch, qemu)?) };
        let cpu = cpu_for(&target, qemu.as_deref(), cpu)?;
        let mtbx = static_self()?;
        let need = self.image_need(sel)?;
        Ok(CreatePlan { name: sel.container.clone(), target, qemu, cpu, mtbx, need, auto_stop: false })
    }

    /// Create the container of a plan from `image` (the store's name).
    /// On failure the stamp directory is removed only when this call made
    /// it and no container of that name exists: a concurrent create of the
    /// same name may have won with it bind-mounted.
    pub fn create(&self, plan: &CreatePlan, image: &str) -> Result<Created, OpsError> {
        let user = HostUser::current()?;
        let stamp_dir = super::stamp_dir(&plan.name);
        let made = super::make_stamp_dir(&stamp_dir)
            .map_err(io(format!("cannot create {}", stamp_dir.display())))?;
        let rootless = crate::sys::getuid() != 0;
        let spec = CreateSpec {
            name: plan.name.clone(),
            image: image.to_string(),
            arch: plan.target.arch,
            qemu: plan.qemu.clone(),
            cpu: plan.cpu.clone(),
            mtbx: plan.mtbx.clone(),
            user,
            rootless,
            stamp_dir: stamp_dir.clone(),
            auto_stop: plan.auto_stop,
            ulimits: super::Ulimits::for_this_process(rootless),
        };
        let marked = super::session::set_auto_stop(&stamp_dir, plan.auto_stop)
            .map_err(io(format!("cannot write in {}", stamp_dir.display())));
        if let Err(e) = marked.and_then(|()| Ok(self.podman.create(&super::create_args(&spec))?)) {
            if made && !self.podman.container_exists(&plan.name) {
                let _ = std::fs::remove_dir_all(&stamp_dir);
            }
            return Err(e);
        }
        Ok(Created {
            name: plan.name.clone(),
            image: image.to_string(),
            platform: plan.target.arch.platform(),
            cpu: plan.cpu.clone(),
        })
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

    /// Start a container if needed and wait until init-container is done.
    /// Returns init-container's warnings; on failure, its error lines.
    pub fn start(&self, c: &ContainerInfo, timeout: Duration) -> Result<Vec<String>, OpsError> {
        let stamp = super::stamp_file(&stamp_dir_of(c));
        if super::is_ready(&stamp) {
            return Ok(Vec::new());
        }
        self.podman.start(c.name())?;
        // Toolbx's words at debug (its tests read them).
        let how = super::readiness::Watch::from_env();
        match how {
            super::readiness::Watch::Events => {
                tracing::debug!("Setting up watches for file system events from container {}", c.name())
            }
            super::readiness::Watch::Polling => {
                tracing::debug!("Setting up polling ticker for container {}", c.name())
            }
        }
        let dir = stamp_dir_of(c);
        let exit_watch = self.podman.watch_exit(c.name())?;
        let waited =
            super::readiness::until_ready(&dir, how, || super::is_ready(&stamp), exit_watch, timeout)
                .map_err(io(format!("cannot watch {}", dir.display())))?;
        let started = waited == super::readiness::Waited::Ready;
        let logs = self.podman.logs(c.name());
        let warnings = logs
            .lines()
            .filter_map(|l| l.strip_prefix(super::inside::WARNING_PREFIX))
            .map(str::to_string)
            .collect();
        if started {
            return Ok(warnings);
        }
        let mut why: Vec<String> = logs
            .lines()
            .filter_map(|l| l.strip_prefix(super::inside::ERROR_PREFIX))
            .map(str::to_string)
            .collect();
        if why.is_empty() {
            why.push(logs.lines().last().unwrap_or("no log").to_string());
        }
        Err(OpsError::NotStarted { name: c.name().to_string(), why })
    }

    /// What `list` shows: mtbx's containers, and the images that are
    /// toolbox images or that those containers use.
    pub fn listing(&self) -> Result<Listing, OpsError> {
        let containers: Vec<ContainerRow> = self
            .containers()?
            .into_iter()
            .map(|c| ContainerRow {
                name: c.name().to_string(),
                arch: c.label(LABEL_ARCH).unwrap_or("-").to_string(),
                cpu: c.label(LABEL_CPU).map(str::to_string),
                image: c.image.clone(),
                status: c.state.clone(),
                created: c.created,
                auto_stop: c.label(LABEL_AUTO_STOP) == Some("true"),
            })
            .collect();
        let store = Store::open(StorageConfig::for_current_user()?)?;
        let mut images = Vec::new();
        for i in store.images()? {
            let config = i.parsed_config();
            let toolbox_label = config
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .is_some_and(|l| l.get(LABEL_TOOLBOX).is_some_and(|v| v == "true"));
            let used = i.record.names.iter().any(|n| containers.iter().any(|c| &c.image == n));
            if !(toolbox_label || used) {
                continue;
            }
            // One row per name, as Toolbx lists images; `<none>` for none.
            let names =
                if i.record.names.is_empty() { vec!["<none>".to_string()] } else { i.record.names.clone() };
            for name in names {
                images.push(ImageRow {
                    name,
                    id: i.record.id.clone(),
                    arch: config.platform().arch(),
                    size: i.size,
                    created: i.record.created.clone(),
                });
            }
        }
        Ok(Listing { containers, images })
    }

    /// The containers `rm` means: all, the names given (each must be
    /// mtbx's), or the selector's.
    pub fn to_remove(&self, names: &[String], all: bool, sel: &SelectFlags) -> Result<Vec<String>, OpsError> {
        let ours = self.containers()?;
        if all {
            return Ok(ours.iter().map(|c| c.name().to_string()).collect());
        }
        if names.is_empty() {
            return Ok(vec![self.find(None, sel)?.name().to_string()]);
        }
        for n in names {
            if !ours.iter().any(|c| c.name() == n) {
                return Err(OpsError::NoContainer { name: n.clone(), create: format!("mtbx create {n}") });
            }
        }
        Ok(names.to_vec())
    }

    /// The containers `stop` means: every running one (of `arch`, when
    /// given) with `all`, else the names given, each of which must be
    /// mtbx's.
    pub fn to_stop(
        &self,
        names: &[String],
        all: bool,
        arch: Option<&'static Arch>,
    ) -> Result<Vec<String>, OpsError> {
        let ours = self.containers()?;
        if all {
            let of_arch = |c: &&ContainerInfo| arch_matches(c.label(LABEL_ARCH).unwrap_or(""), arch);
            return Ok(ours
                .iter()
                .filter(|c| c.state == "running")
                .filter(of_arch)
                .map(|c| c.name().to_string())
                .collect());
        }
        for n in names {
            if !ours.iter().any(|c| c.name() == n) {
                if self.podman.container_exists(n) {
                    return Err(OpsError::NotToolbox(n.clone()));
                }
                return Err(OpsError::NoContainer { name: n.clone(), create: format!("mtbx create {n}") });
            }
        }
        Ok(names.to_vec())
    }

    /// Stop a container (podman stop: init-container ends on SIGTERM).
    pub fn stop(&self, name: &str) -> Result<(), OpsError> {
        Ok(self.podman.stop(name)?)
    }

    /// Remove a container and its readiness stamp.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), OpsError> {
        // The name podman knows it by (the one given may be an id) and the
        // stamp directory its label records.
        let found = self.podman.inspect(Object::Container, name).ok();
        self.podman.remove(Object::Container, &[name], force).map_err(|source| OpsError::Remove {
            hint: match (&source, force) {
                (EngineError::InUse { .. }, false) => " (a running container needs --force)",
                _ => "",
            },
            source,
        })?;
        match &found {
            Some(c) => super::forget_stamp_dir(&c.name, c.labels.get(LABEL_STAMP_DIR).map(String::as_str)),
            None => super::forget_stamp_dir(name, None),
        }
        Ok(())
    }

    /// Remove one Toolbx container or image named by name or id, as
    /// Toolbx's `rm NAME`/`rmi NAME` do: only one carrying Toolbx's label;
    /// a container's stamp directory goes with it.
    pub fn remove_toolbx(&self, object: Object, name: &str, force: bool) -> Result<(), Removal> {
        let found = self.podman.inspect(object, name).map_err(Removal::Inspect)?;
        if !is_toolbx(Some(&found.labels)) {
            return Err(Removal::NotToolbx);
        }
        self.remove_listed(object, name, force)?;
        if object == Object::Container {
            let known = if found.name.is_empty() { name } else { &found.name };
            super::forget_stamp_dir(known, found.labels.get(LABEL_STAMP_DIR).map(String::as_str));
        }
        Ok(())
    }

    /// Remove one container or image that a listing of Toolbx's showed
    /// (`rm --all`, `rmi --all`): no label check, it was listed for it.
    pub fn remove_listed(&self, object: Object, id: &str, force: bool) -> Result<(), Removal> {
        self.podman.remove(object, &[id], force).map(drop).map_err(|e| match e {
            EngineError::NotFound { .. } => Removal::NotFound,
            EngineError::InUse { .. } => Removal::InUse,
            e => Removal::Failed(e),
        })
    }

    /// Remove images: those named, or with `all` every one `list` shows;
    /// with `arch`, only those of that architecture. podman's report.
    /// `all` with nothing to remove succeeds, as in Toolbx.
    pub fn remove_images(
        &self,
        images: &[String],
        all: bool,
        arch: Option<&'static Arch>,
        force: bool,
    ) -> Result<String, OpsError> {
        let listed = || -> Result<Vec<ImageRow>, OpsError> { Ok(self.listing()?.images) };
        let images: Vec<String> = match (all, arch) {
            (true, _) => {
                listed()?.into_iter().filter(|i| arch_matches(&i.arch, arch)).map(|i| i.id).collect()
            }
            (false, None) => images.to_vec(),
            (false, Some(_)) => {
                let rows = listed()?;
                images
                    .iter()
                    .filter(|n| {
                        rows.iter()
                            .find(|r| &&r.name == n || r.id.starts_with(n.as_str()))
                            .is_some_and(|r| arch_matches(&r.arch, arch))
                    })
                    .cloned()
                    .collect()
            }
        };
        if images.is_empty() {
            return if all || arch.is_some() { Ok(String::new()) } else { Err(OpsError::NothingToRemove) };
        }
        if force {
            // podman rmi --force removes the containers that use an image;
            // removing mtbx's first takes their stamp directories along.
            let uses = |c: &ContainerInfo| {
                images
                    .iter()
                    .any(|i| *i == c.image || (!c.image_id.is_empty() && c.image_id.starts_with(i.as_str())))
            };
            for c in self.containers()?.iter().filter(|c| uses(c)) {
                self.remove(c.name(), true)?;
            }
        }
        let names: Vec<&str> = images.iter().map(String::as_str).collect();
        Ok(self.podman.remove(Object::Image, &names, force)?)
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

    /// The containers Toolbx lists: those with its label (or its old
    /// one), mtbx's among them, sorted by name.
    pub fn toolbx_containers(&self) -> Result<Vec<ContainerInfo>, OpsError> {
        Ok(self.podman.all_containers()?.into_iter().filter(|c| is_toolbx(c.labels.as_ref())).collect())
    }

    /// The images Toolbx lists: those with its label, one row per name
    /// (`<none>` for none), sorted by name.
    pub fn toolbx_images(&self) -> Result<Vec<ToolbxImage>, OpsError> {
        let mut seen = std::collections::BTreeSet::new();
        let mut rows = Vec::new();
        for i in self.podman.images()? {
            if !seen.insert(i.id.clone()) || !is_toolbx(i.labels.as_ref()) {
                continue;
            }
            match i.names.filter(|n| !n.is_empty()) {
                None => {
                    rows.push(ToolbxImage { id: i.id.clone(), name: "<none>".into(), created: i.created })
                }
                Some(names) => rows.extend(names.into_iter().map(|name| ToolbxImage {
                    id: i.id.clone(),
                    name,
                    created: i.created,
                })),
            }
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// Every image name in the store (for completion).
    pub fn image_names(&self) -> Result<Vec<String>, OpsError> {
        Ok(self.podman.images()?.into_iter().flat_map(|i| i.names.unwrap_or_default()).collect())
    }

    /// Run `spec` in its container with the terminal passed through; with
    /// `announce`, tell the terminal which container the shell is in (OSC
    /// 777, as Toolbx's `enter` does; only to a terminal, never into a
    /// pipe). The command's exit status.
    pub fn exec(&self, spec: &ExecSpec<'_>, announce: bool) -> Result<std::process::ExitStatus, OpsError> {
        use std::io::Write;
        let osc = announce && spec.tty;
        if osc {
            print!("{}", super::osc_container_push(spec.container, spec.user.uid));
            let _ = std::io::stdout().flush();
        }
        let status = self.podman.exec(&spec.args());
        if osc {
            print!("{}", super::osc_container_pop(spec.user.uid));
            let _ = std::io::stdout().flush();
        }
        Ok(status?)
    }

    /// Whether `command` is found in the container as the user's shell
    /// finds it (a 127 from a command that exists is its own code).
    pub fn command_found(&self, container: &str, user: &str, command: &str) -> bool {
        self.podman.status(&[
            "exec",
            "--user",
            user,
            container,
            "sh",
            "-c",
            "command -v \"$1\"",
            "sh",
            command,
        ]) == Some(0)
    }

    /// Run `mtbx container-probe ARGS` in a running container as the user,
    /// without a terminal: its stdout, or the last line it said on stderr.
    pub fn probe(&self, container: &str, user: &HostUser, args: &[&str]) -> Result<String, String> {
        let mut a: Vec<String> = vec![
            "exec".into(),
            "--user".into(),
            format!("{}:{}", user.uid, user.gid),
            container.into(),
            format!("{}/mtbx", super::HOST_DIR),
            "container-probe".into(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        let out = self.podman.exec_output(&a).map_err(|e| e.to_string())?;
        if out.status.success() {
            return String::from_utf8(out.stdout).map_err(|_| "not UTF-8 text".to_string());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("it failed").trim();
        Err(last.strip_prefix("mtbx: error: ").unwrap_or(last).to_string())
    }

    /// Open a session (see [`super::session`]) in container `name`. A
    /// current stamp proves a running, set-up container: then a command
    /// costs one podman exec. Otherwise `find` says which container it is,
    /// its stamp directory is made again when lost (with XDG_RUNTIME_DIR
    /// at a reboot: podman needs it back to start the container, and the
    /// session its lock and auto-stop mark), and the caller starts it. The
    /// lock comes first, so a container another session is stopping is
    /// never taken for running. Without a lock (a stamp directory this
    /// user cannot write) a container that does not stop by itself still
    /// runs; an auto-stop one fails.
    pub fn open_session(
        &self,
        name: &str,
        find: impl FnOnce() -> Result<ContainerInfo, OpsError>,
    ) -> Result<Opened, OpsError> {
        let dir = super::stamp_dir(name);
        let fast = if dir.is_dir() { Session::begin(&dir).ok() } else { None };
        let fast = match fast {
            Some(s) if super::is_ready(&super::stamp_file(&dir)) => return Ok(Opened::Ready(Some(s))),
            other => other,
        };
        let c = find()?;
        let recorded = stamp_dir_of(&c);
        super::make_stamp_dir(&recorded).map_err(io(format!("cannot create {}", recorded.display())))?;
        let auto_stop = c.label(LABEL_AUTO_STOP) == Some("true");
        super::session::set_auto_stop(&recorded, auto_stop)
            .map_err(io(format!("cannot write in {}", recorded.display())))?;
        let session = match fast {
            Some(s) if recorded == dir => Some(s),
            _ if auto_stop => Some(Session::begin(&recorded)?),
            _ => Session::begin(&recorded).ok(),
        };
        if super::is_ready(&super::stamp_file(&recorded)) {
            return Ok(Opened::Ready(session));
        }
        Ok(Opened::Stopped { container: c, session })
    }

    /// End a session; the last one of an auto-stop container stops it.
    pub fn end_session(&self, name: &str, session: Option<Session>) -> Result<(), OpsError> {
        if let Some(last) = session.and_then(Session::end) {
            tracing::debug!("last session of {name} ended: stopping it");
            self.stop(name)?;
            drop(last);
        }
        Ok(())
    }

    /// What create needs to have `sel`'s image: the store's own, or a
    /// download. Unqualified names that no distribution claims are only
    /// looked for in the store (Toolbx's rule, [`ShortNames::Local`]).
    pub fn image_need(&self, sel: &Selection) -> Result<Need, OpsError> {
        if let Some(stored) = &sel.stored {
            return Ok(Need::Stored(stored.clone()));
        }
        let target = Target::from(sel);
        let Some(parsed) = &sel.parsed else {
            return Err(super::selection::SelectError::NotFound(sel.image.clone()).into());
        };
        let has_domain = super::naming::image_has_domain(&sel.image);
        let shown = if has_domain || crate::image::local::parse(&sel.image).is_some() {
            sel.image.clone()
        } else {
            match super::naming::fully_qualified(&sel.image, &sel.release) {
                Some(full) => full,
                None if parsed.registry == "localhost" => {
                    return Err(super::selection::SelectError::NotFound(sel.image.clone()).into())
                }
                None => target.image.clone(),
            }
        };
        Ok(Need::Pull { reference: target.image, shown, registry: parsed.registry.clone() })
    }
}

/// The CPU model a create of `target` uses: `model` checked against the
/// interpreter (bad input for a native target, or a model it does not
/// know), or none.
fn cpu_for(target: &Target, qemu: Option<&Path>, model: Option<&str>) -> Result<Option<String>, OpsError> {
    let Some(model) = model else { return Ok(None) };
    match qemu {
        Some(q) if !target.native => Ok(Some(crate::emu::cpu::resolve(target.arch, q, model)?)),
        _ => Err(crate::emu::cpu::CpuError::Native { platform: target.arch.platform() }.into()),
    }
}

/// Whether an image's architecture (as `list` shows it) is `arch`'s.
fn arch_matches(shown: &str, arch: Option<&'static Arch>) -> bool {
    match arch {
        None => true,
        Some(a) => Arch::parse(shown).is_ok_and(|s| std::ptr::eq(s, a)),
    }
}

/// The stamp directory of a container: the one recorded in its label when
/// create recorded one (the run-time environment, such as
/// XDG_RUNTIME_DIR under `sudo -u` or cron, may differ from create's),
/// else where this environment puts it.
pub fn stamp_dir_of(c: &ContainerInfo) -> PathBuf {
    c.label(LABEL_STAMP_DIR).map(PathBuf::from).unwrap_or_else(|| super::stamp_dir(c.name()))
}

/// This very binary, which must be static to run inside any container.
fn static_self() -> Result<PathBuf, OpsError> {
    let me = std::env::current_exe().map_err(io("cannot find the mtbx binary"))?;
    crate::emu::elf::check_static(&me, Arch::host()).map_err(|why| OpsError::NotStatic { why })?;
    Ok(me)
}

/// Who answers pull's question before a download, and where its
/// progress and errors go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullVoice {
    /// mtbx's own: pull asks on the terminal (unless `assumeyes`) and
    /// speaks to it.
    Own {
        /// `-y`: download without asking.
        assumeyes: bool,
    },
    /// The front end asked already: pull answers yes; with `quiet` its
    /// progress and errors are kept for the debug log, for front ends
    /// that word failures themselves (Toolbx's).
    Asked {
        /// Keep pull's words off the terminal.
        quiet: bool,
    },
}

/// Pull `reference` of `arch` for create, as its own mtbx process:
/// rootless, the pull enters a user namespace, which this process (it
/// runs podman next) must not. `extra` are registry options to pass on;
/// its JSON report comes here. The store's name of the image.
pub fn pull_for_create(
    mtbx: &Path,
    reference: &str,
    arch: &Arch,
    variant: Option<&str>,
    extra: &[String],
    voice: PullVoice,
) -> Result<String, OpsError> {
    let mut pull = std::process::Command::new(mtbx);
    pull.args(["pull", "--format", "json", "--arch", &arch.platform()]);
    if let Some(v) = variant {
        pull.args(["--variant", v]);
    }
    match voice {
        PullVoice::Own { assumeyes } => {
            if assumeyes {
                pull.arg("-y");
            }
            pull.stderr(Stdio::inherit());
        }
        PullVoice::Asked { quiet } => {
            pull.arg("-y").stdin(Stdio::null());
            pull.stderr(if quiet { Stdio::piped() } else { Stdio::inherit() });
        }
    }
    pull.args(extra).arg(reference);
    run_pull(pull)
}

/// Run a `mtbx pull --format json` child; the store's name from its
/// report, or its exit code when it failed (its stderr, when captured,
/// goes to the debug log).
fn run_pull(mut pull: std::process::Command) -> Result<String, OpsError> {
    let out = pull
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|c| c.wait_with_output())
        .map_err(io("cannot start mtbx pull"))?;
    if !out.status.success() {
        tracing::debug!("mtbx pull: {}", String::from_utf8_lossy(&out.stderr).trim());
        return Err(Reported(out.status.code().unwrap_or(1)).into());
    }
    let pulled: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(OpsError::PullReport)?;
    match pulled["name"].as_str() {
        Some(n) => Ok(n.to_string()),
        None => Err(OpsError::PullReport(serde::de::Error::custom("no name in the report"))),
    }
}

/// One container in `list`.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerRow {
    /// Name.
    pub name: String,
    /// Platform (`arm64/v8`).
    pub arch: String,
    /// The QEMU CPU model its programs run under; None: QEMU's default.
    pub cpu: Option<String>,
    /// Image name.
    pub image: String,
    /// podman's state.
    pub status: String,
    /// Unix seconds.
    pub created: i64,
    /// Made with `create --auto-stop`.
    pub auto_stop: bool,
}

/// One image in `list`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    /// Its first name.
    pub name: String,
    /// Its id.
    pub id: String,
    /// Its architecture.
    pub arch: String,
    /// Bytes on disk.
    pub size: u64,
    /// Creation time, RFC 3339.
    pub created: Option<String>,
}

/// What `list` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// mtbx's containers.
    pub containers: Vec<ContainerRow>,
    /// Toolbox images and those the containers use.
    pub images: Vec<ImageRow>,
}

/// What create needs to have an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// The store has it under this name (or id).
    Stored(String),
    /// It must be downloaded.
    Pull {
        /// What to pull.
        reference: String,
        /// The name to show the user, as they or the defaults named it.
        shown: String,
        /// The registry it comes from (`localhost` needs no question).
        registry: String,
    },
}

/// How opening a session found its container.
#[derive(Debug)]
pub enum Opened {
    /// Running and set up.
    Ready(Option<Session>),
    /// Not (yet) set up: the caller starts it ([`Toolbox::start`]), with
    /// its own progress and words.
    Stopped {
        /// The container.
        container: ContainerInfo,
        /// The session held meanwhile.
        session: Option<Session>,
    },
}

/// Why Toolbx's `rm NAME`/`rmi NAME` left one alone; each front end words
/// it (Toolbx goes on with the next name).
#[derive(Debug, thiserror::Error)]
pub enum Removal {
    /// podman cannot inspect it (no such one, or podman failed).
    #[error("cannot inspect it")]
    Inspect(#[source] EngineError),
    /// It does not carry Toolbx's label.
    #[error("it is not a Toolbx container or image")]
    NotToolbx,
    /// podman said there is no such one.
    #[error("not found")]
    NotFound,
    /// A running container, or an image in use.
    #[error("in use")]
    InUse,
    /// podman failed otherwise.
    #[error("podman failed")]
    Failed(#[source] EngineError),
}

/// One image in Toolbx's `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolbxImage {
    /// Its id.
    pub id: String,
    /// One of its names, or `<none>`.
    pub name: String,
    /// Creation time, unix seconds.
    pub created: i64,
}

/// Whether these labels are Toolbx's (or its old name's).
pub fn is_toolbx(labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| {
        l.get(LABEL_TOOLBOX).is_some_and(|v| v == "true")
            || l.get(LABEL_TOOLBOX_OLD).is_some_and(|v| v == "true")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rmi --arch` matches the ARCH column as list shows it (`arm/v7`,
    /// `arm64`), by any name of the architecture.
    #[test]
    fn arch_filter_reads_the_list_column() {
        let arm64 = Arch::parse("aarch64").unwrap();
        let armv7 = Arch::parse("armhf").unwrap();
        assert!(arch_matches("arm64", Some(arm64)));
        assert!(arch_matches("arm/v7", Some(armv7)));
        assert!(!arch_matches("arm/v7", Some(arm64)));
        assert!(!arch_matches("amd64", Some(arm64)));
        assert!(arch_matches("anything", None));
    }
}
