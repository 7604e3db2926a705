//! `mtbx create / enter / run / list / rm / rmi`, and the two commands
//! that run inside containers (`init-container`, `container-exec`, hidden
//! from --help: people never type them).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::exit;
use super::image_args::RegistryArgs;
use super::output::{self, Format, Table};
use crate::emu::arch::Arch;
use crate::image::resolved::human_size;
use crate::toolbox::ops::{self, ContainerInfo, CreateRequest, Need, Opened, PullVoice, Toolbox};
use crate::toolbox::options::BoxOptions;
use crate::toolbox::provision::Provision;
use crate::toolbox::selection::SelectFlags;
use crate::toolbox::session::Session;
use crate::toolbox::{ExecSpec, HostUser};

/// Which container a command means, as its flags say it (a name, or
/// what create would name it): the clap side of [`SelectFlags`].
#[derive(Debug, Args, Clone)]
pub(crate) struct SelectArgs {
    /// Architecture of the container.
    #[arg(long, short = 'a', value_name = "ARCH", add = super::complete::arches())]
    arch: Option<String>,
    /// Distribution of the default image (fedora, ubuntu, debian, arch, rhel).
    #[arg(long, short = 'd', value_name = "DISTRO", add = super::complete::distros())]
    distro: Option<String>,
    /// Release of that distribution.
    #[arg(long, short = 'r', value_name = "RELEASE", add = super::complete::releases())]
    release: Option<String>,
    /// Image instead of a distribution's (also oci:DIR[:TAG], oci-archive:FILE[:TAG],
    /// docker-archive:FILE[:REF]).
    #[arg(long, short = 'i', value_name = "IMAGE", add = super::complete::images())]
    image: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Container name (default: from the image and architecture, as Toolbx names them).
    #[arg(value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    which: SelectArgs,
    /// Variant of the architecture (v6, v7, v8).
    #[arg(long, value_name = "VARIANT")]
    variant: Option<String>,
    /// The static QEMU interpreter to use instead of the one found on PATH.
    #[arg(long, value_name = "FILE")]
    qemu: Option<PathBuf>,
    /// Run every program of the container under this QEMU CPU model, sudo
    /// and `env -i` included (`qemu-<target> -cpu help` lists them; default:
    /// the `cpu` key of toolbox.conf for its `arch`, else QEMU's default).
    #[arg(long, value_name = "MODEL")]
    cpu: Option<String>,
    /// Stop the container when its last `mtbx run`/`enter` ends.
    #[arg(long)]
    auto_stop: bool,
    /// Packages to install at the first start, with the distribution's
    /// package manager (repeatable, or a comma list).
    #[arg(long = "packages", value_name = "PKG,...", value_delimiter = ',')]
    packages: Vec<String>,
    /// A shell command run as root at the first start, after the packages
    /// (repeatable; run in order).
    #[arg(long = "init-hook", value_name = "CMD")]
    init_hooks: Vec<String>,
    #[command(flatten)]
    options: OptionArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// What create adds to a toolbox: the clap side of [`BoxOptions`].
#[derive(Debug, Args, Clone)]
pub(crate) struct OptionArgs {
    /// A home of the container's own: HOME and the passwd home inside
    /// (made if missing); your own home stays at its path (default:
    /// toolbox.conf's home_prefix/NAME when set).
    #[arg(long, value_name = "DIR")]
    home: Option<String>,
    /// Bind a host path into the container (repeatable; OPTIONS: ro, rslave, ...).
    #[arg(long, value_name = "SRC:DST[:OPTIONS]")]
    volume: Vec<String>,
    /// A variable every process of the container starts with (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// A host device (repeatable): checked and recorded; every host device
    /// is at its own path in a toolbox already, :DST adds it there too.
    #[arg(long, value_name = "SRC[:DST]")]
    device: Vec<String>,
}

impl OptionArgs {
    /// The options, their syntax and the host checked: before podman is
    /// asked anything.
    fn options(&self) -> Result<BoxOptions> {
        let o = BoxOptions::parse(self.home.as_deref(), &self.volume, &self.env, &self.device)?;
        o.check(&HostUser::current()?.home)?;
        Ok(o)
    }
}

#[derive(Debug, Args)]
pub struct CloneArgs {
    /// The toolbox container to copy.
    #[arg(value_name = "NAME", add = super::complete::containers())]
    name: String,
    /// The new container's name.
    #[arg(value_name = "NEW")]
    new: String,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The toolbox container.
    #[arg(value_name = "NAME", add = super::complete::containers())]
    name: String,
    /// The image's tag: localhost/NAME-snapshot:TAG.
    #[arg(value_name = "TAG", default_value = "latest")]
    tag: String,
    /// Also write the image as an OCI archive, for `mtbx create --image
    /// oci-archive:FILE` on another machine.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Container names.
    #[arg(value_name = "NAME", add = super::complete::containers())]
    names: Vec<String>,
    /// Every container mtbx made.
    #[arg(long, short = 'a', conflicts_with = "names")]
    all: bool,
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    #[arg(long = "package")]
    packages: Vec<String>,
    #[arg(long = "init-hook")]
    init_hooks: Vec<String>,
    #[arg(long)]
    upgrade: bool,
}

#[derive(Debug, Args)]
pub struct EnterArgs {
    /// Container name.
    #[arg(value_name = "NAME", add = super::complete::containers())]
    name: Option<String>,
    #[command(flatten)]
    which: SelectArgs,
    #[command(flatten)]
    rootfs: super::rootfs_cmd::RootfsArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Container name (`-c NAME`; default: from --arch/--distro/--release).
    #[arg(long, short = 'c', value_name = "NAME", add = super::complete::containers())]
    container: Option<String>,
    #[command(flatten)]
    which: SelectArgs,
    #[command(flatten)]
    rootfs: super::rootfs_cmd::RootfsArgs,
    /// The command and its arguments (after `--` when it starts with `-`).
    #[arg(value_name = "COMMAND", trailing_var_arg = true, required = true)]
    command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the containers.
    #[arg(long, short = 'c')]
    containers: bool,
    /// Only the images.
    #[arg(long, short = 'i')]
    images: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// `-a` is `--all` here, as in Toolbx; `--arch` has no short form.
#[derive(Debug, Args)]
#[command(mut_arg("arch", |a| a.short(None)))]
pub struct RmArgs {
    /// Container names.
    #[arg(value_name = "NAME", add = super::complete::containers())]
    names: Vec<String>,
    #[command(flatten)]
    which: SelectArgs,
    /// Remove running containers too.
    #[arg(long, short = 'f')]
    force: bool,
    /// Every container mtbx made.
    #[arg(long, short = 'a')]
    all: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Container names.
    #[arg(value_name = "NAME", add = super::complete::containers())]
    names: Vec<String>,
    /// Every running container mtbx made.
    #[arg(long, short = 'a', conflicts_with = "names")]
    all: bool,
    /// With --all: only the containers of this architecture.
    #[arg(long, value_name = "ARCH", requires = "all", add = super::complete::arches())]
    arch: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image names or ids.
    #[arg(value_name = "IMAGE", add = super::complete::images())]
    images: Vec<String>,
    /// Remove images that containers use too (with the containers).
    #[arg(long, short = 'f')]
    force: bool,
    /// Every image `mtbx list` shows.
    #[arg(long, short = 'a')]
    all: bool,
    /// Only images of this architecture (with --all, or instead of names).
    #[arg(long, value_name = "ARCH", add = super::complete::arches())]
    arch: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[arg(long)]
    arch: String,
    #[arg(long)]
    user: String,
    #[arg(long)]
    uid: u32,
    #[arg(long)]
    gid: u32,
    #[arg(long)]
    home: PathBuf,
    #[arg(long)]
    shell: PathBuf,
    #[arg(long)]
    qemu: Option<PathBuf>,
    #[arg(long)]
    cpu: Option<String>,
    #[arg(long)]
    own_home: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[arg(long)]
    uid: u32,
    #[arg(long)]
    gid: u32,
    #[arg(long)]
    user: String,
    #[arg(long)]
    home: PathBuf,
    #[arg(long)]
    workdir: Option<PathBuf>,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<std::ffi::OsString>,
}

impl From<&SelectArgs> for SelectFlags {
    fn from(w: &SelectArgs) -> SelectFlags {
        SelectFlags {
            arch: w.arch.clone(),
            distro: w.distro.clone(),
            release: w.release.clone(),
            image: w.image.clone(),
        }
    }
}

/// `assumeyes` is the global `-y`. The new container's name on stdout,
/// for scripts.
pub fn create(args: CreateArgs, assumeyes: bool) -> Result<i32> {
    println!("{}", create_labelled(args, assumeyes, Vec::new())?);
    Ok(exit::OK)
}

/// [`create`], recording `labels` of the caller's own on the container
/// (`assemble`'s table of the box); its name, printed by the caller.
pub(crate) fn create_labelled(
    args: CreateArgs,
    assumeyes: bool,
    labels: Vec<(String, String)>,
) -> Result<String> {
    let provision = Provision::new(args.packages.clone(), args.init_hooks.clone())?;
    let options = args.options.options()?;
    let tb = Toolbox::new()?;
    let req = CreateRequest {
        name: args.name.clone(),
        selector: (&args.which).into(),
        variant: args.variant.clone(),
        qemu: args.qemu.clone(),
        cpu: args.cpu.clone(),
        auto_stop: args.auto_stop,
        provision,
        options,
        labels,
    };
    let plan = tb.plan_create(&req)?;
    let stored = match &plan.need {
        Need::Stored(n) => {
            eprintln!("Using {n}, already in the image store");
            n.clone()
        }
        Need::Pull { reference, .. } if !assumeyes && !std::io::stdin().is_terminal() => {
            return Err(crate::error::BadInput(format!(
                "{reference} is not in the image store and there is no terminal to ask before downloading it: pass -y/--assumeyes"
            ))
            .into())
        }
        Need::Pull { reference, .. } => ops::pull_for_create(
            &plan.mtbx,
            reference,
            plan.target.arch,
            args.variant.as_deref(),
            &args.registry.to_args(),
            PullVoice::Own { assumeyes },
        )?,
    };
    let created = tb.create(&plan, &stored)?;
    report_created(&created, &plan.provision);
    Ok(created.name)
}

/// What a container will do at its first start, when it has
/// provisioning to do.
fn report_provision(p: &Provision) {
    if p.is_empty() {
        return;
    }
    let hooks = match p.init_hooks.len() {
        0 => String::new(),
        1 => " and runs 1 init hook".into(),
        n => format!(" and runs {n} init hooks"),
    };
    let packages = match p.packages.len() {
        0 => String::new(),
        _ => format!(" installs {}", crate::text::escaped(&p.packages.join(" "))),
    };
    eprintln!("At its first start it{packages}{hooks}");
}

/// create's and clone's words for a new container (and what it will do
/// at its first start), on stderr.
fn report_created(created: &ops::Created, provision: &Provision) {
    let name = &created.name;
    match &created.cpu {
        Some(cpu) => {
            eprintln!("Created container {name} ({}, CPU {cpu}) from {}", created.platform, created.image)
        }
        None => eprintln!("Created container {name} ({}) from {}", created.platform, created.image),
    }
    report_provision(provision);
    eprintln!("Enter it with: mtbx enter {name}");
}

/// `mtbx clone NAME NEW`: NEW from a commit of NAME, with its options.
pub fn clone(args: CloneArgs) -> Result<i32> {
    check_container_name(&args.new)?;
    let tb = Toolbox::new()?;
    let plan = tb.plan_clone(&args.name, &args.new)?;
    // A clone holds what its source's first start did: nothing to announce.
    let created = tb.clone_box(&args.name, &plan)?;
    report_created(&created, &Provision::default());
    println!("{}", created.name);
    Ok(exit::OK)
}

/// `mtbx snapshot NAME [TAG] [-o FILE]`.
pub fn snapshot(args: SnapshotArgs) -> Result<i32> {
    ops::snapshot_image(&args.name, &args.tag)?;
    let tb = Toolbox::new()?;
    let snap = tb.snapshot(&args.name, Some(&args.tag))?;
    eprintln!("Committed {} to {}", crate::text::escaped(&args.name), snap.image);
    if let Some(file) = &args.output {
        tb.save_image(&snap.image, file)?;
        eprintln!(
            "Saved {} to {}: create from it with mtbx create --image oci-archive:{}",
            snap.image,
            crate::text::quoted_path(file),
            crate::text::escaped(&file.to_string_lossy())
        );
    }
    println!("{}", snap.image);
    Ok(exit::OK)
}

/// A container name podman takes, checked before podman is asked.
fn check_container_name(name: &str) -> Result<()> {
    Ok(crate::toolbox::check_name(name)?)
}

pub fn enter(args: EnterArgs) -> Result<i32> {
    if args.rootfs.given() {
        if let Some(name) = &args.name {
            return Err(crate::error::BadInput(format!(
                "--rootfs runs a directory, not a container: drop {name}"
            ))
            .into());
        }
        return super::rootfs_cmd::run(&args.rootfs, args.which.arch.as_deref(), None);
    }
    run_in(args.name.as_deref(), &args.which, &[])
}

pub fn run(args: RunArgs) -> Result<i32> {
    if args.rootfs.given() {
        if args.container.is_some() {
            return Err(crate::error::BadInput(
                "--rootfs runs a directory, not a container: drop -c/--container".into(),
            )
            .into());
        }
        return super::rootfs_cmd::run(&args.rootfs, args.which.arch.as_deref(), Some(args.command));
    }
    run_in(args.container.as_deref(), &args.which, &args.command)
}

fn run_in(name: Option<&str>, which: &SelectArgs, command: &[std::ffi::OsString]) -> Result<i32> {
    let tb = Toolbox::new()?;
    let name = tb.name_for(name, &SelectFlags::from(which))?;
    let session = begin_session(&tb, &name, which)?;
    let user = HostUser::current()?;
    // Toolbx tells the terminal which container a shell is in (enter only).
    let status = tb.exec(&ExecSpec::here(&name, &user, command), command.is_empty());
    end_session(&tb, &name, session);
    Ok(status?.code().unwrap_or(exit::FAILED))
}

/// Begin a session in container `name` ([`Toolbox::open_session`]),
/// starting it when needed, with a spinner meanwhile.
pub(crate) fn begin_session(tb: &Toolbox, name: &str, which: &SelectArgs) -> Result<Option<Session>> {
    match tb.open_session(name, || tb.find(Some(name), &SelectFlags::from(which)))? {
        Opened::Ready(session) => Ok(session),
        Opened::Stopped { container, session } => {
            let spin = output::spinner(format!("starting {}", container.name()));
            let started = tb.start(&container, ops::START_TIMEOUT);
            spin.finish_and_clear();
            for w in started? {
                output::warn(&w);
            }
            provision_at_start(tb, &container)?;
            Ok(session)
        }
    }
}

/// Provision a container just started when it has provisioning to do
/// ([`Toolbox::provision`]): on a terminal a spinner with the step and
/// the output's latest line, elsewhere one line per step; a failure's
/// last lines printed before its error. For both front ends.
pub(crate) fn provision_at_start(tb: &Toolbox, c: &ContainerInfo) -> Result<(), ops::OpsError> {
    let name = c.name();
    let mut shown = Shown::new(name);
    let r = tb.provision(c, &mut |p| shown.show(p));
    shown.done(r.as_ref().err());
    r.map(drop)
}

/// Provisioning and upgrade progress on stderr.
struct Shown<'a> {
    name: &'a str,
    spin: indicatif::ProgressBar,
    terminal: bool,
    step: String,
}

impl<'a> Shown<'a> {
    fn new(name: &'a str) -> Shown<'a> {
        let terminal = std::io::stderr().is_terminal();
        Shown { name, spin: indicatif::ProgressBar::hidden(), terminal, step: String::new() }
    }

    fn show(&mut self, p: ops::Progress<'_>) {
        match p {
            ops::Progress::Step(s) => {
                self.step = s.to_string();
                if self.terminal {
                    if self.spin.is_hidden() {
                        self.spin = output::spinner(String::new());
                    }
                    self.spin.set_message(format!("{}: {s}", self.name));
                } else {
                    eprintln!("{}: {s}", self.name);
                }
            }
            ops::Progress::Line(l) if self.terminal => {
                self.spin.set_message(format!("{}: {}: {l}", self.name, self.step))
            }
            ops::Progress::Line(_) => {}
        }
    }

    fn done(self, failed: Option<&ops::OpsError>) {
        self.spin.finish_and_clear();
        if let Some(ops::OpsError::Provision { last, .. }) = failed {
            if !last.is_empty() {
                eprintln!("{}: the last lines of {}:", self.name, self.step);
                for l in last {
                    eprintln!("  {l}");
                }
            }
        }
    }
}

/// `mtbx upgrade`: each container's packages refreshed and upgraded, one
/// summary line each on stdout; exit 6 when any failed.
pub fn upgrade(args: UpgradeArgs) -> Result<i32> {
    if args.names.is_empty() && !args.all {
        return Err(crate::error::BadInput("name the containers to upgrade, or pass --all".into()).into());
    }
    let tb = Toolbox::new()?;
    let names = match args.all {
        true => tb.containers()?.iter().map(|c| c.name().to_string()).collect(),
        false => tb.to_stop(&args.names, false, None)?,
    };
    let mut summary = Vec::new();
    for name in &names {
        let mut shown = Shown::new(name);
        let r = tb.upgrade(name, &mut |p| shown.show(p));
        shown.done(r.as_ref().err());
        summary.push(match r {
            Ok(()) => format!("{name}: ok"),
            Err(ops::OpsError::Provision { why, .. }) => {
                format!("{name}: failed: {}", crate::text::escaped(&why))
            }
            Err(e) => format!("{name}: failed: {}", crate::text::escaped(&crate::error::chain(&e))),
        });
    }
    let failed = summary.iter().any(|l| !l.ends_with(": ok"));
    for l in summary {
        println!("{l}");
    }
    Ok(if failed { crate::error::Kind::Provision.exit_code() } else { exit::OK })
}

/// `container-provision`, inside the container as root: provisioning or
/// upgrade; a failure's reason as its last line, for the host to read.
pub fn container_provision(args: ProvisionArgs) -> Result<i32> {
    use crate::toolbox::provision::{run_inside, Mode, ERROR_PREFIX};
    let p = Provision::new(args.packages, args.init_hooks)?;
    let mode = if args.upgrade { Mode::Upgrade } else { Mode::FirstStart };
    match run_inside(&p, mode) {
        Ok(()) => Ok(exit::OK),
        Err(e) => {
            // On stdout, after the steps' output, as the last line.
            println!("{ERROR_PREFIX}{}", crate::text::escaped(&crate::error::chain(&e)));
            Ok(crate::error::Classify::kind(&e).exit_code())
        }
    }
}

/// End a session; the last one of an auto-stop container stops it.
pub(crate) fn end_session(tb: &Toolbox, name: &str, session: Option<Session>) {
    if let Err(e) = tb.end_session(name, session) {
        output::warn(&format!("cannot stop {name} after its last session: {e}"));
    }
}

pub fn list(args: ListArgs) -> Result<i32> {
    let mut l = Toolbox::new()?.listing()?;
    // -c or -i alone narrows the listing, as in Toolbx; both or neither
    // show both.
    if args.containers && !args.images {
        l.images.clear();
    } else if args.images && !args.containers {
        l.containers.clear();
    }
    if args.format == Format::Json {
        output::print_json(&l)?;
        return Ok(exit::OK);
    }
    let color = output::color_stdout();
    if !l.containers.is_empty() {
        let mut t = Table::new(&["NAME", "ARCH", "CPU", "IMAGE", "STATUS", "CREATED"]);
        for c in &l.containers {
            t.row(vec![
                c.name.clone(),
                c.arch.clone(),
                c.cpu.clone().unwrap_or_else(|| "-".into()),
                c.image.clone(),
                if c.auto_stop { format!("{} (auto-stop)", c.status) } else { c.status.clone() },
                output::created(c.created),
            ]);
        }
        print!("{}", t.render(color));
    }
    if !l.containers.is_empty() && !l.images.is_empty() {
        println!();
    }
    if !l.images.is_empty() {
        let mut t = Table::new(&["IMAGE", "IMAGE ID", "ARCH", "SIZE", "CREATED"]);
        for i in &l.images {
            t.row(vec![
                i.name.clone(),
                i.id.chars().take(12).collect(),
                i.arch.clone(),
                human_size(i.size),
                i.created.as_deref().map(|c| c.chars().take(10).collect()).unwrap_or_else(|| "-".into()),
            ]);
        }
        print!("{}", t.render(color));
    }
    Ok(exit::OK)
}

pub fn rm(args: RmArgs) -> Result<i32> {
    let tb = Toolbox::new()?;
    for n in tb.to_remove(&args.names, args.all, &SelectFlags::from(&args.which))? {
        tb.remove(&n, args.force)?;
        println!("{n}");
    }
    Ok(exit::OK)
}

pub fn stop(args: StopArgs) -> Result<i32> {
    if args.names.is_empty() && !args.all {
        return Err(crate::error::BadInput("name the containers to stop, or pass --all".into()).into());
    }
    let arch = args.arch.as_deref().map(Arch::parse).transpose()?;
    let tb = Toolbox::new()?;
    for n in tb.to_stop(&args.names, args.all, arch)? {
        tb.stop(&n)?;
        println!("{n}");
    }
    Ok(exit::OK)
}

pub fn rmi(args: RmiArgs) -> Result<i32> {
    let arch = args.arch.as_deref().map(Arch::parse).transpose()?;
    let all = args.all || (arch.is_some() && args.images.is_empty());
    print!("{}", Toolbox::new()?.remove_images(&args.images, all, arch, args.force)?);
    Ok(exit::OK)
}

pub fn init_container(args: InitArgs) -> Result<i32> {
    let arch = Arch::parse(&args.arch)?;
    let init = crate::toolbox::inside::InitArgs {
        arch,
        user: HostUser { name: args.user, uid: args.uid, gid: args.gid, home: args.home, shell: args.shell },
        qemu: args.qemu,
        cpu: args.cpu,
        own_home: args.own_home,
    };
    Ok(crate::toolbox::inside::init_container(&init))
}

pub fn container_exec(args: ExecArgs) -> Result<i32> {
    let a = crate::toolbox::inside::ExecArgs {
        uid: args.uid,
        gid: args.gid,
        user: args.user,
        home: args.home,
        workdir: args.workdir,
        command: args.command,
    };
    match crate::toolbox::inside::container_exec(&a)? {}
}
