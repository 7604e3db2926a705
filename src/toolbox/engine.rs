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
        let shown =
            || args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null());
        if PODMAN_LOG_LEVEL.get().is_some() {
            // Its log is asked for: it goes to stderr as podman writes it.
            cmd.stderr(Stdio::inherit());
        }
        let out = cmd.output().map_err(|source| EngineError::Spawn { args: shown(), source })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let last = last.strip_prefix("Error: ").unwrap_or(last);
            return Err(EngineError::Failed { args: shown(), stderr: last.to_string() });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Containers carrying `label` (key=value), all states.
    pub fn containers(&self, label: &str) -> Result<Vec<ContainerInfo>, EngineError> {
        let args = ["ps", "--all", "--format", "json", "--filter", &format!("label={label}")];
        let text = self.output(&args)?;
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&text).map_err(|source| EngineError::Parse { args: args.join(" "), source })
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

    /// Whether an image of this name or id exists.
    pub fn image_exists(&self, name: &str) -> bool {
        self.status(&["image", "exists", name]) == Some(0)
    }
}
