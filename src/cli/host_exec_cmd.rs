//! `mtbx host-exec` (inside a container: a command on the host), the
//! `host-spawn` and `flatpak-spawn --host` names it answers to there, and
//! the hidden `host-agent` that serves them on the host.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::exit;
use crate::toolbox::host_exec::{agent, client};

#[derive(Debug, Args)]
pub struct HostExecArgs {
    /// The directory to run in, as seen inside (default: the current one;
    /// it must be the host's too: the home, or under /run/host).
    #[arg(long, value_name = "DIR")]
    directory: Option<PathBuf>,
    /// Set a variable for the command (terminal, locale and display
    /// variables pass by themselves).
    #[arg(long, value_name = "NAME=VALUE", value_parser = name_value)]
    env: Vec<(OsString, OsString)>,
    /// The command and its arguments (after `--` when it starts with `-`);
    /// none: the host user's shell.
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    command: Vec<OsString>,
}

fn name_value(s: &str) -> Result<(OsString, OsString), String> {
    s.split_once('=').map(|(k, v)| (k.into(), v.into())).ok_or_else(|| "takes NAME=VALUE".into())
}

#[derive(Debug, Args)]
pub struct HostAgentArgs {
    /// The container's stamp directory on the host.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

pub fn host_exec(args: HostExecArgs) -> Result<i32> {
    let o = client::Options { argv: args.command, env: args.env, directory: args.directory, pty: None };
    Ok(client::run(&o)?)
}

pub fn host_agent(args: HostAgentArgs) -> Result<i32> {
    agent::serve(&args.dir)?;
    Ok(exit::OK)
}

/// mtbx started as `host-spawn` or `flatpak-spawn` (init-container links
/// those names to it where the image has none).
pub fn as_spawn_tool(name: &str, args: &[OsString]) -> Result<i32> {
    let o = match name {
        "host-spawn" => client::host_spawn_options(args)?,
        _ => client::flatpak_spawn_options(args)?,
    };
    Ok(client::run(&o)?)
}
