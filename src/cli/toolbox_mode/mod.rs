//! `toolbox` mode: invoked through a link named `toolbox`, mtbx is Toolbx
//! for its users and scripts (commands, flags, messages on the same
//! streams, exit codes, container names), plus `--arch`. Toolbx's own
//! system tests are the measure. The work is the library's (naming rules
//! in [`crate::toolbox::naming`] and [`crate::toolbox::selection`], the
//! work in [`crate::toolbox::ops`]); this module holds Toolbx's command
//! line and [`words`] its messages.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

mod words;

use super::complete;
use crate::toolbox::naming::{self, Defaults};
use crate::toolbox::ops::{self, Need, Object, Opened, OpsError, PullVoice, Toolbox};
use crate::toolbox::selection::{self, SelectError, Selection};
use crate::toolbox::{self, ExecSpec, HostUser, LABEL_ARCH};
use words::{
    because, clap_failure, human_duration, print_fail, removed, resolve_failure, tab, usage_hint, version,
    Fail, Result, COMMON_COMMANDS,
};

const EXE: &str = "toolbox";

/// Tool for interactive command line environments on Linux
#[derive(Debug, Parser)]
#[command(
    name = "toolbox",
    about = "Tool for interactive command line environments on Linux",
    disable_help_flag = true,
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct ToolbxCli {
    /// Automatically answer yes for all questions
    #[arg(short = 'y', long, global = true)]
    assumeyes: bool,
    /// Log messages at the specified level: trace, debug, info, warn, error, fatal or panic
    #[arg(long, global = true, value_name = "LEVEL", allow_hyphen_values = true)]
    log_level: Option<String>,
    /// Show the log output of Podman. The log level is handled by the log-level option
    #[arg(long, global = true)]
    log_podman: bool,
    /// Set log-level to 'debug'
    #[arg(short = 'v', long, global = true, action = ArgAction::Count)]
    verbose: u8,
    /// help for toolbox
    #[arg(short = 'h', long, global = true)]
    help: bool,
    /// version for toolbox
    #[arg(long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Generate the autocompletion script for the specified shell
    Completion {
        #[arg(value_name = "SHELL")]
        shells: Vec<String>,
    },
    /// Create a new Toolbx container
    Create(CreateArgs),
    /// Enter a Toolbx container for interactive use
    Enter(EnterArgs),
    /// Display help information about Toolbx
    Help {
        #[arg(value_name = "COMMAND")]
        topics: Vec<String>,
    },
    /// Initialize a running container
    #[command(hide = true)]
    InitContainer(InitArgs),
    /// List existing Toolbx containers and images
    List(ListArgs),
    /// Remove one or more Toolbx containers
    Rm(RmArgs),
    /// Remove one or more Toolbx images
    Rmi(RmiArgs),
    /// Run a command in an existing Toolbx container
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Container name
    #[arg(value_name = "CONTAINER", add = complete::containers())]
    names: Vec<String>,
    /// Path to a file with credentials for authenticating to the registry for private images
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    authfile: Option<PathBuf>,
    /// Assign a different name to the Toolbx container
    #[arg(short = 'c', long, value_name = "CONTAINER", add = complete::containers(), allow_hyphen_values = true)]
    container: Option<String>,
    /// Create a Toolbx container for a different operating system distribution than the host
    #[arg(short = 'd', long, value_name = "DISTRO", add = complete::distros(), allow_hyphen_values = true)]
    distro: Option<String>,
    /// Change the name of the base image used to create the Toolbx container
    #[arg(short = 'i', long, value_name = "IMAGE", add = complete::images(), allow_hyphen_values = true)]
    image: Option<String>,
    /// Create a Toolbx container for a different operating system release than the host
    #[arg(short = 'r', long, value_name = "RELEASE", add = complete::releases(), allow_hyphen_values = true)]
    release: Option<String>,
    /// Create a Toolbx container for a different CPU architecture (QEMU user-mode emulation)
    #[arg(short = 'a', long, value_name = "ARCH", add = complete::arches(), allow_hyphen_values = true)]
    arch: Option<String>,
}

#[derive(Debug, Args)]
struct EnterArgs {
    /// Container name
    #[arg(value_name = "CONTAINER", add = complete::containers())]
    names: Vec<String>,
    /// Enter a Toolbx container with the given name
    #[arg(short = 'c', long, value_name = "CONTAINER", add = complete::containers(), allow_hyphen_values = true)]
    container: Option<String>,
    /// Enter a Toolbx container for a different operating system distribution than the host
    #[arg(short = 'd', long, value_name = "DISTRO", add = complete::distros(), allow_hyphen_values = true)]
    distro: Option<String>,
    /// Enter a Toolbx container for a different operating system release than the host
    #[arg(short = 'r', long, value_name = "RELEASE", add = complete::releases(), allow_hyphen_values = true)]
    release: Option<String>,
    /// Enter the Toolbx container of this CPU architecture
    #[arg(short = 'a', long, value_name = "ARCH", add = complete::arches(), allow_hyphen_values = true)]
    arch: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Run command inside a Toolbx container with the given name
    #[arg(short = 'c', long, value_name = "CONTAINER", add = complete::containers(), allow_hyphen_values = true)]
    container: Option<String>,
    /// Run command inside a Toolbx container for a different operating system distribution than the host
    #[arg(short = 'd', long, value_name = "DISTRO", add = complete::distros(), allow_hyphen_values = true)]
    distro: Option<String>,
    /// Pass down to command N additional file descriptors (in addition to 0, 1, 2)
    #[arg(long, value_name = "N", default_value_t = 0, allow_hyphen_values = true)]
    preserve_fds: u32,
    /// Run command inside a Toolbx container for a different operating system release than the host
    #[arg(short = 'r', long, value_name = "RELEASE", add = complete::releases(), allow_hyphen_values = true)]
    release: Option<String>,
    /// Run command inside the Toolbx container of this CPU architecture
    #[arg(short = 'a', long, value_name = "ARCH", add = complete::arches(), allow_hyphen_values = true)]
    arch: Option<String>,
    /// The command and its arguments
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    command: Vec<OsString>,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// List only Toolbx containers, not images
    #[arg(short = 'c', long)]
    containers: bool,
    /// List only Toolbx images, not containers
    #[arg(short = 'i', long)]
    images: bool,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// Container names
    #[arg(value_name = "CONTAINER", add = complete::containers())]
    names: Vec<String>,
    /// Remove all Toolbx containers
    #[arg(short = 'a', long)]
    all: bool,
    /// Force the removal of running and paused Toolbx containers
    #[arg(short = 'f', long)]
    force: bool,
}

#[derive(Debug, Args)]
struct RmiArgs {
    /// Image names or ids
    #[arg(value_name = "IMAGE", add = complete::images())]
    names: Vec<String>,
    /// Remove all Toolbx images
    #[arg(short = 'a', long)]
    all: bool,
    /// Force the removal of Toolbx images that are used by Toolbx containers
    #[arg(short = 'f', long)]
    force: bool,
}

/// Toolbx's init-container flags: the entry point of the containers
/// Toolbx made, which mtbx runs where it is the host's /usr/bin/toolbox
/// (mtbx's own containers have their own entry point).
#[derive(Debug, Args)]
struct InitArgs {
    #[arg(long)]
    gid: Option<u32>,
    #[arg(long)]
    home: Option<String>,
    #[arg(long)]
    home_link: bool,
    #[arg(long)]
    media_link: bool,
    #[arg(long)]
    mnt_link: bool,
    #[arg(long)]
    monitor_host: bool,
    #[arg(long)]
    shell: Option<String>,
    #[arg(long)]
    uid: Option<u32>,
    #[arg(long)]
    user: Option<String>,
}

/// Global options after parsing.
struct Globals {
    assumeyes: bool,
    verbose: bool,
}

/// The entry point of `toolbox` mode; the exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    complete::answer_shell(ToolbxCli::command, EXE);
    let matches = match ToolbxCli::command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => return print_fail(&clap_failure(&e)),
    };
    let cli = match ToolbxCli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return print_fail(&clap_failure(&e)),
    };
    if cli.version {
        println!("{EXE} version {}", version());
        return 0;
    }
    let level = if cli.verbose > 0 { Some("debug") } else { cli.log_level.as_deref() };
    if let Some(l) = level {
        match l.parse::<tracing::Level>() {
            Ok(level) => super::init_logging(level),
            Err(_) => {
                return print_fail(&Fail::new(format!(
                    "failed to parse log-level: not a valid logrus Level: \"{l}\""
                )))
            }
        }
    }
    // As Toolbx: --log-podman (or -vv) shows podman's own log at the same
    // level (Toolbx's default level is error).
    if cli.log_podman || cli.verbose > 1 {
        let l = level.unwrap_or("error");
        ops::set_podman_log_level(if l == "trace" { "debug" } else { l });
    }
    let g = Globals { assumeyes: cli.assumeyes, verbose: cli.verbose > 0 || level == Some("debug") };
    if cli.help {
        return show_help(cli.command.as_ref().map(command_name));
    }
    let Some(command) = cli.command else {
        let mut text = String::from("missing command\n\n");
        text.push_str(COMMON_COMMANDS);
        text.push('\n');
        text.push_str(&usage_hint());
        return print_fail(&Fail::new(text));
    };
    if !matches!(command, Cmd::InitContainer(_) | Cmd::Completion { .. }) && inside_container() {
        return forward_to_host(&args[1..]);
    }
    let result = match command {
        Cmd::Completion { shells } => completion(&shells),
        Cmd::Create(a) => create(a, &g),
        Cmd::Enter(a) => enter(a, &g),
        Cmd::Help { topics } => return show_help(topics.first().map(String::as_str)),
        Cmd::InitContainer(a) => init_container(a),
        Cmd::List(a) => list(a),
        Cmd::Rm(a) => rm(a),
        Cmd::Rmi(a) => rmi(a),
        Cmd::Run(a) => run_cmd(a, &g),
    };
    match result {
        Ok(code) => code,
        Err(f) => print_fail(&f),
    }
}

fn command_name(c: &Cmd) -> &'static str {
    match c {
        Cmd::Completion { .. } => "completion",
        Cmd::Create(_) => "create",
        Cmd::Enter(_) => "enter",
        Cmd::Help { .. } => "help",
        Cmd::InitContainer(_) => "init-container",
        Cmd::List(_) => "list",
        Cmd::Rm(_) => "rm",
        Cmd::Rmi(_) => "rmi",
        Cmd::Run(_) => "run",
    }
}

/// `help`, `--help`: the manual page, as Toolbx shows it; without man(1),
/// a short text.
fn show_help(topic: Option<&str>) -> i32 {
    let page = match topic {
        None | Some(EXE) => EXE.to_string(),
        Some(t) => format!("{EXE}-{t}"),
    };
    match crate::fsutil::find_on_path("man") {
        None => {
            print!(
                "toolbox - Tool for interactive command line environments on Linux\n\nCommon commands are:\n{COMMON_COMMANDS}\nGo to https://containertoolbx.org/ for further information.\n"
            );
            0
        }
        Some(man) => {
            use std::os::unix::process::CommandExt;
            // As Toolbx: man's errors to stdout too, and man replaces us.
            let e = Command::new(man).arg(page).stderr(std::io::stdout()).exec();
            print_fail(&Fail::new(format!("failed to invoke man(1): {e}")))
        }
    }
}

fn completion(shells: &[String]) -> Result<i32> {
    if shells.len() != 1 {
        return Err(Fail::usage(format!("accepts 1 arg(s), received {}", shells.len())));
    }
    let shell = shells[0].as_str();
    let known = ["bash", "fish", "zsh"];
    let script = known
        .contains(&shell)
        .then(|| complete::registration(shell, EXE, &toolbox::invoked_path()))
        .flatten()
        .ok_or_else(|| Fail::usage(format!("invalid argument \"{shell}\" for \"{EXE} completion\"")))?;
    print!("{script}");
    Ok(0)
}

fn inside_container() -> bool {
    Path::new("/run/.containerenv").exists()
}

/// Inside a container, Toolbx's commands run on the host through
/// flatpak-spawn, with the variables Toolbx passes.
fn forward_to_host(args: &[OsString]) -> i32 {
    if !Path::new("/run/.toolbxenv").exists() && !Path::new("/run/.toolboxenv").exists() {
        return print_fail(&Fail::new("this is not a Toolbx container"));
    }
    let Some(path) = std::env::var_os("TOOLBOX_PATH") else {
        return print_fail(&Fail::new("TOOLBOX_PATH not set"));
    };
    let mut c = Command::new("flatpak-spawn");
    for k in toolbox::PASSED_ENV {
        if let Some(v) = std::env::var_os(k) {
            let mut arg = OsString::from(format!("--env={k}="));
            arg.push(v);
            c.arg(arg);
        }
    }
    c.arg("--host").arg(path).args(args);
    match c.status() {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => print_fail(&Fail::new(format!("failed to invoke flatpak-spawn: {e}"))),
    }
}

/// The defaults every command resolves names against: the host's
/// os-release and toolbox.conf.
fn defaults() -> Result<Defaults> {
    Ok(Defaults::load()?)
}

/// The container and image a command means (one pipeline with mtbx's
/// own front end: [`selection`]), in Toolbx's words when it fails.
fn choose(
    d: &Defaults,
    container: Option<&str>,
    container_arg: &str,
    distro: Option<&str>,
    image: Option<&str>,
    release: Option<&str>,
    arch: Option<&str>,
) -> Result<Selection> {
    let req = selection::Request { container, distro, image, release, arch, variant: None };
    selection::select(d, &req, selection::ShortNames::Local).map_err(|e| match e {
        SelectError::Resolve(e) => resolve_failure(e, container_arg),
        SelectError::Arch(e) => Fail::usage(format!("invalid argument for '--arch'\n{e}")),
        SelectError::Tag(c) => Fail::usage(format!(
            "invalid argument for '--arch'\nImage {} is for {}, not {}.",
            image.unwrap_or(&c.tag),
            c.tag_arch,
            c.asked
        )),
        SelectError::Stored { image, stored, asked } => {
            Fail::usage(format!("invalid argument for '--arch'\nImage {image} is for {stored}, not {asked}."))
        }
        e => Fail::new(e.to_string()),
    })
}

/// The container a create or enter names, and how (for Toolbx's error
/// words): the positional CONTAINER wins over `--container`.
fn named<'a>(names: &'a [String], option: &'a Option<String>) -> (Option<&'a str>, &'static str) {
    match (names.first(), option) {
        (Some(n), _) => (Some(n.as_str()), "CONTAINER"),
        (None, Some(c)) => (Some(c.as_str()), "--container"),
        (None, None) => (None, ""),
    }
}

/// `toolbox enter` for the default container, `toolbox enter NAME` else.
fn enter_command(d: &Defaults, container: &str) -> String {
    match d.default_container() {
        Some(c) if c == container => format!("{EXE} enter"),
        _ => format!("{EXE} enter {container}"),
    }
}

fn create(a: CreateArgs, g: &Globals) -> Result<i32> {
    if a.distro.is_some() && a.image.is_some() {
        return Err(Fail::usage("options --distro and --image cannot be used together"));
    }
    if a.image.is_some() && a.release.is_some() {
        return Err(Fail::usage("options --image and --release cannot be used together"));
    }
    if let Some(f) = &a.authfile {
        if !f.exists() {
            return Err(Fail::usage(format!(
                "file {} not found\n'podman login' can be used to create the file.",
                f.display()
            )));
        }
    }
    let (container, arg) = named(&a.names, &a.container);
    let d = defaults()?;
    let c = choose(
        &d,
        container,
        arg,
        a.distro.as_deref(),
        a.image.as_deref(),
        a.release.as_deref(),
        a.arch.as_deref(),
    )?;
    create_container(&d, &c, a.authfile.as_deref(), g, true)
}

/// Create `c`'s container, pulling its image when needed (asking first,
/// as Toolbx does). Returns 0, or 0 with nothing made when the user said
/// no to the download.
fn create_container(
    d: &Defaults,
    c: &Selection,
    authfile: Option<&Path>,
    g: &Globals,
    show_enter: bool,
) -> Result<i32> {
    let tb = Toolbox::new()?;
    let enter = enter_command(d, &c.container);
    if tb.container_exists(&c.container) {
        return Err(Fail::usage(format!("container {} already exists\nEnter with: {enter}", c.container)));
    }
    // toolbox.conf's `cpu` (mtbx's key) for containers of its `arch`.
    let cpu = naming::cpu_for_arch(&d.config, c.arch)?;
    let plan = tb.plan_for(c, None, cpu.as_deref()).map_err(|e| match e {
        OpsError::Select(SelectError::NotFound(image)) => {
            Fail::new(format!("image {image} not found in local storage and known registries"))
        }
        e => e.into(),
    })?;
    let image = match &plan.need {
        Need::Stored(name) => name.clone(),
        Need::Pull { reference, shown, registry } => {
            if !g.assumeyes && registry != "localhost" {
                if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
                    return Err(Fail::usage(
                        "image required to create Toolbx container.\nUse option '--assumeyes' to download the image.",
                    ));
                }
                if !ask(&format!("Download {shown}? [y/N]:")) {
                    return Ok(0);
                }
            }
            let mut extra = Vec::new();
            if let Some(f) = authfile {
                extra.extend(["--authfile".to_string(), f.display().to_string()]);
            }
            let voice = PullVoice::Asked { quiet: !g.verbose };
            ops::pull_for_create(&plan.mtbx, reference, c.arch, None, &extra, voice).map_err(|e| {
                tracing::debug!("pull failed: {e}");
                Fail::new(format!(
                    "failed to pull image {shown}\nIf it was a private image, log in with: podman login {registry}\nUse '{EXE} --verbose ...' for further details."
                ))
            })?
        }
    };
    let created = tb.create(&plan, &image).map_err(|e| {
        tracing::debug!("podman create failed: {e}");
        Fail::new(format!("failed to create container {}", c.container))
    })?;
    if show_enter {
        println!("Created container: {}", created.name);
        println!("Enter with: {enter}");
    }
    Ok(0)
}

/// Toolbx's yes/no question: the prompt and a space on stdout, an answer
/// line from stdin (terminal or not); empty means no, anything but
/// y/yes/n/no asks again, end of input means no.
fn ask(prompt: &str) -> bool {
    let stdin = std::io::stdin();
    loop {
        print!("{prompt} ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        match stdin.read_line(&mut answer) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        match answer.trim_end_matches(['\n', '\r']).to_lowercase().as_str() {
            "" | "n" | "no" => return false,
            "y" | "yes" => return true,
            _ => continue,
        }
    }
}

fn enter(a: EnterArgs, g: &Globals) -> Result<i32> {
    let (container, arg) = named(&a.names, &a.container);
    let default_container = container.is_none() && a.release.is_none();
    let d = defaults()?;
    let c = choose(&d, container, arg, a.distro.as_deref(), None, a.release.as_deref(), a.arch.as_deref())?;
    run_command(&d, c, default_container, &[], 0, true, false, g)
}

fn run_cmd(a: RunArgs, g: &Globals) -> Result<i32> {
    let default_container = a.container.is_none() && a.release.is_none();
    if a.command.is_empty() {
        return Err(Fail::usage("missing argument for \"run\""));
    }
    let d = defaults()?;
    let c = choose(
        &d,
        a.container.as_deref(),
        "--container",
        a.distro.as_deref(),
        None,
        a.release.as_deref(),
        a.arch.as_deref(),
    )?;
    run_command(&d, c, default_container, &a.command, a.preserve_fds, false, true, g)
}

/// Toolbx's runCommand: find the container (`enter` offers to create the
/// default one, or falls back to the only one; `run` is pedantic), start
/// it, wait for its set-up, run the command as the user.
#[allow(clippy::too_many_arguments)]
fn run_command(
    d: &Defaults,
    mut c: Selection,
    default_container: bool,
    command: &[OsString],
    preserve_fds: u32,
    interactive: bool,
    pedantic: bool,
    g: &Globals,
) -> Result<i32> {
    let tb = Toolbox::new()?;
    // One podman call in the usual case: the container by its name. podman
    // also knows a container by its id, which this lookup does not find.
    let mut found = tb.container(&c.container).ok().flatten();
    let exists = found.is_some() || tb.container_exists(&c.container);
    if !exists && pedantic {
        return Err(Fail::usage(format!(
            "container {} not found\nUse the 'create' command to create a Toolbx.",
            c.container
        )));
    }
    if !exists {
        let all = tb.toolbx_containers()?;
        if all.is_empty() {
            let create = g.assumeyes || ask_offer();
            if !create {
                println!("A container can be created later with the 'create' command.");
                println!("{}", usage_hint());
                return Ok(0);
            }
            create_container(d, &c, None, g, false)?;
        } else if all.len() == 1 && default_container {
            let only = all[0].name().to_string();
            eprintln!("Error: container {} not found", c.container);
            eprintln!("Entering container {only} instead.");
            eprintln!("Use the 'create' command to create a different Toolbx.");
            eprintln!("{}", usage_hint());
            c.container = only;
            found = all.into_iter().next();
        } else {
            return Err(Fail::usage(format!(
                "container {} not found\nUse the '--container' option to select a Toolbx.",
                c.container
            )));
        }
    }
    let inspect_failed = format!("failed to inspect container {}", c.container);
    let info = match found {
        Some(info) => info,
        None => tb
            .container(&c.container)
            .map_err(because(&inspect_failed))?
            .ok_or_else(|| Fail::new(&inspect_failed))?,
    };
    match ops::maker(&info) {
        ops::Maker::Mtbx => {}
        ops::Maker::TooOld => {
            return Err(Fail::new(format!(
                "container {} is too old and no longer supported\nRecreate it with Toolbx version 0.0.97 or newer.",
                c.container
            )))
        }
        ops::Maker::Toolbx { deprecated } => {
            if deprecated {
                eprintln!("Warning: container {} uses deprecated features", c.container);
                eprintln!("Consider recreating it with Toolbx version 0.0.97 or newer.");
            }
            return run_in_toolbx_made(&tb, &info, command, preserve_fds, interactive);
        }
    }
    // A session as mtbx's run/enter hold it (toolbox::session), so a
    // container made with `mtbx create --auto-stop` is never stopped
    // under a toolbox-mode shell, and stops after the last session
    // whichever front end ran it. Containers without it behave as Toolbx's.
    let session = match tb.open_session(&c.container, || Ok(info.clone()))? {
        Opened::Ready(session) => session,
        Opened::Stopped { container, session } => {
            // Toolbx waits 25 s for its entry point, then gives up; an
            // entry point that failed says why in its own words.
            let warnings = tb.start(&container, std::time::Duration::from_secs(25)).map_err(|e| match e {
                OpsError::NotStarted { why, .. } if !tb.running(&c.container).unwrap_or(true) => {
                    Fail::new(why.join("\n"))
                }
                e => {
                    tracing::debug!("{e}");
                    Fail::new(format!("failed to initialize container {}", c.container))
                }
            })?;
            for w in warnings {
                eprintln!("Warning: {w}");
            }
            // Provisioning asked for by `mtbx create --packages/--init-hook`.
            super::containers_cmd::provision_at_start(&tb, &container).map_err(|e| match e {
                OpsError::Provision { name, why, .. } => {
                    Fail::new(format!("failed to provision container {name}: {why}"))
                }
                e => Fail::new(crate::error::chain(&e)),
            })?;
            session
        }
    };
    let user = HostUser::current()?;
    let mut spec = ExecSpec::here(&c.container, &user, command);
    spec.preserve_fds = preserve_fds;
    // `enter` tells the terminal which container the shell is in.
    let status = tb.exec(&spec, interactive);
    if let Err(e) = tb.end_session(&c.container, session) {
        tracing::debug!("cannot stop {} after its last session: {e}", c.container);
    }
    let status =
        status.map_err(because(format!("failed to invoke 'podman exec' in container {}", c.container)))?;
    let code = status.code().unwrap_or(1);
    let shown = command.first().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(fail) = exec_failure(code, &shown, interactive, &c.container) {
        return Err(fail);
    }
    match code {
        // 127 from a command that exists is the command's own code.
        127 if !interactive && !tb.command_found(&c.container, &user.name, &shown) => {
            Err(Fail { message: format!("command {shown} not found in container {}", c.container), code })
        }
        _ => Ok(code),
    }
}

/// Toolbx's words for what podman exec's own exit codes mean: 125,
/// podman failed; 126, the command could not be run, unless it was a
/// `toolbox` command forwarded to the host, which said why itself there.
fn exec_failure(code: i32, command: &str, interactive: bool, container: &str) -> Option<Fail> {
    let message = match code {
        125 => format!("failed to invoke 'podman exec' in container {container}"),
        126 if !interactive && command != "toolbox" => {
            format!("failed to invoke command {command} in container {container}")
        }
        _ => return None,
    };
    Some(Fail { message, code })
}

/// init-container in a container Toolbx made
/// ([`toolbox::inside::init_toolbx_made`]).
fn init_container(a: InitArgs) -> Result<i32> {
    let (Some(user), Some(uid), Some(home)) = (a.user, a.uid, a.home) else {
        return Err(Fail::usage(
            "init-container needs --user, --uid and --home, as Toolbx's create passes them",
        ));
    };
    // The links --home-link, --media-link and --mnt-link ask for, and the
    // host's files --monitor-host follows, mtbx's set-up makes from what
    // the host has; the flags are accepted for what Toolbx's create wrote.
    let _ = (a.home_link, a.media_link, a.mnt_link, a.monitor_host);
    let host_user = HostUser {
        name: user,
        uid,
        gid: a.gid.unwrap_or(uid),
        home: home.into(),
        shell: a.shell.unwrap_or_else(|| "/bin/bash".into()).into(),
    };
    let args = toolbox::inside::InitArgs {
        arch: crate::emu::arch::Arch::host(),
        user: host_user,
        qemu: None,
        cpu: None,
        own_home: false,
    };
    Ok(toolbox::inside::init_toolbx_made(&args))
}

/// `run` and `enter` in a container Toolbx made, as Toolbx runs them:
/// its start and stamp, capsh, and the fallbacks of its
/// `runCommandWithFallbacks` (the home for a working directory the
/// container lacks; bash for a login shell it lacks), with its words.
fn run_in_toolbx_made(
    tb: &Toolbox,
    info: &ops::ContainerInfo,
    command: &[OsString],
    preserve_fds: u32,
    interactive: bool,
) -> Result<i32> {
    let name = info.name();
    tb.start_toolbx_made(info, std::time::Duration::from_secs(25)).map_err(|e| match e {
        OpsError::NotStarted { why, .. } => Fail::new(why.join("\n")),
        e => {
            tracing::debug!("{e}");
            Fail::new(format!("failed to initialize container {name}"))
        }
    })?;
    let user = HostUser::current()?;
    let mut command =
        if interactive { vec![user.shell.clone().into(), "-l".into()] } else { command.to_vec() };
    let mut spec = ExecSpec::here(name, &user, &[]);
    spec.preserve_fds = preserve_fds;
    let mut workdir = spec.cwd.clone().unwrap_or_else(|| user.home.clone());
    let (mut fell_back_dir, mut fell_back_shell) = (false, false);
    loop {
        let spec = ExecSpec { command: &command, ..spec.clone() };
        let status = tb
            .exec_toolbx_made(&spec, !interactive, &workdir)
            .map_err(because(format!("failed to invoke 'podman exec' in container {name}")))?;
        let code = status.code().unwrap_or(1);
        let shown = command.first().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(fail) = exec_failure(code, &shown, interactive, name) {
            return Err(fail);
        }
        match code {
            127 if !tb.path_present(name, &user.name, &workdir) => {
                if fell_back_dir {
                    return Err(Fail {
                        message: format!("directory {} not found in container {name}", workdir.display()),
                        code,
                    });
                }
                eprintln!("Error: directory {} not found in container {name}", workdir.display());
                workdir = user.home.clone();
                eprintln!("Using {} instead.", workdir.display());
                fell_back_dir = true;
            }
            127 if !tb.command_found(name, &user.name, &shown) => {
                if !interactive || fell_back_shell {
                    return Err(Fail {
                        message: format!("command {shown} not found in container {name}"),
                        code,
                    });
                }
                eprintln!("Error: command {shown} not found in container {name}");
                eprintln!("Using /bin/bash instead.");
                command = vec!["/bin/bash".into(), "-l".into()];
                fell_back_shell = true;
            }
            _ => return Ok(code),
        }
    }
}

fn ask_offer() -> bool {
    ask("No Toolbx containers found. Create now? [y/N]")
}

fn list(a: ListArgs) -> Result<i32> {
    let (mut show_c, mut show_i) = (true, true);
    if !a.containers && a.images {
        show_c = false;
    } else if a.containers && !a.images {
        show_i = false;
    }
    let tb = Toolbox::new()?;
    let images =
        if show_i { tb.toolbx_images().map_err(because("failed to get images"))? } else { Vec::new() };
    let containers = if show_c {
        tb.toolbx_containers().map_err(because("failed to get containers"))?
    } else {
        Vec::new()
    };
    if !images.is_empty() {
        let mut rows = vec![vec!["IMAGE ID".to_string(), "IMAGE NAME".into(), "CREATED".into()]];
        for i in &images {
            rows.push(vec![i.id.chars().take(12).collect(), i.name.clone(), human_duration(i.created)]);
        }
        print!("{}", tab(&rows));
    }
    if !images.is_empty() && !containers.is_empty() {
        println!();
    }
    if !containers.is_empty() {
        let tty = std::io::stdout().is_terminal();
        let mut rows = vec![vec![
            "CONTAINER ID".to_string(),
            "CONTAINER NAME".into(),
            "CREATED".into(),
            "STATUS".into(),
            "IMAGE NAME".into(),
            "ARCH".into(),
        ]];
        for c in &containers {
            rows.push(vec![
                c.id.chars().take(12).collect(),
                c.name().to_string(),
                human_duration(c.created),
                c.state.clone(),
                c.image.clone(),
                // Toolbx's own containers are the host's architecture.
                match ops::maker(c) {
                    ops::Maker::Toolbx { .. } => crate::emu::arch::Arch::host().platform(),
                    _ => c.label(LABEL_ARCH).unwrap_or("-").to_string(),
                },
            ]);
        }
        let text = tab(&rows);
        for (i, line) in text.lines().enumerate() {
            let running = i > 0 && containers[i - 1].state == "running";
            if tty {
                let color = if running { "\x1b[1;32m" } else { "\x1b[0;00m" };
                println!("{color}{line}\x1b[0m");
            } else {
                println!("{line}");
            }
        }
    }
    Ok(0)
}

/// `rm`/`rmi`: every one Toolbx lists with `all`, else those named.
fn remove(object: Object, names: &[String], all: bool, force: bool) -> Result<i32> {
    let tb = Toolbox::new()?;
    if all {
        match object {
            Object::Container => {
                for c in tb.toolbx_containers().map_err(because("failed to get containers"))? {
                    removed(object, &c.id, tb.remove_listed_container(&c, force));
                }
            }
            Object::Image => {
                let mut ids: Vec<String> = tb
                    .toolbx_images()
                    .map_err(because("failed to get images"))?
                    .into_iter()
                    .map(|i| i.id)
                    .collect();
                ids.dedup();
                for id in ids {
                    removed(object, &id, tb.remove_listed_image(&id, force));
                }
            }
        }
        return Ok(0);
    }
    if names.is_empty() {
        let verb = if object == Object::Container { "rm" } else { "rmi" };
        return Err(Fail::usage(format!("missing argument for \"{verb}\"")));
    }
    for name in names {
        removed(object, name, tb.remove_toolbx(object, name, force));
    }
    Ok(0)
}

fn rm(a: RmArgs) -> Result<i32> {
    remove(Object::Container, &a.names, a.all, a.force)
}

fn rmi(a: RmiArgs) -> Result<i32> {
    remove(Object::Image, &a.names, a.all, a.force)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_execs_own_codes_in_toolbxs_words() {
        let f = exec_failure(125, "ls", false, "box").unwrap();
        assert_eq!((f.message.as_str(), f.code), ("failed to invoke 'podman exec' in container box", 125));
        let f = exec_failure(126, "/etc", false, "box").unwrap();
        assert_eq!((f.message.as_str(), f.code), ("failed to invoke command /etc in container box", 126));
        assert!(exec_failure(126, "toolbox", false, "box").is_none(), "the host's toolbox said why already");
        assert!(exec_failure(126, "bash", true, "box").is_none(), "enter's shell said why itself");
        assert!(
            exec_failure(0, "ls", false, "box").is_none() && exec_failure(127, "ls", false, "box").is_none()
        );
    }
}
