//! create: what it checks before any download (the plan), whether the
//! store has the image or it must be pulled (and the pull, as a child
//! process), and the `podman create` itself.

use super::*;

impl Toolbox {
    /// Everything create checks before it downloads anything: the name,
    /// that it is free, the host's emulation, the static mtbx, and whether
    /// the image is already in the store (then create works offline, as
    /// Toolbx does).
    pub fn plan_create(&self, req: &CreateRequest) -> Result<CreatePlan, OpsError> {
        let d = Defaults::load()?;
        let user = HostUser::current()?;
        req.options.check(&user.home)?;
        let selection = select(&d, &req.selector, req.name.as_deref(), req.variant.as_deref())?;
        crate::toolbox::check_name(&selection.container)?;
        if self.podman.container_exists(&selection.container) {
            return Err(OpsError::Exists(selection.container));
        }
        let model = match &req.cpu {
            Some(m) => Some(m.clone()),
            None => crate::toolbox::naming::cpu_for_arch(&d.config, selection.arch)?,
        };
        let mut plan = self.plan_for(&selection, req.qemu.as_deref(), model.as_deref())?;
        plan.auto_stop = req.auto_stop;
        plan.provision = req.provision.clone();
        plan.options = req.options.clone();
        if let (None, Some(prefix)) = (&plan.options.home, &d.config.home_prefix) {
            // toolbox.conf's home_prefix: a home of its own for each container.
            plan.options.home =
                Some(crate::toolbox::naming::home_prefix(prefix, &user.home)?.join(&plan.name));
            plan.options.check(&user.home)?;
        }
        plan.labels = req.labels.clone();
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
        crate::toolbox::check_name(&sel.container)?;
        let target = Target::from(sel);
        let qemu = if target.native { None } else { Some(crate::toolbox::check_host(target.arch, qemu)?) };
        let cpu = cpu_for(&target, qemu.as_deref(), cpu)?;
        let mtbx = static_self()?;
        let need = image_need(sel, &target)?;
        Ok(CreatePlan {
            name: sel.container.clone(),
            target,
            qemu,
            cpu,
            mtbx,
            need,
            auto_stop: false,
            provision: Default::default(),
            options: BoxOptions::default(),
            labels: Vec::new(),
        })
    }

    /// Create the container of a plan from `image` (the store's name).
    /// On failure the stamp directory is removed only when this call made
    /// it and no container of that name exists: a concurrent create of the
    /// same name may have won with it bind-mounted.
    pub fn create(&self, plan: &CreatePlan, image: &str) -> Result<Created, OpsError> {
        let user = HostUser::current()?;
        let mut options = plan.options.clone();
        let made_home = options.make_home().map_err(io(format!(
            "cannot create the container's home {}",
            options.home.as_deref().unwrap_or(Path::new("")).display()
        )))?;
        let stamp_dir = crate::toolbox::stamp_dir(&plan.name);
        let made = crate::toolbox::make_stamp_dir(&stamp_dir)
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
            ulimits: crate::toolbox::Ulimits::for_this_process(rootless),
            provision: plan.provision.clone(),
            options,
            labels: plan.labels.clone(),
        };
        let marked = crate::toolbox::session::set_auto_stop(&stamp_dir, plan.auto_stop)
            .and_then(|()| set_pending(&stamp_dir, !plan.provision.is_empty()))
            .map_err(io(format!("cannot write in {}", stamp_dir.display())));
        if let Err(e) = marked.and_then(|()| Ok(self.podman.create(&crate::toolbox::create_args(&spec))?)) {
            if made && !self.podman.container_exists(&plan.name) {
                let _ = std::fs::remove_dir_all(&stamp_dir);
            }
            if let Some(top) = made_home {
                // Only what this call made, and only while still empty.
                let mut dir = spec.options.home.clone();
                while let Some(d) = dir {
                    if std::fs::remove_dir(&d).is_err() || d == top {
                        break;
                    }
                    dir = d.parent().map(Path::to_path_buf);
                }
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
}

/// What create needs to have `sel`'s image: the store's own, or a
/// download. Unqualified names that no distribution claims are only
/// looked for in the store (Toolbx's rule, [`ShortNames::Local`]).
fn image_need(sel: &Selection, target: &Target) -> Result<Need, OpsError> {
    if let Some(stored) = &sel.stored {
        return Ok(Need::Stored(stored.clone()));
    }
    let Some(parsed) = &sel.parsed else {
        return Err(crate::toolbox::selection::SelectError::NotFound(sel.image.clone()).into());
    };
    let has_domain = crate::toolbox::naming::image_has_domain(&sel.image);
    let shown = if has_domain || crate::image::local::parse(&sel.image).is_some() {
        sel.image.clone()
    } else {
        match crate::toolbox::naming::fully_qualified(&sel.image, &sel.release) {
            Some(full) => full,
            None if parsed.registry == "localhost" => {
                return Err(crate::toolbox::selection::SelectError::NotFound(sel.image.clone()).into())
            }
            None => target.image.clone(),
        }
    };
    Ok(Need::Pull { reference: target.image.clone(), shown, registry: parsed.registry.clone() })
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
    /// `--packages` and `--init-hook`: done at the first start.
    pub provision: crate::toolbox::provision::Provision,
    /// `--home`, `--volume`, `--env`, `--device`.
    pub options: BoxOptions,
    /// Labels of the caller's own, recorded as they are (`assemble`'s
    /// table of the box).
    pub labels: Vec<(String, String)>,
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
    /// Packages and init hooks for the first start.
    pub provision: crate::toolbox::provision::Provision,
    /// Its own home, volumes, variables and devices, checked.
    pub options: BoxOptions,
    /// Labels of the caller's own, recorded as they are (`assemble`'s
    /// table of the box).
    pub labels: Vec<(String, String)>,
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

/// The CPU model a create of `target` uses: `model` checked against the
/// interpreter (bad input for a native target, or a model it does not
/// know), or none.
pub(super) fn cpu_for(
    target: &Target,
    qemu: Option<&Path>,
    model: Option<&str>,
) -> Result<Option<String>, OpsError> {
    let Some(model) = model else { return Ok(None) };
    match qemu {
        Some(q) if !target.native => Ok(Some(crate::emu::cpu::resolve(target.arch, q, model)?)),
        _ => Err(crate::emu::cpu::CpuError::Native { platform: target.arch.platform() }.into()),
    }
}

/// This very binary, which must be static to run inside any container.
pub(super) fn static_self() -> Result<PathBuf, OpsError> {
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
