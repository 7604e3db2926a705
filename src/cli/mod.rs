//! The command line: argument parsing, logging, and turning library errors
//! into one-line messages and exit codes. The work itself lives in the
//! library modules; each subcommand module here only asks and prints.

mod arch_cmd;
mod assemble_cmd;
mod binfmt_cmd;
pub(crate) mod complete;
mod containers_cmd;
pub(crate) mod docs;
pub(crate) mod errors;
mod export_cmd;
mod host_exec_cmd;
mod image_args;
mod images_cmd;
mod inspect_cmd;
pub(crate) mod output;
mod pull_cmd;
mod rootfs_cmd;
mod save_cmd;
pub(crate) mod toolbox_mode;

use clap::{Parser, Subcommand};

use output::{paint, Style};

/// Run Toolbx-style containers of foreign CPU architectures with QEMU
/// user-mode emulation and binfmt_misc.
#[derive(Debug, Parser)]
#[command(name = "mtbx", version, about, long_about = None, propagate_version = true, disable_help_subcommand = true)]
pub(crate) struct Cli {
    /// Diagnostic detail on stderr: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    log_level: tracing::Level,

    /// Answer yes to every question (download prompts), before or after
    /// the command, as Toolbx takes it.
    #[arg(short = 'y', long, global = true)]
    assumeyes: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Architectures: what this host can run, and proof that it runs them.
    #[command(subcommand)]
    Arch(arch_cmd::ArchCommand),
    /// The host's binfmt_misc registrations for QEMU.
    #[command(subcommand)]
    Binfmt(binfmt_cmd::BinfmtCommand),
    /// Show an image's details for one architecture, without pulling it.
    Inspect(inspect_cmd::InspectArgs),
    /// Download an image of any architecture into podman's storage.
    Pull(pull_cmd::PullArgs),
    /// List the images in podman's storage, with their architecture.
    Images(images_cmd::ImagesArgs),
    /// Write one platform of an image as an OCI archive (oci-archive:FILE).
    Save(save_cmd::SaveArgs),
    /// Create a toolbox container of any architecture.
    Create(containers_cmd::CreateArgs),
    /// Enter a toolbox container (or, with --rootfs, a root file system
    /// directory) for an interactive shell.
    Enter(containers_cmd::EnterArgs),
    /// Run a command in a toolbox container (or, with --rootfs, in a root
    /// file system directory).
    Run(containers_cmd::RunArgs),
    /// List mtbx's toolbox containers and their images, with architectures.
    List(containers_cmd::ListArgs),
    /// Remove toolbox containers.
    Rm(containers_cmd::RmArgs),
    /// Stop toolbox containers.
    Stop(containers_cmd::StopArgs),
    /// Make a container's program or application available on the host.
    Export(export_cmd::ExportArgs),
    /// Remove toolbox images.
    Rmi(containers_cmd::RmiArgs),
    /// Refresh and upgrade the packages of toolbox containers.
    Upgrade(containers_cmd::UpgradeArgs),
    /// Copy a toolbox container: a commit of it, made a container with the
    /// same architecture, CPU model, home, volumes, variables and devices.
    Clone(containers_cmd::CloneArgs),
    /// Commit a toolbox container to an image (localhost/NAME-snapshot:TAG),
    /// and with -o write it as an OCI archive for another machine.
    Snapshot(containers_cmd::SnapshotArgs),
    /// Make the toolboxes a TOML file describes exist as described:
    /// create what is missing, recreate what differs (asking first, or
    /// with -y), or with --rm remove them.
    Assemble(assemble_cmd::AssembleArgs),
    /// Run a command on the host, from inside a toolbox container (also
    /// as `host-spawn` and `flatpak-spawn --host` there).
    HostExec(host_exec_cmd::HostExecArgs),
    /// Serves host-exec for one container (started by run and enter).
    #[command(hide = true)]
    HostAgent(host_exec_cmd::HostAgentArgs),
    /// The entrypoint of toolbox containers (runs inside them).
    #[command(hide = true)]
    InitContainer(containers_cmd::InitArgs),
    /// Runs a command inside a toolbox container as the user.
    #[command(hide = true)]
    ContainerExec(containers_cmd::ExecArgs),
    /// Checks or reads a file inside a toolbox container, for export.
    #[command(hide = true)]
    ContainerProbe(export_cmd::ProbeArgs),
    /// Installs packages, runs init hooks or upgrades inside a toolbox
    /// container, as root.
    #[command(hide = true)]
    ContainerProvision(containers_cmd::ProvisionArgs),
    /// Print shell completion code (bash, zsh, fish, elvish, powershell):
    /// `source <(mtbx completion bash)`.
    Completion {
        /// The shell.
        #[arg(value_name = "SHELL")]
        shell: String,
    },
    /// Show the manual page of mtbx or of a command.
    Help {
        /// The command.
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
    /// Writes the manual pages of mtbx and of `toolbox` mode into DIR
    /// (scripts/setup.sh installs them).
    #[command(hide = true)]
    ManPages {
        /// The directory (e.g. /usr/local/share/man/man1).
        dir: std::path::PathBuf,
    },
}

/// Exit codes, as documented in README.md: the ones commands return
/// themselves; errors get theirs from [`crate::error::Kind`].
pub(crate) mod exit {
    use crate::error::Kind;
    /// Success.
    pub const OK: i32 = 0;
    /// The command ran and something failed (an error, or a failed check).
    pub const FAILED: i32 = Kind::Failed.exit_code();
}

/// Parse the process arguments, run the command, return the exit code.
/// Invoked through a link named `toolbox`, mtbx is Toolbx ([`toolbox_mode`]).
pub fn run() -> i32 {
    quiet_when_the_reader_leaves();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args.first().map(std::path::Path::new).and_then(|p| p.file_name());
    if invoked_as.is_some_and(|n| n == "toolbox") {
        return toolbox_mode::run(args);
    }
    if let Some(tool) =
        invoked_as.and_then(|n| n.to_str()).filter(|n| ["host-spawn", "flatpak-spawn"].contains(n))
    {
        return conclude(host_exec_cmd::as_spawn_tool(tool, &args[1..]), false);
    }
    complete::answer_shell(<Cli as clap::CommandFactory>::command, "mtbx");
    let cli = Cli::parse_from(args);
    init_logging(cli.log_level);
    let result = match cli.command {
        Command::Arch(cmd) => arch_cmd::run(cmd),
        Command::Binfmt(cmd) => binfmt_cmd::run(cmd),
        Command::Inspect(args) => inspect_cmd::run(args),
        Command::Pull(args) => pull_cmd::run(args, cli.assumeyes),
        Command::Images(args) => images_cmd::run(args),
        Command::Save(args) => save_cmd::run(args),
        Command::Create(args) => containers_cmd::create(args, cli.assumeyes),
        Command::Enter(args) => containers_cmd::enter(args),
        Command::Run(args) => containers_cmd::run(args),
        Command::List(args) => containers_cmd::list(args),
        Command::Clone(args) => containers_cmd::clone(args),
        Command::Snapshot(args) => containers_cmd::snapshot(args),
        Command::Rm(args) => containers_cmd::rm(args),
        Command::Stop(args) => containers_cmd::stop(args),
        Command::Export(args) => export_cmd::run(args),
        Command::ContainerProbe(args) => export_cmd::container_probe(args),
        Command::Rmi(args) => containers_cmd::rmi(args),
        Command::Upgrade(args) => containers_cmd::upgrade(args),
        Command::Assemble(args) => assemble_cmd::assemble(args, cli.assumeyes),
        Command::ContainerProvision(args) => containers_cmd::container_provision(args),
        Command::HostExec(args) => host_exec_cmd::host_exec(args),
        Command::HostAgent(args) => host_exec_cmd::host_agent(args),
        Command::InitContainer(args) => containers_cmd::init_container(args),
        Command::ContainerExec(args) => containers_cmd::container_exec(args),
        Command::ManPages { dir } => man_pages(&dir),
        Command::Completion { shell } => completion(&shell),
        Command::Help { command } => help(command.as_deref()),
    };
    tracing::debug!("command finished");
    conclude(result, cli.log_level >= tracing::Level::DEBUG)
}

/// A command's result as the exit code, its error said on one line.
fn conclude(result: anyhow::Result<i32>, debug: bool) -> i32 {
    match result {
        Ok(code) => code,
        Err(err) if errors::broken_pipe(&err) && output::stdout_gone() => exit::OK,
        Err(err) => {
            if errors::already_reported(&err).is_none() {
                report_error(&err, debug);
            }
            errors::exit_code(&err)
        }
    }
}

/// `mtbx ... | head`: when the reader of stdout has gone, stop quietly
/// with 0, as ripgrep does. Rust ignores SIGPIPE, so `println!` panics on
/// the broken pipe instead of the process dying silently; this hook turns
/// exactly that panic (stdout's reader is gone) into a quiet exit, and
/// leaves every other panic to the default hook. SIGPIPE itself stays
/// ignored: a child's pipe closing must not kill mtbx mid-pull.
fn quiet_when_the_reader_leaves() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && output::stdout_gone() {
            std::process::exit(exit::OK);
        }
        default(info);
    }));
}

fn completion(shell: &str) -> anyhow::Result<i32> {
    match complete::registration(shell, "mtbx", &crate::toolbox::invoked_path()) {
        Some(script) => {
            print!("{script}");
            Ok(exit::OK)
        }
        None => Err(crate::error::BadInput(format!(
            "unknown shell '{shell}'; mtbx completes for {}",
            complete::shells().join(", ")
        ))
        .into()),
    }
}

/// `mtbx help [COMMAND]`: the manual page when man(1) has it, else the
/// command's own long help.
fn help(command: Option<&str>) -> anyhow::Result<i32> {
    use clap::CommandFactory;
    let mut root = Cli::command();
    let page = command.map_or("mtbx".to_string(), |c| format!("mtbx-{c}"));
    let mut cmd = match command {
        None => root.clone(),
        Some(c) => {
            root.find_subcommand_mut(c).filter(|s| !s.is_hide_set()).cloned().ok_or_else(|| {
                crate::error::BadInput(format!("no command '{c}'; `mtbx --help` lists them"))
            })?
        }
    };
    if let Some(man) = crate::fsutil::find_on_path("man") {
        let has_page = std::process::Command::new(&man)
            .args(["-w", &page])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if has_page {
            use std::os::unix::process::CommandExt;
            let e = std::process::Command::new(man).arg(&page).exec();
            return Err(anyhow::Error::new(e).context("cannot run man"));
        }
    }
    cmd.print_long_help()?;
    Ok(exit::OK)
}

fn man_pages(dir: &std::path::Path) -> anyhow::Result<i32> {
    use clap::CommandFactory;
    let mut n = docs::write_pages(Cli::command(), dir)?.len();
    n += docs::write_pages(toolbox_mode::ToolbxCli::command(), dir)?.len();
    eprintln!("wrote {n} manual pages to {}", dir.display());
    Ok(exit::OK)
}

/// Print an error chain as one line, `mtbx: error: outer: inner`, and
/// with `debug` each cause again on a `caused by:` line of its own. The
/// messages quote outside names escaped (`crate::text::quoted`); any
/// control character left is escaped here, the last line of defence
/// between a hostile file and the terminal.
pub(crate) fn report_error(err: &anyhow::Error, debug: bool) {
    let head = paint("error:", Style::Red, output::color_stderr());
    eprintln!("mtbx: {head} {}", crate::text::escaped(&one_line(err)));
    if debug {
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {}", crate::text::escaped(&cause.to_string()));
        }
    }
}

/// The chain on one line: each cause's first line, unless the text so far
/// already says it (messages often quote their cause, and parsers' own
/// messages span lines with carets and context).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        if first.is_empty() || line.contains(first) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(first);
    }
    line
}

pub(crate) fn init_logging(level: tracing::Level) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(output::color_stderr())
        .with_target(false);
    // Time since start at debug and trace: where a slow command spends it.
    let _ = if level >= tracing::Level::DEBUG {
        builder.with_timer(tracing_subscriber::fmt::time::uptime()).try_init()
    } else {
        builder.without_time().try_init()
    };
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {0}: {1}")]
    struct Quoting(&'static str, std::io::Error);

    /// Causes a message already quotes are not repeated; multi-line causes
    /// give their first line.
    #[test]
    fn an_error_chain_is_one_line() {
        let io = std::io::Error::other("disk on fire");
        let quoted = anyhow::Error::new(Quoting("f", std::io::Error::other("disk on fire")));
        assert_eq!(super::one_line(&quoted), "cannot read f: disk on fire");
        let multi = anyhow::Error::new(io)
            .context("parse error at line 3\n  |\n3 | x = \n  |   ^")
            .context("bad file");
        assert_eq!(super::one_line(&multi), "bad file: parse error at line 3: disk on fire");
    }

    /// What an exported wrapper runs, `mtbx run -c NAME -- PROGRAM "$@"`,
    /// hands every argument to the program: empty ones, a second `--`,
    /// options of its own.
    #[test]
    fn run_passes_every_argument_after_the_program() {
        let argv = ["mtbx", "run", "-c", "box", "--", "/bin/sh", "a b", "", "--", "-c", "--help"];
        let cli = <super::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        let super::Command::Run(args) = cli.command else { panic!("not run") };
        let shown = format!("{args:?}");
        assert!(shown.contains(r#"command: ["/bin/sh", "a b", "", "--", "-c", "--help"]"#), "{shown}");
    }

    /// clap's own consistency checks (unique short flags, valid
    /// defaults) on both command trees: a clash is a panic at run time.
    #[test]
    fn both_command_lines_are_consistent() {
        super::Cli::command().debug_assert();
        super::toolbox_mode::ToolbxCli::command().debug_assert();
    }
}
