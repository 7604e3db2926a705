//! podman, the container engine, driven as a subprocess with stable
//! arguments; anything read back is `--format json` (or a Go template of
//! one field), never screen-scraped.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Deserialize;

/// podman failures; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// podman is not installed.
    #[error("podman is not installed; mtbx runs containers with it: install podman (apt-get install podman / dnf install podman)")]
    Missing,
    /// podman ran and failed.
    #[error("podman {args} failed: {stderr}")]
    Failed {
        /// The arguments, for the message.
        args: String,
        /// What podman said.
        stderr: String,
    },
    /// podman could not be started.
    #[error("cannot run podman {args}")]
    Spawn {
        /// The arguments, for the message.
        args: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No such container or image (podman rm/rmi exit 1).
    #[error("there is no {object} named {}", crate::text::escaped(.name))]
    NotFound {
        /// Container or image.
        object: Object,
        /// The name or id given.
        name: String,
    },
    /// A running container, or an image that containers or children use
    /// (podman rm/rmi exit 2).
    #[error("{object} {} is in use ({}): pass --force", crate::text::escaped(.name), object.in_use())]
    InUse {
        /// Container or image.
        object: Object,
        /// The name or id given.
        name: String,
    },
    /// podman's output was not what its --format promised.
    #[error("cannot read podman's output for {args}")]
    Parse {
        /// The arguments.
        args: String,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
}

impl crate::error::Classify for EngineError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Failed
    }
}

/// The two kinds of object podman's `inspect`, `rm` and `rmi` work on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// A container (`podman rm`).
    Container,
    /// An image (`podman rmi`).
    Image,
}

impl Object {
    /// podman's noun, as `inspect --type` and messages spell it.
    pub fn noun(self) -> &'static str {
        match self {
            Object::Container => "container",
            Object::Image => "image",
        }
    }

    /// What podman's "in use" (exit 2) means for this kind.
    pub fn in_use(self) -> &'static str {
        match self {
            Object::Container => "it is running",
            Object::Image => "containers or other images use it",
        }
    }

    fn remove_verb(self) -> &'static str {
        match self {
            Object::Container => "rm",
            Object::Image => "rmi",
        }
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.noun())
    }
}

/// A container or image as `podman inspect` describes it: the parts
/// toolbox commands decide on.
#[derive(Debug, Clone, Default)]
pub struct Inspected {
    /// The name podman knows it by (a container's; empty for an image).
    pub name: String,
    /// Its id.
    pub id: String,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// An image as `podman images --format json` lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInfo {
    /// Its id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Its names (none for a dangling image).
    #[serde(default)]
    pub names: Option<Vec<String>>,
    /// Its labels.
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Creation time, unix seconds.
    #[serde(default)]
    pub created: i64,
}

/// A container as `podman ps --format json` lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInfo {
    /// Its id.
    pub id: String,
    /// Its names (one).
    #[serde(default)]
    pub names: Vec<String>,
    /// The image reference it was created from.
    #[serde(default)]
    pub image: String,
    /// The image's id.
    #[serde(default, rename = "ImageID")]
    pub image_id: String,
    /// running, exited, created, ...
    #[serde(default)]
    pub state: String,
    /// Creation time, unix seconds.
    #[serde(default)]
    pub created: i64,
    /// Its labels.
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// The command its entry point runs, program first (Toolbx's own
    /// containers run `toolbox init-container`).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Where its mounts appear inside.
    #[serde(default)]
    pub mounts: Option<Vec<String>>,
    /// Its entry point's process id on the host while it runs (the
    /// PID namespace is the host's), else 0.
    #[serde(default)]
    pub pid: i64,
}

impl ContainerInfo {
    /// Its name.
    pub fn name(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or(&self.id)
    }

    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(String::as_str)
    }
}

/// podman's own `--log-level` for every call of this process (Toolbx's
/// `--log-podman`): its log then shows on stderr beside mtbx's.
static PODMAN_LOG_LEVEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Have every podman call of this process log at `level` (podman's
/// names: debug, info, warn, error, fatal, panic).
pub fn set_podman_log_level(level: &str) {
    let _ = PODMAN_LOG_LEVEL.set(level.to_string());
}

/// The podman on PATH.
#[derive(Debug, Clone)]
pub struct Podman {
    bin: PathBuf,
}

impl Podman {
    /// Find podman on PATH.
    pub fn find() -> Result<Podman, EngineError> {
        crate::fsutil::find_on_path("podman").map(|bin| Podman { bin }).ok_or(EngineError::Missing)
    }

    /// A podman command with these arguments (for callers that pass the
    /// terminal through), with podman's own log level when one was set.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.bin);
        if let Some(level) = PODMAN_LOG_LEVEL.get() {
            c.args(["--log-level", level]);
        }
        c.args(args);
        c
    }

    /// Run podman quietly; its stdout on success.
    pub fn output<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<String, EngineError> {
        self.answer(args).map_err(|(_, e)| e)
    }

    /// Run podman quietly; its stdout on success, else its exit code (when
    /// it exited) beside the error, for callers that tell podman's answers
    /// apart by code.
    fn answer<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<String, (Option<i32>, EngineError)> {
        let shown =
            || args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null());
        if PODMAN_LOG_LEVEL.get().is_some() {
            // Its log is asked for: it goes to stderr as podman writes it.
            cmd.stderr(Stdio::inherit());
        }
        let out = cmd.output().map_err(|source| (None, EngineError::Spawn { args: shown(), source }))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let last = last.strip_prefix("Error: ").unwrap_or(last);
            return Err((out.status.code(), EngineError::Failed { args: shown(), stderr: last.to_string() }));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// podman's JSON answer to `args`, parsed; an empty answer is `T`'s
    /// default (podman prints nothing for an empty list).
    fn json<T: serde::de::DeserializeOwned + Default>(&self, args: &[&str]) -> Result<T, EngineError> {
        let text = self.output(args)?;
        if text.trim().is_empty() {
            return Ok(T::default());
        }
        serde_json::from_str(&text).map_err(|source| EngineError::Parse { args: args.join(" "), source })
    }

    /// Containers carrying `label` (key=value), all states.
    pub fn containers(&self, label: &str) -> Result<Vec<ContainerInfo>, EngineError> {
        self.json(&["ps", "--all", "--format", "json", "--filter", &format!("label={label}")])
    }

    /// Every container, all states, sorted by name.
    pub fn all_containers(&self) -> Result<Vec<ContainerInfo>, EngineError> {
        self.json(&["ps", "--all", "--format", "json", "--sort", "names"])
    }

    /// The container of exactly this name, if there is one.
    pub fn container(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError> {
        let found: Vec<ContainerInfo> =
            self.json(&["ps", "--all", "--format", "json", "--filter", &format!("name=^{name}$")])?;
        Ok(found.into_iter().find(|c| c.name() == name))
    }

    /// Every image in the store.
    pub fn images(&self) -> Result<Vec<ImageInfo>, EngineError> {
        self.json(&["images", "--format", "json"])
    }

    /// A container or image by name or id.
    pub fn inspect(&self, object: Object, name: &str) -> Result<Inspected, EngineError> {
        let args = ["inspect", "--format", "json", "--type", object.noun(), name];
        let v: Vec<serde_json::Value> = self.json(&args)?;
        let Some(v) = v.into_iter().next() else {
            return Err(EngineError::NotFound { object, name: name.to_string() });
        };
        // A container keeps its labels in its config, an image at the top.
        let labels = match object {
            Object::Container => &v["Config"]["Labels"],
            Object::Image => &v["Labels"],
        };
        Ok(Inspected {
            name: v["Name"].as_str().unwrap_or_default().to_string(),
            id: v["Id"].as_str().unwrap_or_default().to_string(),
            labels: serde_json::from_value(labels.clone()).unwrap_or_default(),
        })
    }

    /// Whether the container is running now.
    pub fn running(&self, name: &str) -> Result<bool, EngineError> {
        Ok(self.output(&["container", "inspect", "--format", "{{.State.Running}}", name])?.trim() == "true")
    }

    /// Create a container with these `podman create` arguments (the
    /// first is `create`); its id.
    pub fn create(&self, args: &[String]) -> Result<String, EngineError> {
        Ok(self.output(args)?.trim().to_string())
    }

    /// Start a container (podman returns once its entry point runs).
    pub fn start(&self, name: &str) -> Result<(), EngineError> {
        self.output(&["start", name]).map(drop)
    }

    /// Stop a container: its entry point gets SIGTERM, then SIGKILL after
    /// podman's grace time.
    pub fn stop(&self, name: &str) -> Result<(), EngineError> {
        self.output(&["stop", name]).map(drop)
    }

    /// Remove a container or images; "no such" and "in use" as their own
    /// errors (podman's exit codes 1 and 2), since front ends word them.
    /// podman's report (the ids it removed) on success.
    pub fn remove(&self, object: Object, names: &[&str], force: bool) -> Result<String, EngineError> {
        let mut args = vec![object.remove_verb()];
        if force {
            args.push("--force");
        }
        args.extend(names);
        let name = || names.join(" ");
        self.answer(&args).map_err(|(code, e)| match code {
            Some(1) => EngineError::NotFound { object, name: name() },
            Some(2) => EngineError::InUse { object, name: name() },
            _ => e,
        })
    }

    /// Run `podman exec` with these arguments, the terminal and standard
    /// streams passed through; its exit status.
    pub fn exec(&self, args: &[std::ffi::OsString]) -> Result<std::process::ExitStatus, EngineError> {
        self.command(args).status().map_err(|source| EngineError::Spawn { args: "exec".to_string(), source })
    }

    /// Run `podman exec` with these arguments and no terminal; its output.
    pub fn exec_output(&self, args: &[String]) -> Result<std::process::Output, EngineError> {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| EngineError::Spawn { args: "exec".to_string(), source })
    }

    /// Run `podman exec` with these arguments, no terminal and no input,
    /// its stdout and stderr merged into one pipe as they come (so lines
    /// keep their order), each chunk given to `chunk`; its exit status.
    pub fn exec_merged(
        &self,
        args: &[String],
        chunk: &mut dyn FnMut(&[u8]),
    ) -> Result<std::process::ExitStatus, EngineError> {
        use std::io::Read;
        let spawn = |source| EngineError::Spawn { args: "exec".to_string(), source };
        let (mut reader, writer) = std::io::pipe().map_err(spawn)?;
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null()).stdout(writer.try_clone().map_err(spawn)?).stderr(writer);
        let mut child = cmd.spawn().map_err(spawn)?;
        // The write ends live only in the child now: the read ends at its end.
        drop(cmd);
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => chunk(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        child.wait().map_err(spawn)
    }

    /// A container's log: what it wrote to stdout and to stderr (podman
    /// replays each on its own stream).
    pub fn logs(&self, name: &str) -> String {
        match self.command(&["logs", name]).stdin(Stdio::null()).output() {
            Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            Err(_) => String::new(),
        }
    }

    /// Run podman silently; its exit code (None when it could not run or
    /// was killed). For callers that read podman's answer from the code.
    pub fn status<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Option<i32> {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .and_then(|s| s.code())
    }

    /// `podman wait NAME` running in the background: its stdout closes
    /// when the container stops (see [`super::readiness`]).
    pub fn watch_exit(&self, name: &str) -> Result<std::process::Child, EngineError> {
        self.command(&["wait", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| EngineError::Spawn { args: format!("wait {name}"), source })
    }

    /// Whether a container of this name exists.
    pub fn container_exists(&self, name: &str) -> bool {
        self.status(&["container", "exists", name]) == Some(0)
    }

    /// `podman commit` of a container to `image`, with Dockerfile-style
    /// `changes` to its config; the new image's id.
    pub fn commit(&self, container: &str, image: &str, changes: &[String]) -> Result<String, EngineError> {
        let mut args = vec!["commit".to_string(), "--quiet".into()];
        for c in changes {
            args.extend(["--change".into(), c.clone()]);
        }
        args.extend([container.to_string(), image.to_string()]);
        Ok(self.output(&args)?.trim().to_string())
    }

    /// `podman save` of a stored image as an OCI archive file.
    pub fn save_oci_archive(&self, image: &str, file: &std::path::Path) -> Result<(), EngineError> {
        let file = file.to_string_lossy();
        self.output(&["save", "--quiet", "--format", "oci-archive", "--output", &file, image]).map(drop)
    }

    /// Whether an image of this name or id exists.
    pub fn image_exists(&self, name: &str) -> bool {
        self.status(&["image", "exists", name]) == Some(0)
    }
}
