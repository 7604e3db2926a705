//! `mtbx create / enter / run / list / rm / rmi`, and the two commands
//! that run inside containers (`init-container`, `container-exec`, hidden
//! from --help: people never type them).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Args;
use serde::Serialize;

use super::exit;
use super::image_args::RegistryArgs;
use super::output::{self, Format, Table};
use crate::emu::arch::Arch;
use crate::image::platform;
use crate::image::reference::{self, ImageRef, Parsed};
use crate::image::registries_conf::Registries;
use crate::image::resolved::human_size;
use crate::storage::{StorageConfig, Store};
use crate::toolbox::engine::{ContainerInfo, Podman};
use crate::toolbox::{self, CreateSpec, HostUser, LABEL_ARCH, LABEL_TOOLBOX};

/// Which container: a name, or what create would name it.
#[derive(Debug, Args, Clone)]
pub struct Which {
    /// Architecture of the container.
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// Distribution of the default image (fedora, ubuntu, debian, arch).
    #[arg(long, short = 'd', value_name = "DISTRO")]
    distro: Option<String>,
    /// Release of that distribution.
    #[arg(long, short = 'r', value_name = "RELEASE")]
    release: Option<String>,
    /// Image instead of a distribution's.
    #[arg(long, short = 'i', value_name = "IMAGE")]
    image: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Container name (default: from the image and architecture, as Toolbx names them).
    #[arg(value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    which: Which,
    /// Variant of the architecture (v6, v7, v8).
    #[arg(long, value_name = "VARIANT")]
    variant: Option<String>,
    /// The static QEMU interpreter to use instead of the one found on PATH.
    #[arg(long, value_name = "FILE")]
    qemu: Option<PathBuf>,
    /// Answer yes to the download prompt.
    #[arg(short = 'y', long)]
    assumeyes: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct EnterArgs {
    /// Container name.
    #[arg(value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    which: Which,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Container name (`-c NAME`; default: from --arch/--distro/--release).
    #[arg(long, short = 'c', value_name = "NAME")]
    container: Option<String>,
    #[command(flatten)]
    which: Which,
    /// The command and its arguments.
    #[arg(value_name = "COMMAND", trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Container names.
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    #[command(flatten)]
    which: Which,
    /// Remove running containers too.
    #[arg(long, short = 'f')]
    force: bool,
    /// Every container mtbx made.
    #[arg(long, short = 'a')]
    all: bool,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image names or ids.
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,
    /// Remove images that containers use too (with the containers).
    #[arg(long, short = 'f')]
    force: bool,
    /// Every image `mtbx list` shows.
    #[arg(long, short = 'a')]
    all: bool,
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

/// The image, its parsed reference, the architecture and whether it is native.
fn resolve_which(w: &Which, variant: Option<&str>) -> Result<(String, ImageRef, &'static Arch, bool)> {
    let image = match &w.image {
        Some(i) => i.clone(),
        None => toolbox::distro_image(w.distro.as_deref(), w.release.as_deref())?,
    };
    let parsed = match reference::parse(&image)? {
        Parsed::Qualified(r) => r,
        Parsed::Short { .. } => Registries::load(None)?.resolve(&image)?.0,
    };
    let flag = w.arch.as_deref().map(Arch::parse).transpose()?;
    let arch = platform::choose_arch(&parsed, flag)?;
    let native = std::ptr::eq(arch, Arch::host()) && variant.is_none();
    Ok((image, parsed, arch, native))
}

fn usage(e: anyhow::Error) -> i32 {
    super::report_error(&e);
    exit::USAGE
}

fn failed(e: anyhow::Error) -> i32 {
    super::report_error(&e);
    exit::FAILED
}

pub fn create(args: CreateArgs) -> Result<i32> {
    let podman = match Podman::find() {
        Ok(p) => p,
        Err(e) => return Ok(failed(e.into())),
    };
    let (image, parsed, arch, native) = match resolve_which(&args.which, args.variant.as_deref()) {
        Ok(v) => v,
        Err(e) => return Ok(usage(e)),
    };
    let name = args.name.clone().unwrap_or_else(|| toolbox::container_name(&parsed, arch, native));
    if let Err(e) = toolbox::check_name(&name) {
        return Ok(usage(e.into()));
    }
    if podman.container_exists(&name) {
        return Ok(failed(anyhow!(
            "a container named {name} already exists: enter it with `mtbx enter {name}`, or remove it with `mtbx rm {name}`"
        )));
    }
    // The host check, before anything is downloaded.
    let qemu = if native {
        None
    } else {
        match toolbox::check_host(arch, args.qemu.as_deref()) {
            Ok(q) => Some(q),
            Err(e) => return Ok(failed(e.into())),
        }
    };
    let mtbx = match static_self() {
        Ok(p) => p,
        Err(e) => return Ok(failed(e)),
    };
    let user = HostUser::current()?;
    // As Toolbx: an image already in the store is used as it is (so create
    // works offline); otherwise it is pulled.
    let stored = match local_image(&parsed, arch, native, args.variant.is_some()) {
        Some(n) => {
            eprintln!("Using {n}, already in the image store");
            n
        }
        None => match pull_for_create(&mtbx, arch, &args, &image)? {
            Ok(n) => n,
            Err(code) => return Ok(code),
        },
    };
    let stamp_dir = toolbox::stamp_dir(&name);
    toolbox::make_stamp_dir(&stamp_dir).with_context(|| format!("cannot create {}", stamp_dir.display()))?;
    let spec = CreateSpec {
        name: name.clone(),
        image: stored.clone(),
        arch,
        qemu,
        mtbx,
        user,
        rootless: !nix::unistd::getuid().is_root(),
        stamp_dir: stamp_dir.clone(),
    };
    if let Err(e) = podman.output(&toolbox::create_args(&spec)) {
        let _ = std::fs::remove_dir_all(&stamp_dir);
        return Ok(failed(e.into()));
    }
    eprintln!("Created container {name} ({}) from {stored}", arch.platform());
    eprintln!("Enter it with: mtbx enter {name}");
    println!("{name}");
    Ok(exit::OK)
}

/// The store name a pull of this image would give, if the store has it.
fn local_image(parsed: &ImageRef, arch: &'static Arch, native: bool, variant: bool) -> Option<String> {
    if parsed.digest.is_some() || variant {
        return None; // named by a digest only a registry can tell
    }
    let name = crate::pull::store_name(parsed, arch, native, "");
    let store = Store::open(StorageConfig::for_current_user().ok()?).ok()?;
    let images = store.images().ok()?;
    images.iter().any(|i| i.record.names.contains(&name)).then_some(name)
}

/// Pull as its own mtbx process: rootless, the pull enters a user
/// namespace, which this process (it runs podman next) must not. Its
/// prompt, progress and errors reach the user; its report comes here.
/// The stored name, or the pull's exit code.
fn pull_for_create(
    mtbx: &std::path::Path,
    arch: &Arch,
    args: &CreateArgs,
    image: &str,
) -> Result<Result<String, i32>> {
    let mut pull = std::process::Command::new(mtbx);
    pull.args(["pull", "--format", "json", "--arch", &arch.platform()]);
    if let Some(v) = &args.variant {
        pull.args(["--variant", v]);
    }
    if args.assumeyes {
        pull.arg("-y");
    }
    pull.args(args.registry.to_args()).arg(image).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let out = pull.spawn().and_then(|c| c.wait_with_output()).context("cannot start mtbx pull")?;
    if !out.status.success() {
        return Ok(Err(out.status.code().unwrap_or(exit::FAILED)));
    }
    let pulled: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading mtbx pull's report")?;
    Ok(Ok(pulled["name"].as_str().ok_or_else(|| anyhow!("mtbx pull reported no name"))?.to_string()))
}

/// This very binary, which must be static to run inside any container.
fn static_self() -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find the mtbx binary")?;
    crate::emu::elf::check_static(&me, Arch::host()).map_err(|e| {
        anyhow!("containers need the static mtbx build ({e}); build it with scripts/setup.sh and run target/*-musl/release/mtbx")
    })?;
    Ok(me)
}

/// mtbx's containers (they carry the arch label).
fn mtbx_containers(podman: &Podman) -> Result<Vec<ContainerInfo>> {
    Ok(podman.containers(LABEL_ARCH)?)
}

fn find_container(podman: &Podman, name: Option<&str>, which: &Which) -> Result<ContainerInfo> {
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let (_, parsed, arch, native) = resolve_which(which, None)?;
            toolbox::container_name(&parsed, arch, native)
        }
    };
    mtbx_containers(podman)?.into_iter().find(|c| c.name() == name).ok_or_else(|| {
        let create = match &which.arch {
            Some(a) => format!("mtbx create --arch {a} {name}"),
            None => format!("mtbx create {name}"),
        };
        anyhow!("there is no mtbx container named {name}: create it with `{create}` (`mtbx list` shows them)")
    })
}

/// Start the container if needed and wait until init-container is done;
/// on failure, what init-container logged.
fn ensure_ready(podman: &Podman, c: &ContainerInfo) -> Result<()> {
    let stamp = toolbox::stamp_file(&toolbox::stamp_dir(c.name()));
    if toolbox::is_ready(&stamp) {
        return Ok(());
    }
    podman.output(&["start", c.name()])?;
    let spin = output::spinner(format!("starting {}", c.name()));
    let start = Instant::now();
    let started = loop {
        if toolbox::is_ready(&stamp) {
            break true;
        }
        let running = podman.output(&["container", "inspect", "--format", "{{.State.Running}}", c.name()])?;
        if running.trim() != "true" || start.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(30));
    };
    spin.finish_and_clear();
    // init-container's log: its warnings either way, its error on failure.
    let logs = podman.logs(c.name());
    for w in logs.lines().filter_map(|l| l.strip_prefix(crate::toolbox::inside::WARNING_PREFIX)) {
        output::warn(w);
    }
    if started {
        return Ok(());
    }
    let why: Vec<&str> =
        logs.lines().filter_map(|l| l.strip_prefix(crate::toolbox::inside::ERROR_PREFIX)).collect();
    let why =
        if why.is_empty() { logs.lines().last().unwrap_or("no log").to_string() } else { why.join("; ") };
    Err(anyhow!("container {} did not start: {why}", c.name()))
}

/// `podman exec` of container-exec as the user, in the current directory,
/// with a terminal when there is one; the command's exit code.
fn exec_in(podman: &Podman, name: &str, command: &[std::ffi::OsString], tty: bool) -> Result<i32> {
    let user = HostUser::current()?;
    let env: Vec<(&str, std::ffi::OsString)> =
        toolbox::PASSED_ENV.iter().filter_map(|k| std::env::var_os(k).map(|v| (*k, v))).collect();
    let cwd = std::env::current_dir().ok();
    let args = toolbox::exec_args(name, &user, cwd.as_deref(), &env, command, tty);
    let status = podman.command(&args).status().context("cannot run podman exec")?;
    Ok(status.code().unwrap_or(exit::FAILED))
}

pub fn enter(args: EnterArgs) -> Result<i32> {
    run_in(args.name.as_deref(), &args.which, &[], true)
}

pub fn run(args: RunArgs) -> Result<i32> {
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    run_in(args.container.as_deref(), &args.which, &args.command, tty)
}

fn run_in(name: Option<&str>, which: &Which, command: &[std::ffi::OsString], tty: bool) -> Result<i32> {
    let podman = match Podman::find() {
        Ok(p) => p,
        Err(e) => return Ok(failed(e.into())),
    };
    let name = match name {
        Some(n) => n.to_string(),
        None => match resolve_which(which, None) {
            Ok((_, parsed, arch, native)) => toolbox::container_name(&parsed, arch, native),
            Err(e) => return Ok(usage(e)),
        },
    };
    // A current stamp proves a running, set-up mtbx container: then a
    // command costs one podman exec. Otherwise find it, start it, wait.
    if !toolbox::is_ready(&toolbox::stamp_file(&toolbox::stamp_dir(&name))) {
        let c = match find_container(&podman, Some(&name), which) {
            Ok(c) => c,
            Err(e) => return Ok(failed(e)),
        };
        if let Err(e) = ensure_ready(&podman, &c) {
            return Ok(failed(e));
        }
    }
    exec_in(&podman, &name, command, tty)
}

#[derive(Serialize)]
struct ContainerRow {
    name: String,
    arch: String,
    image: String,
    status: String,
    created: i64,
}

#[derive(Serialize)]
struct ImageRow {
    name: String,
    id: String,
    arch: String,
    size: u64,
    created: Option<String>,
}

#[derive(Serialize)]
struct Listing {
    containers: Vec<ContainerRow>,
    images: Vec<ImageRow>,
}

fn listing(podman: &Podman) -> Result<Listing> {
    let containers: Vec<ContainerRow> = mtbx_containers(podman)?
        .into_iter()
        .map(|c| ContainerRow {
            name: c.name().to_string(),
            arch: c.label(LABEL_ARCH).unwrap_or("-").to_string(),
            image: c.image.clone(),
            status: c.state.clone(),
            created: c.created,
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
        let p = config.platform();
        images.push(ImageRow {
            name: i.record.names.first().cloned().unwrap_or_else(|| "<none>".into()),
            id: i.record.id.clone(),
            arch: p.arch(),
            size: i.size,
            created: i.record.created.clone(),
        });
    }
    Ok(Listing { containers, images })
}

pub fn list(args: ListArgs) -> Result<i32> {
    let podman = match Podman::find() {
        Ok(p) => p,
        Err(e) => return Ok(failed(e.into())),
    };
    let l = listing(&podman)?;
    if args.format == Format::Json {
        output::print_json(&l)?;
        return Ok(exit::OK);
    }
    let color = output::color_stdout();
    let mut t = Table::new(&["NAME", "ARCH", "IMAGE", "STATUS", "CREATED"]);
    for c in &l.containers {
        t.row(vec![
            c.name.clone(),
            c.arch.clone(),
            c.image.clone(),
            c.status.clone(),
            output::created(c.created),
        ]);
    }
    print!("{}", t.render(color));
    println!();
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
    Ok(exit::OK)
}

pub fn rm(args: RmArgs) -> Result<i32> {
    let podman = match Podman::find() {
        Ok(p) => p,
        Err(e) => return Ok(failed(e.into())),
    };
    let ours = mtbx_containers(&podman)?;
    let names: Vec<String> = if args.all {
        ours.iter().map(|c| c.name().to_string()).collect()
    } else if !args.names.is_empty() {
        for n in &args.names {
            if !ours.iter().any(|c| c.name() == n) {
                return Ok(failed(anyhow!("there is no mtbx container named {n} (`mtbx list` shows them)")));
            }
        }
        args.names.clone()
    } else {
        match find_container(&podman, None, &args.which) {
            Ok(c) => vec![c.name().to_string()],
            Err(e) => return Ok(failed(e)),
        }
    };
    for n in &names {
        let mut a = vec!["rm"];
        if args.force {
            a.push("--force");
        }
        a.push(n);
        if let Err(e) = podman.output(&a) {
            let hint = if args.force { "" } else { " (a running container needs --force)" };
            return Ok(failed(anyhow!("{e}{hint}")));
        }
        let _ = std::fs::remove_dir_all(toolbox::stamp_dir(n));
        println!("{n}");
    }
    Ok(exit::OK)
}

pub fn rmi(args: RmiArgs) -> Result<i32> {
    let podman = match Podman::find() {
        Ok(p) => p,
        Err(e) => return Ok(failed(e.into())),
    };
    let images: Vec<String> = if args.all {
        listing(&podman)?.images.into_iter().map(|i| i.id).collect()
    } else {
        args.images.clone()
    };
    if images.is_empty() {
        return Ok(usage(anyhow!("name the images to remove, or pass --all")));
    }
    let mut a: Vec<&str> = vec!["rmi"];
    if args.force {
        a.push("--force");
    }
    a.extend(images.iter().map(String::as_str));
    match podman.output(&a) {
        Ok(out) => {
            print!("{out}");
            Ok(exit::OK)
        }
        Err(e) => Ok(failed(e.into())),
    }
}

pub fn init_container(args: InitArgs) -> Result<i32> {
    let arch = Arch::parse(&args.arch)?;
    let init = crate::toolbox::inside::InitArgs {
        arch,
        user: HostUser { name: args.user, uid: args.uid, gid: args.gid, home: args.home, shell: args.shell },
        qemu: args.qemu,
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
    Ok(crate::toolbox::inside::container_exec(&a))
}
