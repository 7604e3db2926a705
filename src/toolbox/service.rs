//! The toolbox workflow over the podman engine: what `create`, `enter`,
//! `run`, `list`, `rm` and `rmi` do, as functions that return data and
//! typed errors. The CLI only asks (prompts, spinners) and prints, and
//! tests can drive the same steps without parsing output.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use super::engine::{ContainerInfo, EngineError, Podman};
use super::naming::Defaults;
use super::selection::{Request, Selection, ShortNames};
use super::{
    CreateSpec, HostUser, ToolboxError, LABEL_ARCH, LABEL_AUTO_STOP, LABEL_CPU, LABEL_STAMP_DIR,
    LABEL_TOOLBOX,
};
use crate::emu::arch::Arch;
use crate::error::{Classify, Kind, Reported};
use crate::storage::{StorageConfig, StorageError, Store};

/// How long a starting container may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a toolbox command failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
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

impl Classify for ServiceError {
    fn kind(&self) -> Kind {
        match self {
            ServiceError::Toolbox(e) => e.kind(),
            ServiceError::Cpu(e) => e.kind(),
            ServiceError::Config(e) => e.kind(),
            ServiceError::Select(e) => e.kind(),
            ServiceError::NothingToRemove | ServiceError::NotToolbox(_) => Kind::BadInput,
            ServiceError::Pull(r) => r.kind(),
            _ => Kind::Failed,
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServiceError {
    let what = what.into();
    move |source| ServiceError::Io { what, source }
}

/// Which container or image a command means, as the user said it.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// `--arch`.
    pub arch: Option<String>,
    /// `--distro`.
    pub distro: Option<String>,
    /// `--release`.
    pub release: Option<String>,
    /// `--image`.
    pub image: Option<String>,
}

impl Selector {
    /// The selection request of these flags, for `container` when named.
    pub fn request<'a>(&'a self, container: Option<&'a str>, variant: Option<&'a str>) -> Request<'a> {
        Request {
            container,
            distro: self.distro.as_deref(),
            image: self.image.as_deref(),
            release: self.release.as_deref(),
            arch: self.arch.as_deref(),
            variant,
        }
    }
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
    sel: &Selector,
    container: Option<&str>,
    variant: Option<&str>,
) -> Result<Selection, ServiceError> {
    Ok(super::selection::select(d, &sel.request(container, variant), ShortNames::Registries)?)
}

/// What `create` is asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// The container name; default: Toolbx's name for the target.
    pub name: Option<String>,
    /// The image and architecture.
    pub selector: Selector,
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
    /// The store's name for the image, when the store already has it.
    pub local_image: Option<String>,
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
    pub fn new() -> Result<Toolbox, ServiceError> {
        Ok(Toolbox { podman: Podman::find()? })
    }

    /// The engine underneath.
    pub fn podman(&self) -> &Podman {
        &self.podman
    }

    /// Everything create checks before it downloads anything: the name,
    /// that it is free, the host's emulation, the static mtbx, and whether
    /// the image is already in the store (then create works offline, as
    /// Toolbx does).
    pub fn plan_create(&self, req: &CreateRequest) -> Result<CreatePlan, ServiceError> {
        let d = Defaults::load()?;
        let selection = select(&d, &req.selector, req.name.as_deref(), req.variant.as_deref())?;
        let target = Target::from(&selection);
        let name = selection.container;
        super::check_name(&name)?;
        if self.podman.container_exists(&name) {
            return Err(ServiceError::Exists(name));
        }
        let qemu =
            if target.native { None } else { Some(super::check_host(target.arch, req.qemu.as_deref())?) };
        let model = match &req.cpu {
            Some(m) => Some(m.clone()),
            None => super::naming::cpu_for_arch(&d.config, target.arch)?,
        };
        let cpu = cpu_for(&target, qemu.as_deref(), model.as_deref())?;
        let mtbx = static_self()?;
        let local_image = selection.stored;
        Ok(CreatePlan { name, target, qemu, cpu, mtbx, local_image, auto_stop: req.auto_stop })
    }

    /// The plan for a container named `name` of `target`, with the host
    /// checks create makes before any download (toolbox mode resolves the
    /// name and target by Toolbx's rules, then comes here).
    pub fn plan_for(
        &self,
        name: String,
        target: Target,
        qemu: Option<&Path>,
        cpu: Option<&str>,
    ) -> Result<CreatePlan, ServiceError> {
        super::check_name(&name)?;
        let qemu = if target.native { None } else { Some(super::check_host(target.arch, qemu)?) };
        let cpu = cpu_for(&target, qemu.as_deref(), cpu)?;
        let mtbx = static_self()?;
        Ok(CreatePlan { name, target, qemu, cpu, mtbx, local_image: None, auto_stop: false })
    }

    /// Create the container of a plan from `image` (the store's name).
    /// On failure the stamp directory is removed only when this call made
    /// it and no container of that name exists: a concurrent create of the
    /// same name may have won with it bind-mounted.
    pub fn create(&self, plan: &CreatePlan, image: &str) -> Result<Created, ServiceError> {
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
        if let Err(e) = marked.and_then(|()| Ok(self.podman.output(&super::create_args(&spec))?)) {
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
    pub fn containers(&self) -> Result<Vec<ContainerInfo>, ServiceError> {
        Ok(self.podman.containers(LABEL_ARCH)?)
    }

    /// The container a name, or else a selector, means.
    pub fn find(&self, name: Option<&str>, sel: &Selector) -> Result<ContainerInfo, ServiceError> {
        let name = self.name_for(name, sel)?;
        self.containers()?.into_iter().find(|c| c.name() == name).ok_or_else(|| {
            let create = match &sel.arch {
                Some(a) => format!("mtbx create --arch {a} {name}"),
                None => format!("mtbx create {name}"),
            };
            ServiceError::NoContainer { name, create }
        })
    }

    /// The name a `run`/`enter` means: the one given, or Toolbx's name
    /// for the selector's image and architecture.
    pub fn name_for(&self, name: Option<&str>, sel: &Selector) -> Result<String, ServiceError> {
        match name {
            Some(n) => Ok(n.to_string()),
            None => Ok(select(&Defaults::load()?, sel, None, None)?.container),
        }
    }

    /// Start a container if needed and wait until init-container is done.
    /// Returns init-container's warnings; on failure, its error lines.
    pub fn start(&self, c: &ContainerInfo, timeout: Duration) -> Result<Vec<String>, ServiceError> {
        let stamp = super::stamp_file(&stamp_dir_of(c));
        if super::is_ready(&stamp) {
            return Ok(Vec::new());
        }
        self.podman.output(&["start", c.name()])?;
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
        Err(ServiceError::NotStarted { name: c.name().to_string(), why })
    }

    /// What `list` shows: mtbx's containers, and the images that are
    /// toolbox images or that those containers use.
    pub fn listing(&self) -> Result<Listing, ServiceError> {
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
    pub fn to_remove(
        &self,
        names: &[String],
        all: bool,
        sel: &Selector,
    ) -> Result<Vec<String>, ServiceError> {
        let ours = self.containers()?;
        if all {
            return Ok(ours.iter().map(|c| c.name().to_string()).collect());
        }
        if names.is_empty() {
            return Ok(vec![self.find(None, sel)?.name().to_string()]);
        }
        for n in names {
            if !ours.iter().any(|c| c.name() == n) {
                return Err(ServiceError::NoContainer {
                    name: n.clone(),
                    create: format!("mtbx create {n}"),
                });
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
    ) -> Result<Vec<String>, ServiceError> {
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
                    return Err(ServiceError::NotToolbox(n.clone()));
                }
                return Err(ServiceError::NoContainer {
                    name: n.clone(),
                    create: format!("mtbx create {n}"),
                });
            }
        }
        Ok(names.to_vec())
    }

    /// Stop a container (podman stop: init-container ends on SIGTERM).
    pub fn stop(&self, name: &str) -> Result<(), ServiceError> {
        self.podman.output(&["stop", name])?;
        Ok(())
    }

    /// Remove a container and its readiness stamp.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), ServiceError> {
        let found = self.podman.containers(LABEL_ARCH).ok().and_then(|cs| {
            cs.into_iter().find(|c| c.name() == name || c.id.starts_with(name) && name.len() >= 12)
        });
        let mut a = vec!["rm"];
        if force {
            a.push("--force");
        }
        a.push(name);
        self.podman.output(&a).map_err(|source| ServiceError::Remove {
            source,
            hint: if force { "" } else { " (a running container needs --force)" },
        })?;
        match &found {
            Some(c) => super::forget_stamp_dir(c.name(), c.label(LABEL_STAMP_DIR)),
            None => super::forget_stamp_dir(name, None),
        }
        Ok(())
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
    ) -> Result<String, ServiceError> {
        let listed = || -> Result<Vec<ImageRow>, ServiceError> { Ok(self.listing()?.images) };
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
            return if all || arch.is_some() {
                Ok(String::new())
            } else {
                Err(ServiceError::NothingToRemove)
            };
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
        let mut a: Vec<&str> = vec!["rmi"];
        if force {
            a.push("--force");
        }
        a.extend(images.iter().map(String::as_str));
        Ok(self.podman.output(&a)?)
    }
}

/// The CPU model a create of `target` uses: `model` checked against the
/// interpreter (bad input for a native target, or a model it does not
/// know), or none.
fn cpu_for(
    target: &Target,
    qemu: Option<&Path>,
    model: Option<&str>,
) -> Result<Option<String>, ServiceError> {
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
fn static_self() -> Result<PathBuf, ServiceError> {
    let me = std::env::current_exe().map_err(io("cannot find the mtbx binary"))?;
    crate::emu::elf::check_static(&me, Arch::host()).map_err(|why| ServiceError::NotStatic { why })?;
    Ok(me)
}

/// Pull for create as its own mtbx process: rootless, the pull enters a
/// user namespace, which this process (it runs podman next) must not. Its
/// prompt, progress and errors reach the user; its JSON report comes here.
/// `extra` are registry options to pass on. The store's name of the image.
pub fn pull_for_create(
    mtbx: &Path,
    plan: &CreatePlan,
    variant: Option<&str>,
    assumeyes: bool,
    extra: &[String],
) -> Result<String, ServiceError> {
    let mut pull = std::process::Command::new(mtbx);
    pull.args(["pull", "--format", "json", "--arch", &plan.target.arch.platform()]);
    if let Some(v) = variant {
        pull.args(["--variant", v]);
    }
    if assumeyes {
        pull.arg("-y");
    }
    pull.args(extra).arg(&plan.target.image).stderr(Stdio::inherit());
    run_pull(pull)
}

/// Run a `mtbx pull --format json` child; the store's name from its
/// report, or its exit code when it failed (its stderr, when captured,
/// goes to the debug log).
fn run_pull(mut pull: std::process::Command) -> Result<String, ServiceError> {
    let out = pull
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|c| c.wait_with_output())
        .map_err(io("cannot start mtbx pull"))?;
    if !out.status.success() {
        tracing::debug!("mtbx pull: {}", String::from_utf8_lossy(&out.stderr).trim());
        return Err(Reported(out.status.code().unwrap_or(1)).into());
    }
    let pulled: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(ServiceError::PullReport)?;
    match pulled["name"].as_str() {
        Some(n) => Ok(n.to_string()),
        None => Err(ServiceError::PullReport(serde::de::Error::custom("no name in the report"))),
    }
}

/// Pull `image` of `arch` as its own mtbx process (see
/// [`pull_for_create`]), answering yes; with `quiet` its progress and
/// errors are kept for the debug log instead of the terminal, for front
/// ends that word failures themselves. The store's name of the image.
pub fn pull_quietly(
    mtbx: &Path,
    image: &str,
    arch: &Arch,
    extra: &[String],
    quiet: bool,
) -> Result<String, ServiceError> {
    let mut pull = std::process::Command::new(mtbx);
    pull.args(["pull", "-y", "--format", "json", "--arch", &arch.platform()]).args(extra).arg(image);
    pull.stdin(Stdio::null());
    pull.stderr(if quiet { Stdio::piped() } else { Stdio::inherit() });
    run_pull(pull)
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
