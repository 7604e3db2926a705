//! NVIDIA's GPUs through the Container Device Interface (CDI), as Toolbx
//! does it: on the host, `run` and `enter` obtain the driver's CDI
//! specification when the proprietary driver is loaded and save it as
//! `cdi-nvidia.json` in the user's Toolbx runtime directory before the
//! container starts; inside, init-container applies what it finds there
//! (the bind mounts of the driver's files, the links and the linker cache
//! its `nvidia-cdi-hook` would make) and `exec` passes the spec's
//! variables to every command.
//!
//! Toolbx links NVIDIA's own Go library to generate the spec. A static
//! binary cannot load NVML, so mtbx asks the tools that users of the
//! driver have: `nvidia-ctk cdi generate` (the NVIDIA Container Toolkit),
//! else a JSON spec the toolkit already wrote into CDI's system
//! directories. Without the driver nothing is written, and a spec left in
//! the file (by Toolbx, by hand, by Toolbx's tests) is applied as it is.
//!
//! The spec is data from the host, read by a privileged process inside:
//! it is read through [`crate::sys::files::open_regular`] (no FIFO, no
//! link), bounded, and checked with the CDI package's own rules before
//! anything of it is applied. The words of the errors are Toolbx's.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the Toolbx runtime directory (Toolbx's).
pub const FILE_NAME: &str = "cdi-nvidia.json";

/// The most a spec may be. NVIDIA's are a few KiB; a larger file is not
/// one.
const MAX_SPEC: u64 = 4 << 20;

/// A CDI specification: what of it Toolbx applies. Fields CDI versions
/// add later are ignored rather than refused, so a newer toolkit's spec
/// still applies what is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// The edits every device of the spec shares.
    #[serde(default)]
    pub container_edits: ContainerEdits,
    /// The devices, each with edits of its own.
    #[serde(default)]
    pub devices: Vec<Device>,
}

/// One device of a spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Its edits.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// What a spec changes in a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    /// Variables, `K=V`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Device nodes.
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    /// Bind mounts of the host's files.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// OCI hooks.
    #[serde(default)]
    pub hooks: Vec<Hook>,
}

/// A device node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// Where it appears in the container.
    #[serde(default)]
    pub path: String,
    /// The host's node, when it is elsewhere.
    #[serde(default)]
    pub host_path: Option<String>,
}

/// A mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// The host's path.
    #[serde(default)]
    pub host_path: String,
    /// The container's path.
    #[serde(default)]
    pub container_path: String,
    /// `bind` when absent.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// mount(8) options.
    #[serde(default)]
    pub options: Vec<String>,
}

/// An OCI hook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// When it runs (`createContainer`, ...).
    #[serde(default)]
    pub hook_name: String,
    /// The program.
    #[serde(default)]
    pub path: String,
    /// Its arguments, its name first.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its variables.
    #[serde(default)]
    pub env: Vec<String>,
}

/// The hook names OCI runtimes know (CDI refuses others).
const HOOK_NAMES: &[&str] =
    &["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];

/// The one hook stage Toolbx applies: the others belong to the runtime.
pub const CREATE_CONTAINER: &str = "createContainer";

/// Why a spec could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// There is none.
    #[error("no spec")]
    Missing,
    /// The file is not a regular file, too large or unreadable.
    #[error("cannot read the spec")]
    Read(#[source] std::io::Error),
    /// It is empty or `null`.
    #[error("the spec has no data")]
    Empty,
    /// It is not a spec.
    #[error("the spec is not valid JSON of a CDI spec")]
    Parse(#[source] serde_json::Error),
}

impl Spec {
    /// A spec from its JSON. An empty document is an error, as CDI's
    /// parser has it; `{}` is a spec without edits.
    pub fn parse(data: &[u8]) -> Result<Spec, LoadError> {
        if data.iter().all(u8::is_ascii_whitespace) {
            return Err(LoadError::Empty);
        }
        serde_json::from_slice::<Option<Spec>>(data).map_err(LoadError::Parse)?.ok_or(LoadError::Empty)
    }

    /// The spec in `path`, without following a link at its end or
    /// opening anything but a regular file.
    pub fn load(path: &Path) -> Result<Spec, LoadError> {
        use std::io::Read;
        let file = match crate::sys::files::open_regular(path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::Missing),
            Err(e) => return Err(LoadError::Read(e)),
        };
        let mut data = Vec::new();
        file.take(MAX_SPEC + 1).read_to_end(&mut data).map_err(LoadError::Read)?;
        if data.len() as u64 > MAX_SPEC {
            return Err(LoadError::Read(std::io::Error::other(format!("larger than {MAX_SPEC} bytes"))));
        }
        Spec::parse(&data)
    }

    /// The common edits, then each device's, in the spec's order.
    pub fn edits(&self) -> impl Iterator<Item = &ContainerEdits> {
        std::iter::once(&self.container_edits).chain(self.devices.iter().map(|d| &d.container_edits))
    }

    /// The variables the spec sets, as `(name, value)`; malformed ones
    /// (no `=`, an empty name) are left out.
    pub fn env(&self) -> Vec<(String, String)> {
        self.edits()
            .flat_map(|e| &e.env)
            .filter_map(|kv| kv.split_once('=').filter(|(k, _)| valid_env_name(k)))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

fn valid_env_name(k: &str) -> bool {
    !k.is_empty() && !k.contains('\0')
}

impl Mount {
    /// CDI's check: both paths given.
    pub fn valid(&self) -> bool {
        !self.host_path.is_empty() && !self.container_path.is_empty()
    }
}

impl Hook {
    /// CDI's check: a known stage, a program, well-formed variables.
    pub fn valid(&self) -> bool {
        HOOK_NAMES.contains(&self.hook_name.as_str())
            && !self.path.is_empty()
            && self.env.iter().all(|kv| kv.split_once('=').is_some_and(|(k, _)| valid_env_name(k)))
    }

    /// What `nvidia-cdi-hook` would do, when this is one Toolbx knows:
    /// the subcommand and its arguments.
    pub fn nvidia(&self) -> Option<(&str, &[String])> {
        match self.args.as_slice() {
            [tool, sub, rest @ ..] if tool == "nvidia-cdi-hook" => Some((sub.as_str(), rest)),
            _ => None,
        }
    }
}

/// The user's Toolbx runtime directory, where Toolbx keeps the spec:
/// `/run/toolbox` for root, `$XDG_RUNTIME_DIR/toolbox` (else
/// `/run/user/UID/toolbox`) for others.
pub fn runtime_dir(uid: u32, xdg_runtime_dir: Option<&Path>) -> PathBuf {
    if uid == 0 {
        return PathBuf::from("/run/toolbox");
    }
    match xdg_runtime_dir.filter(|p| p.is_absolute()) {
        Some(d) => d.join("toolbox"),
        None => PathBuf::from(format!("/run/user/{uid}/toolbox")),
    }
}

/// The Toolbx runtime directory of the user running this process, on
/// the host (where Toolbx's stamps and the spec live).
pub fn host_runtime_dir() -> PathBuf {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    runtime_dir(crate::sys::getuid(), xdg.as_deref())
}

/// The spec file of the user running this process, on the host.
pub fn host_file() -> PathBuf {
    host_runtime_dir().join(FILE_NAME)
}

/// Where the spec comes from on a host with NVIDIA's driver.
const SYSTEM_SPECS: &[&str] = &["/etc/cdi/nvidia.json", "/var/run/cdi/nvidia.json", "/run/cdi/nvidia.json"];

/// How long `nvidia-ctk` may take: it reads the driver, not the network.
const GENERATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The driver's spec, when the proprietary driver is loaded on this host
/// and a way to describe it exists; None otherwise (Toolbx's "platform
/// unsupported": nothing to do).
pub fn generate() -> Option<Spec> {
    if !Path::new("/proc/driver/nvidia/version").exists() {
        tracing::debug!("Generating Container Device Interface for NVIDIA: no driver loaded: skipping");
        return None;
    }
    match generate_with_toolkit() {
        Ok(spec) => return Some(spec),
        Err(e) => tracing::debug!("Generating Container Device Interface for NVIDIA with nvidia-ctk: {e}"),
    }
    for path in SYSTEM_SPECS {
        match Spec::load(Path::new(path)) {
            Ok(spec) => return Some(spec),
            Err(LoadError::Missing) => {}
            Err(e) => tracing::debug!("Loading {path}: {}", crate::error::chain(&e)),
        }
    }
    tracing::debug!(
        "NVIDIA's driver is loaded, but neither nvidia-ctk nor a JSON spec in /etc/cdi or /var/run/cdi describes it: install the NVIDIA Container Toolkit"
    );
    None
}

fn generate_with_toolkit() -> Result<Spec, String> {
    use std::io::Read;
    let mut child = std::process::Command::new("nvidia-ctk")
        .args(["--quiet", "cdi", "generate", "--format=json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut data = Vec::new();
        stdout.take(MAX_SPEC + 1).read_to_end(&mut data).map(|_| data)
    });
    let deadline = std::time::Instant::now() + GENERATE_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer in {} s", GENERATE_TIMEOUT.as_secs()));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let data = reader.join().map_err(|_| "reader failed".to_string())?.map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("it failed ({status})"));
    }
    if data.len() as u64 > MAX_SPEC {
        return Err(format!("its spec is larger than {MAX_SPEC} bytes"));
    }
    Spec::parse(&data).map_err(|e| crate::error::chain(&e))
}

/// Save the spec where init-container reads it, as Toolbx does before
/// it starts a container.
pub fn save(spec: &Spec, path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        crate::fsutil::mkdir_all(dir, 0o700)?;
    }
    let data = serde_json::to_vec(spec).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(path, &data, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_documents_are_refused_and_an_empty_object_is_a_spec() {
        assert!(matches!(Spec::parse(b""), Err(LoadError::Empty)));
        assert!(matches!(Spec::parse(b" \n"), Err(LoadError::Empty)));
        assert!(matches!(Spec::parse(b"null"), Err(LoadError::Empty)));
        assert!(matches!(Spec::parse(b"This is not JSON\n"), Err(LoadError::Parse(_))));
        assert_eq!(Spec::parse(b"{\n}\n").unwrap(), Spec::default());
    }

    #[test]
    fn a_toolkit_spec_reads_with_its_devices_and_unknown_fields() {
        let spec = Spec::parse(
            br#"{"cdiVersion":"0.5.0","kind":"nvidia.com/gpu","devices":[{"name":"0",
            "containerEdits":{"deviceNodes":[{"path":"/dev/nvidia0"}]}}],
            "containerEdits":{"env":["NVIDIA_VISIBLE_DEVICES=void","=bad","NOEQUALS"],
            "mounts":[{"hostPath":"/usr/lib/libcuda.so.1","containerPath":"/usr/lib/libcuda.so.1",
            "options":["ro","nosuid","nodev","bind"]}],
            "hooks":[{"hookName":"createContainer","path":"/usr/bin/nvidia-cdi-hook",
            "args":["nvidia-cdi-hook","update-ldcache","--folder","/usr/lib"]}]}}"#,
        )
        .unwrap();
        assert_eq!(spec.env(), vec![("NVIDIA_VISIBLE_DEVICES".to_string(), "void".to_string())]);
        assert_eq!(spec.edits().count(), 2);
        assert_eq!(spec.devices[0].container_edits.device_nodes[0].path, "/dev/nvidia0");
        let hook = &spec.container_edits.hooks[0];
        assert!(hook.valid() && spec.container_edits.mounts[0].valid());
        assert_eq!(
            hook.nvidia(),
            Some(("update-ldcache", &["--folder".to_string(), "/usr/lib".to_string()][..]))
        );
        // What is saved reads back the same.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("toolbox").join(FILE_NAME);
        save(&spec, &file).unwrap();
        assert_eq!(Spec::load(&file).unwrap(), spec);
    }

    #[test]
    fn cdis_rules_for_hooks_and_mounts() {
        let hook =
            |name: &str, path: &str| Hook { hook_name: name.into(), path: path.into(), ..Hook::default() };
        assert!(hook("createContainer", "/usr/bin/x").valid());
        assert!(hook("createRuntime", "/usr/bin/x").valid(), "valid, if not Toolbx's stage");
        assert!(!hook("invalid", "/usr/bin/x").valid());
        assert!(!hook("createContainer", "").valid());
        let with_env = Hook { env: vec!["NOEQUALS".into()], ..hook("createContainer", "/x") };
        assert!(!with_env.valid());
        let mount =
            |h: &str, c: &str| Mount { host_path: h.into(), container_path: c.into(), ..Mount::default() };
        assert!(mount("/tmp", "/tmp").valid() && !mount("", "/tmp").valid() && !mount("/tmp", "").valid());
        assert_eq!(hook("createContainer", "/x").nvidia(), None);
    }

    #[test]
    fn the_runtime_directory_is_toolbxs() {
        assert_eq!(runtime_dir(0, Some(Path::new("/run/user/0"))), Path::new("/run/toolbox"));
        assert_eq!(runtime_dir(1000, Some(Path::new("/run/user/1000"))), Path::new("/run/user/1000/toolbox"));
        assert_eq!(runtime_dir(1000, None), Path::new("/run/user/1000/toolbox"));
        assert_eq!(runtime_dir(1000, Some(Path::new("relative"))), Path::new("/run/user/1000/toolbox"));
    }

    #[test]
    fn fifos_links_and_huge_files_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(Spec::load(&fifo), Err(LoadError::Read(_))), "a FIFO would block");
        let real = dir.path().join("real.json");
        std::fs::write(&real, "{}").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(Spec::load(&link), Err(LoadError::Read(_))), "links are not followed");
        let big = dir.path().join("big.json");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_SPEC + 10).unwrap();
        assert!(matches!(Spec::load(&big), Err(LoadError::Read(_))));
        assert!(matches!(Spec::load(&dir.path().join("none")), Err(LoadError::Missing)));
    }
}
