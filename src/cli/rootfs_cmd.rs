//! `mtbx run --rootfs DIR` and `mtbx enter --rootfs DIR`: a root file
//! system directory run in the sandbox ([`crate::emu::rootfs`]), no podman.

use anyhow::Result;
use clap::Args;

use super::output;
use crate::emu::arch::Arch;
use crate::emu::rootfs::{self, Request};

/// The flags `run` and `enter` share for a root file system.
#[derive(Debug, Args, Clone)]
pub(crate) struct RootfsArgs {
    /// Run in this root file system directory (an SD card's root, an
    /// mmdebstrap tree) instead of a container: no podman, no root needed.
    /// --arch is read from its programs when not given.
    #[arg(
        long,
        value_name = "DIR",
        value_hint = clap::ValueHint::DirPath,
        conflicts_with_all = ["distro", "release", "image"]
    )]
    rootfs: Option<std::path::PathBuf>,
    /// With --rootfs: be root inside (uid 0, mapped to you) rather than
    /// yourself.
    #[arg(long, requires = "rootfs")]
    root: bool,
}

impl RootfsArgs {
    /// Whether --rootfs was given.
    pub(crate) fn given(&self) -> bool {
        self.rootfs.is_some()
    }
}

/// Run `command` (None: the login shell) in the root file system; its exit
/// code.
pub(crate) fn run(
    args: &RootfsArgs,
    arch: Option<&str>,
    command: Option<Vec<std::ffi::OsString>>,
) -> Result<i32> {
    let dir = args.rootfs.clone().expect("--rootfs given");
    let arch = arch.map(Arch::parse).transpose()?;
    let user = crate::toolbox::HostUser::current()?;
    let req = Request {
        dir,
        arch,
        root: args.root,
        user: user.name,
        uid: user.uid,
        gid: user.gid,
        home: user.home,
        cwd: std::env::current_dir().ok(),
        command,
        env: std::env::vars_os().collect(),
    };
    let prepared = rootfs::prepare(&req)?;
    for w in &prepared.warnings {
        output::warn(w);
    }
    tracing::info!(
        "{} root file system{}",
        prepared.arch.platform(),
        prepared.interpreter.as_ref().map(|q| format!(" under {}", q.display())).unwrap_or_default()
    );
    Ok(prepared.run()?)
}
