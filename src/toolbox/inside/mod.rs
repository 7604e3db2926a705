//! The two halves of mtbx that run inside a toolbox container, natively
//! (the static binary is bind-mounted in), whatever the container's
//! architecture:
//!
//! - `init-container`, the entrypoint: a binfmt_misc instance of the
//!   container's own user namespace with QEMU registered (flags P, F and C,
//!   so setuid programs such as sudo work), proof that a program of the
//!   container's architecture runs, then what Toolbx's init-container sets
//!   up (markers, the user, the host's files, mounts and CA trust), a
//!   readiness stamp; then it waits to be stopped. It reports in
//!   `mtbx-init:` lines on stderr, which land in the container's log where
//!   create/enter show them.
//! - `container-exec`, what `run`/`enter` execute through `podman exec`:
//!   become the user without capabilities, go to the directory, run the
//!   command through a login shell.
//!
//! docs/toolbx-parity.md compares each step with Toolbx's.
//!
//! One file per concern; [`init_container`] here runs them in their
//! order, which is behaviour (the user is set up after the home's links,
//! the CA trust last, the stamp after everything):
//!
//! - `emulation`: the container's binfmt_misc instance and the check
//!   program;
//! - `markers`: Toolbx's and mtbx's marker files and the prompt script;
//! - `user`: the host user in passwd, group and shadow, and sudo;
//! - `host`: the host's links, files, time zone and bind mounts;
//! - `nvidia`: NVIDIA's driver through the CDI spec the host saved;
//! - `config`: CA trust, Kerberos and RPM configured for the host;
//! - `exec`: container-exec.

mod config;
mod emulation;
mod exec;
mod host;
mod markers;
mod nvidia;
mod user;

use std::path::{Path, PathBuf};

use crate::emu::arch::Arch;
use crate::fsutil::write_atomic;
use crate::toolbox;

pub use exec::{container_exec, ExecArgs};
pub use markers::{own_home, RUN_DIR};
pub use user::{setup_user, setup_user_in};

/// What init-container is told by `podman create`.
#[derive(Debug, Clone)]
pub struct InitArgs {
    /// The container's platform.
    pub arch: &'static Arch,
    /// The host user.
    pub user: toolbox::HostUser,
    /// The interpreter inside the container (foreign platforms).
    pub qemu: Option<PathBuf>,
    /// The QEMU CPU model every program runs under (`create --cpu`).
    pub cpu: Option<String>,
    /// The user's home is the container's own (`create --home`): run and
    /// enter use it whatever home the host's environment says.
    pub own_home: bool,
}

/// Why init-container stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InitError(String);

/// Log lines for create/enter, each prefixed: `prefix` is
/// [`ERROR_PREFIX`] or [`WARNING_PREFIX`].
fn say(prefix: &str, msg: &str) {
    for line in msg.lines() {
        eprintln!("{prefix}{line}");
    }
}

/// Toolbx's test hooks for its entry point, honoured so the same tests
/// exercise mtbx's failure paths: TOOLBX_DELAY_ENTRY_POINT=N waits N
/// seconds before the set-up, TOOLBX_FAIL_ENTRY_POINT=N fails it (with a
/// second line when N > 1).
fn test_hooks() -> Result<(), InitError> {
    let positive = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok()).filter(|n| *n > 0);
    if let Some(secs) = positive("TOOLBX_DELAY_ENTRY_POINT") {
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
    match positive("TOOLBX_FAIL_ENTRY_POINT") {
        None => Ok(()),
        Some(1) => Err(InitError("TOOLBX_FAIL_ENTRY_POINT is set".into())),
        Some(_) => Err(InitError(
            "TOOLBX_FAIL_ENTRY_POINT is set\nThis environment variable should only be set when testing."
                .into(),
        )),
    }
}

/// The log lines create/enter look for to show a failure.
pub const ERROR_PREFIX: &str = "mtbx-init: error: ";
/// The log lines enter/run pass on as warnings.
pub const WARNING_PREFIX: &str = "mtbx-init: warning: ";

/// Whether this process runs in a container mtbx created: podman's
/// /run/.containerenv and mtbx's stamp mount are both there. init-container
/// rewrites /etc/passwd and friends; on a host that would be a disaster.
pub fn in_mtbx_container() -> bool {
    Path::new("/run/.containerenv").is_file() && Path::new(toolbox::STAMP_DIR).is_dir()
}

/// Run init-container: set up, stamp, wait for SIGTERM. Returns the exit code.
pub fn init_container(args: &InitArgs) -> i32 {
    if !in_mtbx_container() {
        eprintln!(
            "mtbx: error: init-container is the entrypoint of containers `mtbx create` makes, and changes the system it runs on; this is not one (no /run/.containerenv and {})",
            toolbox::STAMP_DIR
        );
        return 2;
    }
    match test_hooks().and_then(|()| setup(args)) {
        Ok(()) => {
            eprintln!("mtbx-init: ready");
            // Toolbx's last start-up line: tools that wait for a Toolbx
            // container's set-up (its own tests among them) look for it.
            eprintln!("Listening to file system and ticker events");
            wait_for_stop();
            0
        }
        Err(e) => {
            say(ERROR_PREFIX, &e.0);
            1
        }
    }
}

fn setup(args: &InitArgs) -> Result<(), InitError> {
    let err = |what: &str, e: &dyn std::fmt::Display| InitError(format!("{what}: {e}"));
    if let Some(qemu) = &args.qemu {
        crate::emu::elf::check_static(qemu, Arch::host())
            .map_err(|e| err("the interpreter is not usable", &e))?;
        emulation::register(args.arch, qemu, args.cpu.as_deref())?;
        emulation::verify(args.arch)?;
    }
    prepare(args)?;
    let mtbx = Path::new(toolbox::HOST_DIR).join("mtbx");
    if let Err(e) = toolbox::host_exec::link_spawn_tools(Path::new("/"), &mtbx) {
        say(WARNING_PREFIX, &format!("cannot link host-spawn and flatpak-spawn to mtbx host-exec: {e}"));
    }
    let stamp = toolbox::stamp_file(Path::new(toolbox::STAMP_DIR));
    write_atomic(&stamp, toolbox::stamp_text().as_bytes(), 0o644)
        .map_err(|e| err("cannot write the ready stamp", &e))?;
    // The user's, so that `mtbx rm` (run as the user) can remove it.
    let _ = std::os::unix::fs::chown(&stamp, Some(args.user.uid), Some(args.user.gid));
    Ok(())
}

/// What Toolbx's init-container sets up, in its order, for mtbx's
/// containers and Toolbx's alike.
fn prepare(args: &InitArgs) -> Result<(), InitError> {
    let err = |what: &str, e: &dyn std::fmt::Display| InitError(format!("{what}: {e}"));
    markers::mark(args).map_err(|e| err("cannot write the toolbox markers", &e))?;
    host::link_host_dirs(Path::new("/"), &args.user);
    user::setup_user(&args.user).map_err(|e| err("cannot set up the user", &e))?;
    host::link_host_files(Path::new("/"));
    host::bind_host_paths();
    nvidia::apply_file(Path::new("/"), &nvidia::spec_file(args.user.uid), args.qemu.is_none())?;
    config::configure_kerberos_and_rpm(Path::new("/"));
    config::trust_host_cas(Path::new("/"));
    Ok(())
}

/// `toolbox init-container` in a container Toolbx made, when mtbx is the
/// host's /usr/bin/toolbox that Toolbx bind-mounted in: the same set-up
/// as mtbx's own containers get (natively: Toolbx has no foreign
/// containers), then Toolbx's initialization stamp, which `run` and
/// `enter` (Toolbx's or mtbx's) wait for, in the user's Toolbx runtime
/// directory (shared with the host), named by this process's id, which is
/// the host's (Toolbx's containers share its PID namespace). Failures in
/// Toolbx's words, which the front ends read from the log.
pub fn init_toolbx_made(args: &InitArgs) -> i32 {
    if !Path::new("/run/.containerenv").is_file() {
        eprintln!("Error: the 'init-container' command can only be used inside containers");
        return 1;
    }
    let stamp = || -> Result<(), InitError> {
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        let dir = toolbox::cdi::runtime_dir(args.user.uid, xdg.as_deref());
        let stamp = dir.join(format!("container-initialized-{}", std::process::id()));
        crate::fsutil::mkdir_all(&dir, 0o700)
            .and_then(|()| std::fs::File::create(&stamp).map(drop))
            .map_err(|e| InitError(format!("failed to create initialization stamp: {e}")))?;
        let _ = std::os::unix::fs::chown(&stamp, Some(args.user.uid), Some(args.user.gid));
        Ok(())
    };
    match test_hooks().and_then(|()| prepare(args)).and_then(|()| stamp()) {
        Ok(()) => {
            eprintln!("Listening to file system and ticker events");
            wait_for_stop();
            0
        }
        Err(e) => {
            for line in e.0.lines() {
                eprintln!("Error: {line}");
            }
            1
        }
    }
}

/// Block the signals that end a container and wait for one, while the
/// host's time zone is followed ([`host::follow_time_zone`], a thread
/// started after the block, so the signals still reach only this wait).
fn wait_for_stop() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT] {
        set.add(s);
    }
    let _ = set.thread_block();
    std::thread::spawn(|| host::follow_time_zone(Path::new("/")));
    let _ = set.wait();
}

/// Why container-exec could not run the command (here, with
/// [`InitError`], at the path src/cli/errors.rs names): 126 or 127 as shells
/// say, so scripts tell a missing command from the command's own failure.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Dropping to the user's ids failed.
    #[error("cannot become {user} inside the container")]
    Become {
        /// The user.
        user: String,
        /// The failed call.
        #[source]
        source: nix::errno::Errno,
    },
    /// exec failed.
    #[error("cannot run {command}")]
    Run {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Classify for ExecError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            ExecError::Run { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                crate::error::Kind::CommandNotFound
            }
            _ => crate::error::Kind::CannotExec,
        }
    }
}
