//! Toolbx-style containers of any architecture: which image and name a
//! `create` means, the podman arguments that make a container feel like
//! home, and how `run`/`enter` know the container is ready without asking
//! podman (so a command in a running container costs one `podman exec`).
//!
//! Readiness: init-container (module [`crate::toolbox::inside`]) writes "PID
//! STARTTIME" of itself into a stamp file on the host, bind-mounted into
//! the container. The stamp is current exactly when that process still
//! runs with that start time (containers share the host's PID namespace,
//! as in Toolbx), so a stopped or restarted container never looks ready.

pub mod assemble;
pub mod cdi;
pub mod engine;
pub mod export;
pub mod host_exec;
pub mod inside;
pub mod naming;
pub mod ops;
pub mod options;
pub mod provision;
pub mod readiness;
pub mod selection;
pub mod session;

use std::path::{Path, PathBuf};

use crate::emu::arch::Arch;

/// Toolbx's own label: `toolbox list` sees mtbx containers too.
pub const LABEL_TOOLBOX: &str = "com.github.containers.toolbox";
/// The label of containers and images made when Toolbx lived under
/// debarshiray's name; Toolbx still lists them.
pub const LABEL_TOOLBOX_OLD: &str = "com.github.debarshiray.toolbox";
/// The platform an mtbx container runs (`arm64/v8`); list/enter/run/rm read it.
pub const LABEL_ARCH: &str = "io.github.mtbx.arch";
/// The host directory of the container's readiness stamp, recorded at
/// create: `run` under another environment (sudo -u, cron, ssh) may
/// compute another one.
pub const LABEL_STAMP_DIR: &str = "io.github.mtbx.stamp-dir";
/// `true` on a container made with `create --auto-stop`: it stops after
/// its last session ([`session`]).
pub const LABEL_AUTO_STOP: &str = "io.github.mtbx.auto-stop";
/// The QEMU CPU model every program of the container runs under, when
/// create was given one.
pub const LABEL_CPU: &str = "io.github.mtbx.cpu";
/// Where the static mtbx and the interpreter appear inside a container.
pub const HOST_DIR: &str = "/run/mtbx-host";
/// Where the readiness stamp directory appears inside a container.
pub const STAMP_DIR: &str = "/run/mtbx-stamp";
/// The label the Toolbx cross-architecture work puts on foreign
/// containers, in OCI platform form (`linux/arm64`), so tools that know
/// that series read mtbx's containers too.
pub const LABEL_TOOLBOX_ARCH: &str = "toolbox-arch";
/// The variable that tells programs and prompts inside which
/// architecture the container runs (`arm64`, `amd64`).
pub const ENV_ARCH: &str = "MTBX_ARCH";

/// The platform as OCI tools write it on the command line (`linux/arm64`,
/// `linux/arm/v7`): arm64's v8 is implied, as `podman --platform` has it.
pub fn oci_platform(arch: &Arch) -> String {
    match arch.variant {
        Some(v) if !(arch.oci == "arm64" && v == "v8") => format!("linux/{}/{v}", arch.oci),
        _ => format!("linux/{}", arch.oci),
    }
}

/// Bad input to create/enter/run/rm.
#[derive(Debug, thiserror::Error)]
pub enum ToolboxError {
    /// A name too long to name a directory.
    #[error("a container name has at most {MAX_NAME} characters; this one has {0}")]
    NameTooLong(usize),
    /// A name podman will not take.
    #[error(
        "invalid container name {0}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    BadName(String),
    /// The host user cannot be determined.
    #[error("cannot tell who you are")]
    NoUser(#[source] nix::errno::Errno),
    /// The user has no passwd entry.
    #[error("cannot tell who you are: uid {0} has no passwd entry")]
    NotInPasswd(u32),
    /// The host cannot emulate the architecture; the message says how to fix it.
    #[error("{0}")]
    Host(String),
}

/// Check a user-given container name against podman's rule.
pub fn check_name(name: &str) -> Result<(), ToolboxError> {
    if name.len() > MAX_NAME {
        return Err(ToolboxError::NameTooLong(name.len()));
    }
    if crate::toolbox::naming::valid_container_name(name) {
        Ok(())
    } else {
        Err(ToolboxError::BadName(crate::text::quoted(name)))
    }
}

/// The longest container name: it names the stamp directory, and a file
/// name has at most 255 bytes (podman itself takes longer ones).
pub const MAX_NAME: usize = 255;

/// The host user the container is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUser {
    /// Login name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
    /// Login shell.
    pub shell: PathBuf,
}

impl crate::error::Classify for ToolboxError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            ToolboxError::BadName(_) | ToolboxError::NameTooLong(_) => crate::error::Kind::BadInput,
            ToolboxError::NoUser(_) | ToolboxError::NotInPasswd(_) | ToolboxError::Host(_) => {
                crate::error::Kind::Failed
            }
        }
    }
}

impl HostUser {
    /// The user running mtbx, with the home directory they use.
    pub fn current() -> Result<HostUser, ToolboxError> {
        let uid = nix::unistd::getuid();
        let u = nix::unistd::User::from_uid(uid)
            .map_err(ToolboxError::NoUser)?
            .ok_or_else(|| ToolboxError::NotInPasswd(uid.as_raw()))?;
        // $HOME first, as Toolbx (Go's os.UserHomeDir) takes it: a user
        // who moved it gets that home in the container; passwd's otherwise.
        let home = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute()).unwrap_or(u.dir);
        Ok(HostUser { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw(), home, shell: u.shell })
    }
}

/// What a container is made of.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// Container name.
    pub name: String,
    /// Image name in the store.
    pub image: String,
    /// Its platform.
    pub arch: &'static Arch,
    /// The static interpreter, for a foreign platform.
    pub qemu: Option<PathBuf>,
    /// The QEMU CPU model, checked against that interpreter.
    pub cpu: Option<String>,
    /// The static mtbx binary to bind-mount.
    pub mtbx: PathBuf,
    /// The user.
    pub user: HostUser,
    /// Rootless podman.
    pub rootless: bool,
    /// Host directory for the readiness stamp.
    pub stamp_dir: PathBuf,
    /// Stop after the last session (`create --auto-stop`).
    pub auto_stop: bool,
    /// The resource limits the container gets.
    pub ulimits: Ulimits,
    /// Packages and init hooks for its first start (in labels).
    pub provision: provision::Provision,
    /// Its own home, volumes, variables and devices.
    pub options: options::BoxOptions,
    /// Labels of the caller's own ([`ops::CreateRequest::labels`]).
    pub labels: Vec<(String, String)>,
}

/// The resource limits a toolbox container gets. Toolbx asks podman for
/// the host's (`--ulimit host`), but podman 4 still applies its defaults
/// then: 1048576 open files and `kernel.pid_max` processes, which runc
/// must set, and cannot where root lacks CAP_SYS_RESOURCE and the host's
/// hard limit is lower (containers, some CI machines): every start then
/// fails with "error setting rlimits ... operation not permitted". There
/// the caller's own limits are given explicitly, which is what "host"
/// means anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ulimits {
    /// `--ulimit host`, as Toolbx.
    Host,
    /// The caller's limits, each (soft, hard).
    Caller {
        /// Open files.
        nofile: (u64, u64),
        /// Processes, at most `kernel.pid_max`.
        nproc: (u64, u64),
    },
}

/// The open-files limit podman 4 gives a rootful container unless told
/// otherwise (its `RLimitDefaultValue`).
const PODMAN_DEFAULT_NOFILE: u64 = 1_048_576;

impl Ulimits {
    /// What this process can give: `Host` unless podman's default would
    /// fail here (rootful, and the open-files hard limit cannot be raised
    /// to podman's default). The process limit is capped at
    /// `kernel.pid_max`, the one podman itself runs under (it lowers its
    /// own to that), since runc cannot raise it above; a larger one could
    /// never be reached anyway.
    pub fn for_this_process(rootless: bool) -> Ulimits {
        use nix::sys::resource::Resource;
        if rootless || crate::sys::process::can_raise_nofile(PODMAN_DEFAULT_NOFILE) {
            return Ulimits::Host;
        }
        let nofile = crate::sys::process::rlimit(Resource::RLIMIT_NOFILE);
        let nproc = crate::sys::process::rlimit(Resource::RLIMIT_NPROC);
        let pid_max =
            std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok());
        match (nofile, nproc) {
            (Ok(nofile), Ok((soft, hard))) => {
                let cap = |v: u64| pid_max.map_or(v, |m: u64| v.min(m));
                Ulimits::Caller { nofile, nproc: (cap(soft), cap(hard)) }
            }
            _ => Ulimits::Host,
        }
    }

    /// The `podman create` arguments.
    pub fn args(&self) -> Vec<String> {
        match self {
            Ulimits::Host => vec!["--ulimit".into(), "host".into()],
            Ulimits::Caller { nofile, nproc } => vec![
                "--ulimit".into(),
                format!("nofile={}:{}", nofile.0, nofile.1),
                "--ulimit".into(),
                format!("nproc={}:{}", nproc.0, nproc.1),
            ],
        }
    }
}

/// Path of the interpreter inside the container.
pub fn qemu_in_container(arch: &Arch) -> String {
    format!("{HOST_DIR}/qemu-{}", arch.qemu.name)
}

/// The `podman create` arguments for a toolbox container, as Toolbx makes
/// them (host network, PID and IPC namespaces, privileged, the home and
/// the whole host under /run/host) plus what emulation needs: a user
/// namespace of its own (rootless: keep-id; rootful: an identity map of
/// 65536 ids), so that init-container mounts a binfmt_misc instance private
/// to the container; the interpreter and mtbx, read only; mtbx as the
/// entrypoint.
pub fn create_args(spec: &CreateSpec) -> Vec<String> {
    let u = &spec.user;
    let mut a: Vec<String> = [
        "create",
        "--cgroupns",
        "host",
        "--dns",
        "none",
        "--hostname",
        "toolbx",
        "--ipc",
        "host",
        "--network",
        "host",
        "--no-hosts",
        "--pid",
        "host",
        "--privileged",
        "--security-opt",
        "label=disable",
        "--user",
        "root:root",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(spec.ulimits.args());
    if spec.rootless {
        a.extend(["--userns".into(), "keep-id".into()]);
    } else {
        a.extend(["--uidmap".into(), "0:0:65536".into(), "--gidmap".into(), "0:0:65536".into()]);
    }
    let mut vol = |src: &Path, dst: &str, opts: &str| {
        a.push("--volume".into());
        a.push(if opts.is_empty() {
            format!("{}:{dst}", src.display())
        } else {
            format!("{}:{dst}:{opts}", src.display())
        });
    };
    vol(Path::new("/"), "/run/host", "rslave");
    vol(Path::new("/dev"), "/dev", "rslave");
    // The home at its canonical path, as Toolbx mounts it: getcwd() on the
    // host gives canonical paths, and `run` goes to the same one inside.
    // init-container links the passwd path to it when they differ.
    let home = std::fs::canonicalize(&u.home).unwrap_or_else(|_| u.home.clone());
    vol(&home, &home.to_string_lossy(), "rslave");
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_dir());
    if let Some(rt) = &runtime_dir {
        vol(rt, &rt.to_string_lossy(), "rslave");
    }
    for (path, bind) in host_mounts() {
        vol(&path, &path.to_string_lossy(), if bind { "rslave" } else { "" });
    }
    vol(&spec.mtbx, &format!("{HOST_DIR}/mtbx"), "ro");
    // As Toolbx: `toolbox` inside runs commands on the host through
    // flatpak-spawn and TOOLBOX_PATH (the host path it was invoked by).
    vol(&spec.mtbx, "/usr/bin/toolbox", "ro");
    if let Some(q) = &spec.qemu {
        vol(q, &qemu_in_container(spec.arch), "ro");
    }
    vol(&spec.stamp_dir, STAMP_DIR, "rw");
    a.extend(["--env".into(), format!("TOOLBOX_PATH={}", invoked_path().display())]);
    for hook in ["TOOLBX_DELAY_ENTRY_POINT", "TOOLBX_FAIL_ENTRY_POINT"] {
        if let Some(v) = std::env::var_os(hook) {
            a.extend(["--env".into(), format!("{hook}={}", v.to_string_lossy())]);
        }
    }
    // Which architecture runs here, for programs and the prompt.
    a.extend(["--env".into(), format!("{ENV_ARCH}={}", spec.arch.short_name())]);
    if let (true, Some(rt)) = (spec.rootless, &runtime_dir) {
        a.extend(["--env".into(), format!("XDG_RUNTIME_DIR={}", rt.display())]);
    }
    if spec.qemu.is_some() {
        a.extend(["--label".into(), format!("{LABEL_TOOLBOX_ARCH}={}", oci_platform(spec.arch))]);
    }
    if let Some(cpu) = &spec.cpu {
        a.extend(["--label".into(), format!("{LABEL_CPU}={cpu}")]);
    }
    if spec.auto_stop {
        a.extend(["--label".into(), format!("{LABEL_AUTO_STOP}=true")]);
    }
    for (label, value) in spec.provision.labels() {
        a.extend(["--label".into(), format!("{label}={value}")]);
    }
    a.extend(spec.options.create_args());
    for (label, value) in &spec.labels {
        a.extend(["--label".into(), format!("{label}={value}")]);
    }
    a.extend([
        "--label".into(),
        format!("{LABEL_TOOLBOX}=true"),
        "--label".into(),
        format!("{LABEL_ARCH}={}", spec.arch.platform()),
        "--label".into(),
        format!("{LABEL_STAMP_DIR}={}", spec.stamp_dir.display()),
        "--name".into(),
        spec.name.clone(),
        "--entrypoint".into(),
        format!("{HOST_DIR}/mtbx"),
        spec.image.clone(),
        "init-container".into(),
        "--arch".into(),
        spec.arch.platform(),
        "--user".into(),
        u.name.clone(),
        "--uid".into(),
        u.uid.to_string(),
        "--gid".into(),
        u.gid.to_string(),
        "--home".into(),
        spec.options.home.as_ref().unwrap_or(&u.home).display().to_string(),
        "--shell".into(),
        u.shell.display().to_string(),
    ]);
    if spec.options.home.is_some() {
        // init-container tells container-exec that HOME is the container's.
        a.push("--own-home".into());
    }
    if spec.qemu.is_some() {
        a.extend(["--qemu".into(), qemu_in_container(spec.arch)]);
        if let Some(cpu) = &spec.cpu {
            a.extend(["--cpu".into(), cpu.clone()]);
        }
    }
    a
}

/// The host path this process was invoked by (`toolbox` or `mtbx`, as
/// the user typed it), absolute; the executable's own path otherwise.
pub fn invoked_path() -> PathBuf {
    let arg0 = std::env::args_os().next().map(PathBuf::from).unwrap_or_default();
    let found = if arg0.components().count() > 1 {
        let name = arg0.file_name().map(PathBuf::from).unwrap_or_default();
        arg0.parent().and_then(|d| std::fs::canonicalize(d).ok()).map(|d| d.join(name))
    } else {
        arg0.to_str().and_then(crate::fsutil::find_on_path)
    };
    found.or_else(|| std::env::current_exe().ok()).unwrap_or(arg0)
}

/// Host paths a toolbox container gets at the same path, as Toolbx's
/// create mounts them, each with whether it is a directory tree to follow
/// (rslave) or a socket: the system D-Bus socket (where
/// DBUS_SYSTEM_BUS_ADDRESS says, canonical), the Kerberos KCM socket of
/// sssd, /media and /mnt unless they are links (init-container makes
/// the same links inside), and /run/media.
fn host_mounts() -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let dbus = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .and_then(|a| {
            a.split(';').find_map(|t| {
                t.strip_prefix("unix:path=").map(|p| p.split(',').next().unwrap_or(p).to_string())
            })
        })
        .unwrap_or_else(|| "/var/run/dbus/system_bus_socket".into());
    for socket in [dbus.as_str(), "/run/.heim_org.h5l.kcm-socket"] {
        if let Ok(p) = std::fs::canonicalize(socket) {
            out.push((p, false));
        }
    }
    for dir in ["/media", "/mnt"] {
        let p = Path::new(dir);
        if p.is_dir() && !p.is_symlink() {
            out.push((p.to_path_buf(), true));
        }
    }
    if Path::new("/run/media").is_dir() {
        out.push(("/run/media".into(), true));
    }
    out
}

/// Host directory of a container's readiness stamp: /run/mtbx/<name> for
/// root, `$XDG_RUNTIME_DIR/mtbx/<name>` (or /tmp/mtbx-<uid>/<name>) rootless.
pub fn stamp_dir(name: &str) -> PathBuf {
    let uid = crate::sys::getuid();
    let base = if uid == 0 {
        PathBuf::from("/run/mtbx")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .map(|p| p.join("mtbx"))
            .unwrap_or_else(|| PathBuf::from(format!("/tmp/mtbx-{uid}")))
    };
    base.join(name)
}

/// Create a container's stamp directory; whether this call made it (a
/// concurrent create of the same name may have, and only the one that made
/// it may remove it). Its parent is made 0700 and must belong to this user:
/// under /tmp someone else could have made it first.
pub fn make_stamp_dir(dir: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let parent = dir.parent().unwrap_or(Path::new("/"));
    crate::fsutil::mkdir_all(parent, 0o700)?;
    let uid = crate::sys::getuid();
    let owner = std::fs::symlink_metadata(parent)?.uid();
    if owner != uid {
        return Err(std::io::Error::other(format!(
            "{} belongs to uid {owner}, not to you; remove it",
            parent.display()
        )));
    }
    // `is_ready` trusts a stamp only in a directory no one else can
    // write: the mode is set, not left to the umask (0002 on logins with
    // user-private groups made it 0775), and one an older mtbx made
    // group-writable is mended when it is this user's.
    let made = crate::fsutil::mkdir_exact(dir, STAMP_DIR_MODE)?;
    if !made {
        let m = std::fs::symlink_metadata(dir)?;
        if m.is_dir() && m.uid() == uid && m.mode() & 0o022 != 0 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(STAMP_DIR_MODE))?;
        }
    }
    Ok(made)
}

/// A stamp directory's mode: the container's root writes the stamp in
/// it, and the user reads it; nobody else may write.
const STAMP_DIR_MODE: u32 = 0o755;

/// Remove the stamp directory of a removed container: the one its label
/// records (XDG_RUNTIME_DIR may have changed since create), else the one
/// its name gives now. Only a directory of this user's that lies in an
/// mtbx stamp base (`.../mtbx/NAME`, `/tmp/mtbx-UID/NAME`) goes: a label
/// is the container's word, not proof the path is mtbx's.
pub fn forget_stamp_dir(name: &str, label: Option<&str>) {
    use std::os::unix::fs::MetadataExt;
    let dir = label.map(PathBuf::from).unwrap_or_else(|| stamp_dir(name));
    let in_base = dir.parent().and_then(|p| p.file_name()).and_then(|b| b.to_str()).is_some_and(|b| {
        b == "mtbx" || b.strip_prefix("mtbx-").is_some_and(|u| u == crate::sys::getuid().to_string())
    });
    let ours = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == crate::sys::getuid());
    if in_base && ours && dir.file_name().is_some_and(|n| n == name) {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The stamp file in a stamp directory.
pub fn stamp_file(dir: &Path) -> PathBuf {
    dir.join("ready")
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), which with
/// the pid identifies one process for good.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The stamp text for this process.
pub fn stamp_text() -> String {
    let pid = std::process::id();
    format!("{pid} {}\n", start_time(pid).unwrap_or(0))
}

/// Whether the stamp says a live init-container finished its setup. The
/// stamp and its directory must be the user's own and not writable by
/// others: anyone who could write it could make `run` skip the checks.
pub fn is_ready(stamp: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let uid = crate::sys::getuid();
    let trusted = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| (m.uid() == uid || m.uid() == 0) && m.mode() & 0o022 == 0)
    };
    if !stamp.parent().is_some_and(trusted) || !trusted(stamp) {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(stamp) else { return false };
    let mut it = text.split_whitespace();
    match (it.next().and_then(|p| p.parse().ok()), it.next().and_then(|t| t.parse::<u64>().ok())) {
        (Some(pid), Some(t)) => start_time(pid) == Some(t),
        _ => false,
    }
}

/// A usable static interpreter for `arch` (the one given, or the first
/// found), and a way for the kernel to hand it the container's programs: a
/// kernel with per-namespace binfmt_misc (>= 6.7), or a host entry. Checked
/// before anything is downloaded; the error says what to install or run.
pub fn check_host(arch: &'static Arch, explicit: Option<&Path>) -> Result<PathBuf, ToolboxError> {
    let search = crate::emu::host::find_interpreter(arch, explicit);
    let Some(found) = search.usable() else { return Err(ToolboxError::Host(search.problem(arch))) };
    let kernel = crate::emu::host::kernel_version();
    if !crate::emu::host::kernel_has_userns_binfmt(kernel) {
        let host = crate::emu::host::HostBinfmt::read(&crate::emu::binfmt::BinfmtFs::default());
        if host.entry_for(arch).is_none() {
            return Err(ToolboxError::Host(format!(
                "this kernel ({}) gives containers no binfmt_misc of their own (Linux >= 6.7 does) and the host has no entry for {}: run `sudo mtbx binfmt register --arch {} --persistent`",
                kernel.map(|(a, b)| format!("{a}.{b}")).unwrap_or_else(|| "unknown".into()),
                arch.platform(),
                arch.short_name()
            )));
        }
    }
    Ok(std::fs::canonicalize(&found.path).unwrap_or_else(|_| found.path.clone()))
}

#[cfg(test)]
impl HostUser {
    /// A user for tests, in one line.
    pub(crate) fn example(name: &str, uid: u32, gid: u32, home: &str, shell: &str) -> HostUser {
        HostUser { name: name.into(), uid, gid, home: home.into(), shell: shell.into() }
    }
}

/// One command run in a container as the user: container-exec (inside)
/// becomes `user`, goes to `cwd` when the container has it, and runs
/// `command` through the login shell (the login shell itself when empty),
/// with `env` passed from the host. `run` and `enter` of both front ends
/// build this one spec, so they exec alike.
#[derive(Debug, Clone)]
pub struct ExecSpec<'a> {
    /// The container.
    pub container: &'a str,
    /// Who runs the command.
    pub user: &'a HostUser,
    /// Where, when the container has that directory.
    pub cwd: Option<PathBuf>,
    /// Variables passed from the host.
    pub env: Vec<(String, std::ffi::OsString)>,
    /// The command; empty for the login shell.
    pub command: &'a [std::ffi::OsString],
    /// Whether podman gives the command a terminal.
    pub tty: bool,
    /// Descriptors after stdin, stdout and stderr that reach the command
    /// (`run --preserve-fds N`, as Toolbx).
    pub preserve_fds: u32,
}

impl<'a> ExecSpec<'a> {
    /// `command` for `user` as this process would run it: its working
    /// directory, Toolbx's variables from its environment, and a terminal
    /// only when both stdin and stdout are one (`echo cmd | enter` must
    /// see the end of its input, which a pseudo-terminal would hide).
    pub fn here(container: &'a str, user: &'a HostUser, command: &'a [std::ffi::OsString]) -> ExecSpec<'a> {
        use std::io::IsTerminal;
        ExecSpec {
            container,
            user,
            cwd: std::env::current_dir().ok(),
            env: PASSED_ENV.iter().filter_map(|k| std::env::var_os(k).map(|v| (k.to_string(), v))).collect(),
            command,
            tty: std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
            preserve_fds: 0,
        }
    }

    /// What every `podman exec` of a session starts with. Detach keys are
    /// off, as in Toolbx, so Ctrl-P and Ctrl-Q reach the shell and the
    /// programs in it.
    fn exec_head(&self) -> Vec<std::ffi::OsString> {
        use std::ffi::OsString;
        let mut args: Vec<OsString> =
            vec!["exec".into(), "--detach-keys".into(), "".into(), "--interactive".into()];
        if self.preserve_fds > 0 {
            args.extend(["--preserve-fds".into(), self.preserve_fds.to_string().into()]);
        }
        if self.tty {
            args.push("--tty".into());
        }
        for (k, v) in &self.env {
            let mut kv = OsString::from(format!("{k}="));
            kv.push(v);
            args.extend(["--env".into(), kv]);
        }
        args
    }

    /// The `podman exec` arguments for an mtbx container: its
    /// container-exec does the rest inside.
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args = self.exec_head();
        args.push(self.container.into());
        args.push(format!("{HOST_DIR}/mtbx").into());
        args.push("container-exec".into());
        let user = self.user;
        for (k, v) in [
            ("--uid", user.uid.to_string()),
            ("--gid", user.gid.to_string()),
            ("--user", user.name.clone()),
            ("--home", user.home.display().to_string()),
        ] {
            args.push(k.into());
            args.push(v.into());
        }
        if let Some(d) = &self.cwd {
            args.push("--workdir".into());
            args.push(d.into());
        }
        args.push("--".into());
        args.extend(self.command.iter().cloned());
        args
    }

    /// The `podman exec` arguments for a container Toolbx made, as Toolbx
    /// builds them: podman becomes the user and goes to `workdir`, and
    /// `capsh` drops the capabilities and runs the command, through a
    /// login shell when `login` (`run`; `enter`'s command is the login
    /// shell already).
    pub fn toolbx_args(&self, login: bool, workdir: &Path) -> Vec<std::ffi::OsString> {
        let mut args = self.exec_head();
        args.extend(["--user".into(), self.user.name.clone().into(), "--workdir".into(), workdir.into()]);
        args.push(self.container.into());
        args.extend(["capsh".into(), "--caps=".into(), "--".into()]);
        if login {
            args.push("--login".into());
        }
        args.extend(["-c".into(), "exec \"$@\"".into(), "bash".into()]);
        args.extend(self.command.iter().cloned());
        args
    }
}

/// The escape sequence Toolbx prints before entering a container
/// (`OSC 777;container;push;NAME;toolbox;UID ST`): terminals such as
/// GNOME's and Ptyxis track which container a tab is in with it.
pub fn osc_container_push(name: &str, uid: u32) -> String {
    format!("\x1b]777;container;push;{name};toolbox;{uid}\x1b\\")
}

/// The escape sequence Toolbx prints when the shell in a container ends.
pub fn osc_container_pop(uid: u32) -> String {
    format!("\x1b]777;container;pop;;;{uid}\x1b\\")
}

/// Environment variables passed from the host into `run`/`enter`: every
/// one Toolbx forwards (its list in src/pkg/utils/utils.go), plus the
/// locale beyond LANG (LANGUAGE and the LC_ categories), so messages,
/// dates and sorting inside follow the host session.
pub const PASSED_ENV: &[&str] = &[
    "COLORTERM",
    "CONTAINERS_STORAGE_CONF",
    "DBUS_SESSION_BUS_ADDRESS",
    "DBUS_SYSTEM_BUS_ADDRESS",
    "DESKTOP_SESSION",
    "DISPLAY",
    "HISTCONTROL",
    "HISTFILE",
    "HISTFILESIZE",
    "HISTIGNORE",
    "HISTSIZE",
    "HISTTIMEFORMAT",
    "HOME",
    "KDE_FULL_SESSION",
    "KDE_SESSION_VERSION",
    "KONSOLE_DBUS_SESSION",
    "KONSOLE_DBUS_WINDOW",
    "KONSOLE_PROFILE_NAME",
    "KONSOLE_VERSION",
    "LANG",
    "SHELL",
    "SSH_AUTH_SOCK",
    "TERM",
    "TOOLBOX_PATH",
    "USER",
    "VTE_VERSION",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_CURRENT_DESKTOP",
    "XDG_DATA_DIRS",
    "XDG_DATA_HOME",
    "XDG_MENU_PREFIX",
    "XDG_RUNTIME_DIR",
    "XDG_SEAT",
    "XDG_SESSION_CLASS",
    "XDG_SESSION_DESKTOP",
    "XDG_SESSION_ID",
    "XDG_SESSION_TYPE",
    "XDG_STATE_HOME",
    "XDG_VTNR",
    "XTERM_VERSION",
    // Beyond Toolbx's list.
    "LANGUAGE",
    "LC_ALL",
    "LC_ADDRESS",
    "LC_COLLATE",
    "LC_CTYPE",
    "LC_IDENTIFICATION",
    "LC_MEASUREMENT",
    "LC_MESSAGES",
    "LC_MONETARY",
    "LC_NAME",
    "LC_NUMERIC",
    "LC_PAPER",
    "LC_TELEPHONE",
    "LC_TIME",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_passes_the_user_the_directory_and_the_command_untouched() {
        let u = HostUser::example("ann", 1000, 100, "/home/ann", "/bin/sh");
        let env = [("TERM", std::ffi::OsString::from("xterm"))];
        let cmd = ["sh".into(), "-c".into(), "echo --uid $1".into()];
        let spec = |cwd: Option<&str>, env: &[(&'static str, std::ffi::OsString)], cmd, tty, fds| ExecSpec {
            container: "box",
            user: &u,
            cwd: cwd.map(PathBuf::from),
            env: env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            command: cmd,
            tty,
            preserve_fds: fds,
        };
        let a = spec(Some("/home/ann/src"), &env, &cmd, false, 0).args();
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(
            a.join(" "),
            "exec --detach-keys  --interactive --env TERM=xterm box /run/mtbx-host/mtbx container-exec --uid 1000 --gid 100 \
             --user ann --home /home/ann --workdir /home/ann/src -- sh -c echo --uid $1"
        );
        assert_eq!(a[2], "", "detach keys off: Ctrl-P reaches the shell");
        let a = spec(None, &[], &[], true, 0).args();
        assert_eq!(a[4], "--tty");
        assert_eq!(a.last().unwrap(), "--", "an empty command means the login shell");
        let a = spec(None, &[], &["cat".into()], false, 2).args();
        assert_eq!(a[4..6], ["--preserve-fds", "2"], "{a:?}");
    }

    #[test]
    fn every_variable_toolbx_forwards_is_forwarded() {
        // Toolbx's list (src/pkg/utils/utils.go, preservedEnvironmentVariables).
        let toolbx = "COLORTERM CONTAINERS_STORAGE_CONF DBUS_SESSION_BUS_ADDRESS DBUS_SYSTEM_BUS_ADDRESS \
            DESKTOP_SESSION DISPLAY HISTCONTROL HISTFILE HISTFILESIZE HISTIGNORE HISTSIZE HISTTIMEFORMAT HOME \
            KDE_FULL_SESSION KDE_SESSION_VERSION KONSOLE_DBUS_SESSION KONSOLE_DBUS_WINDOW KONSOLE_PROFILE_NAME \
            KONSOLE_VERSION LANG SHELL SSH_AUTH_SOCK TERM TOOLBOX_PATH USER VTE_VERSION WAYLAND_DISPLAY \
            XAUTHORITY XDG_CACHE_HOME XDG_CONFIG_HOME XDG_CURRENT_DESKTOP XDG_DATA_DIRS XDG_DATA_HOME \
            XDG_MENU_PREFIX XDG_RUNTIME_DIR XDG_SEAT XDG_SESSION_CLASS XDG_SESSION_DESKTOP XDG_SESSION_ID \
            XDG_SESSION_TYPE XDG_STATE_HOME XDG_VTNR XTERM_VERSION";
        assert_eq!(toolbx.split_whitespace().count(), 43);
        for v in toolbx.split_whitespace().chain(["LANGUAGE", "LC_ALL", "LC_TIME", "LC_MESSAGES"]) {
            assert!(PASSED_ENV.contains(&v), "{v}");
        }
    }

    #[test]
    fn osc_777_as_toolbx_prints_it() {
        assert_eq!(osc_container_push("box", 1000), "\x1b]777;container;push;box;toolbox;1000\x1b\\");
        assert_eq!(osc_container_pop(1000), "\x1b]777;container;pop;;;1000\x1b\\");
    }

    #[test]
    fn platforms_as_oci_tools_write_them() {
        assert_eq!(oci_platform(Arch::parse("arm64").unwrap()), "linux/arm64");
        assert_eq!(oci_platform(Arch::parse("arm/v7").unwrap()), "linux/arm/v7");
        assert_eq!(oci_platform(Arch::parse("s390x").unwrap()), "linux/s390x");
    }

    #[test]
    fn names_podman_accepts() {
        assert!(check_name("my-box.1_x").is_ok());
        assert!(check_name("-x").is_err() && check_name("a b").is_err() && check_name("").is_err());
    }

    #[test]
    fn a_stamp_is_current_only_for_a_live_process() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = stamp_file(dir.path());
        assert!(!is_ready(&stamp));
        std::fs::write(&stamp, stamp_text()).unwrap();
        assert!(is_ready(&stamp));
        std::fs::write(&stamp, format!("{} 1\n", std::process::id())).unwrap();
        assert!(!is_ready(&stamp), "same pid, other start time: a reused pid");
    }

    #[test]
    fn rootful_containers_get_a_user_namespace_of_their_own() {
        let spec = CreateSpec {
            name: "n".into(),
            image: "img".into(),
            arch: Arch::parse("arm64").unwrap(),
            qemu: Some("/usr/bin/qemu-aarch64-static".into()),
            cpu: None,
            mtbx: "/usr/bin/mtbx".into(),
            user: HostUser::example("u", 1000, 1000, "/home/u", "/bin/bash"),
            rootless: false,
            stamp_dir: "/run/mtbx/n".into(),
            auto_stop: false,
            ulimits: Ulimits::Host,
            provision: provision::Provision::default(),
            options: Default::default(),
            labels: Vec::new(),
        };
        let a = create_args(&spec).join(" ");
        assert!(a.contains("--ulimit host "), "as Toolbx: {a}");
        let caller = Ulimits::Caller { nofile: (1024, 20000), nproc: (4096, 32768) };
        let limited = create_args(&CreateSpec { ulimits: caller, ..spec.clone() }).join(" ");
        assert!(limited.contains("--ulimit nofile=1024:20000 --ulimit nproc=4096:32768 "), "{limited}");
        assert!(!limited.contains("--ulimit host"), "{limited}");
        assert!(a.contains("--uidmap 0:0:65536"), "{a}");
        assert!(a.contains("--volume /usr/bin/qemu-aarch64-static:/run/mtbx-host/qemu-aarch64:ro"), "{a}");
        assert!(a.ends_with("--qemu /run/mtbx-host/qemu-aarch64"), "{a}");
        assert!(a.contains("--label toolbox-arch=linux/arm64 "), "{a}");
        let toolbox_path = format!("--env TOOLBOX_PATH={} ", invoked_path().display());
        assert!(a.contains("--env MTBX_ARCH=arm64 ") && a.contains(&toolbox_path), "{a}");
        let cpu = create_args(&CreateSpec { cpu: Some("cortex-a53".into()), ..spec.clone() }).join(" ");
        assert!(cpu.ends_with("--qemu /run/mtbx-host/qemu-aarch64 --cpu cortex-a53"), "{cpu}");
        assert!(cpu.contains("--label io.github.mtbx.cpu=cortex-a53 "), "{cpu}");
        assert!(!a.contains("io.github.mtbx.cpu"), "no model, no label: {a}");
        let native = create_args(&CreateSpec { arch: Arch::host(), qemu: None, ..spec.clone() }).join(" ");
        assert!(!native.contains("toolbox-arch"), "only foreign containers carry it: {native}");
        assert!(!native.contains(LABEL_AUTO_STOP), "{native}");
        let auto = create_args(&CreateSpec { auto_stop: true, ..spec.clone() }).join(" ");
        assert!(auto.contains("--label io.github.mtbx.auto-stop=true "), "{auto}");
        assert!(!a.contains("io.github.mtbx.packages") && !a.contains("init-hooks"), "{a}");
        let p = provision::Provision::new(vec!["hello".into()], vec!["touch /x".into()]).unwrap();
        let provisioned = create_args(&CreateSpec { provision: p, ..spec.clone() });
        assert!(provisioned.windows(2).any(|w| w == ["--label", r#"io.github.mtbx.packages=["hello"]"#]));
        assert!(provisioned
            .windows(2)
            .any(|w| w == ["--label", r#"io.github.mtbx.init-hooks=["touch /x"]"#]));
        let a = create_args(&CreateSpec { rootless: true, ..spec.clone() }).join(" ");
        assert!(a.contains("--userns keep-id") && !a.contains("--uidmap"), "{a}");
        assert!(!a.contains("--own-home") && a.contains(" --home /home/u "), "{a}");
        // A home of its own: mounted, in passwd (init-container's --home), and recorded.
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let options =
            options::BoxOptions::parse(Some("/srv/box"), &s(&["/data:/data:ro"]), &s(&["A=1"]), &[]).unwrap();
        let own = create_args(&CreateSpec { options, ..spec }).join(" ");
        assert!(own.contains("--volume /home/u:/home/u:rslave "), "your own home stays: {own}");
        assert!(
            own.contains("--volume /srv/box:/srv/box:rslave --volume /data:/data:ro --env A=1 "),
            "{own}"
        );
        assert!(own.contains("--label io.github.mtbx.home=/srv/box "), "{own}");
        assert!(own.contains(" init-container ") && own.contains(" --home /srv/box "), "{own}");
        assert!(own.contains(" --own-home"), "{own}");
        let image = own.find(" img init-container").unwrap();
        assert!(own.find("--env A=1").unwrap() < image, "podman's flags come before the image: {own}");
    }
}

#[cfg(test)]
mod stamp_tests {
    #[test]
    fn only_an_mtbx_stamp_directory_of_that_name_is_forgotten() {
        let t = tempfile::tempdir().unwrap();
        let mine = t.path().join("mtbx/box");
        let other = t.path().join("data/box");
        let renamed = t.path().join("mtbx/else");
        for d in [&mine, &other, &renamed] {
            std::fs::create_dir_all(d).unwrap();
        }
        super::forget_stamp_dir("box", Some(other.to_str().unwrap()));
        super::forget_stamp_dir("box", Some(renamed.to_str().unwrap()));
        assert!(other.is_dir() && renamed.is_dir(), "a label is no proof the path is mtbx's");
        super::forget_stamp_dir("box", Some(mine.to_str().unwrap()));
        assert!(!mine.exists());
    }

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The label create records wins over where this environment would
    /// put the stamp (XDG_RUNTIME_DIR differs under sudo -u, cron, ssh).
    #[test]
    fn the_recorded_stamp_directory_wins() {
        let json = format!(
            r#"[{{"Id":"x","Names":["c1"],"Image":"i","State":"running","Created":0,"Labels":{{"{LABEL_STAMP_DIR}":"/somewhere/c1"}}}}]"#
        );
        let cs: Vec<engine::ContainerInfo> = serde_json::from_str(&json).unwrap();
        assert_eq!(ops::stamp_dir_of(&cs[0]), PathBuf::from("/somewhere/c1"));
        let json = r#"[{"Id":"x","Names":["c2"],"Image":"i","State":"running","Created":0,"Labels":{}}]"#;
        let cs: Vec<engine::ContainerInfo> = serde_json::from_str(json).unwrap();
        assert_eq!(ops::stamp_dir_of(&cs[0]), stamp_dir("c2"));
    }

    /// A stamp anyone could write proves nothing.
    #[test]
    fn a_stamp_others_can_write_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = stamp_file(dir.path());
        std::fs::write(&stamp, stamp_text()).unwrap();
        std::fs::set_permissions(&stamp, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(is_ready(&stamp), "this process's own stamp");
        std::fs::set_permissions(&stamp, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!is_ready(&stamp), "a world-writable stamp");
        std::fs::set_permissions(&stamp, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!is_ready(&stamp), "a stamp in a world-writable directory");
    }

    /// Only the create that made the stamp directory may remove it.
    #[test]
    fn make_stamp_dir_says_whether_it_made_it() {
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let dir = base.path().join("c");
        assert!(make_stamp_dir(&dir).unwrap());
        assert!(!make_stamp_dir(&dir).unwrap());
    }
}
