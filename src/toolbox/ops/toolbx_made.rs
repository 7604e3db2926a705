//! Containers Toolbx itself made, used as they are: every Toolbx user has
//! some. They carry Toolbx's label and no mtbx one, and their entry point
//! is `toolbox init-container`, run by whatever /usr/bin/toolbox is on the
//! host when they start: Toolbx, or mtbx where it took Toolbx's place (then
//! [`crate::toolbox::inside::init_toolbx_made`] answers). So mtbx drives
//! them as Toolbx does: start, wait for Toolbx's initialization stamp in
//! the user's Toolbx runtime directory, and run commands through `capsh`
//! with the capabilities dropped, as the user, in the working directory.

use super::*;

/// Who made a container, which decides how it starts and how commands
/// run in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maker {
    /// mtbx: its own entry point, any architecture.
    Mtbx,
    /// Toolbx 0.0.97 or newer: `toolbox init-container`.
    Toolbx {
        /// It mounts the Flatpak session helper's monitor directory, as
        /// containers of Toolbx before 0.0.97 did; Toolbx still runs them
        /// with a warning.
        deprecated: bool,
    },
    /// Older than Toolbx 0.0.97, whose entry point was not init-container:
    /// Toolbx itself refuses them.
    TooOld,
}

/// Who made `c`.
pub fn maker(c: &ContainerInfo) -> Maker {
    if c.label(LABEL_ARCH).is_some() {
        return Maker::Mtbx;
    }
    match c.command.as_deref() {
        Some([program, ..]) if program == "toolbox" => Maker::Toolbx {
            deprecated: c.mounts.as_deref().unwrap_or_default().iter().any(|m| m == "/run/host/monitor"),
        },
        _ => Maker::TooOld,
    }
}

/// The stamp Toolbx's init-container writes once the container whose
/// entry point is `pid` is set up.
pub fn toolbx_stamp(pid: i64) -> PathBuf {
    crate::toolbox::cdi::host_runtime_dir().join(format!("container-initialized-{pid}"))
}

impl Toolbox {
    /// Start a container Toolbx made, if it is not running, and wait
    /// until its init-container has written Toolbx's stamp; on failure,
    /// the entry point's `Error:` lines.
    pub fn start_toolbx_made(&self, c: &ContainerInfo, timeout: Duration) -> Result<(), OpsError> {
        let dir = crate::toolbox::cdi::host_runtime_dir();
        crate::fsutil::mkdir_all(&dir, 0o700).map_err(io(format!("cannot create {}", dir.display())))?;
        let mut pid = if c.state == "running" { c.pid } else { 0 };
        if pid > 0 && toolbx_stamp(pid).exists() {
            return Ok(());
        }
        if pid <= 0 {
            self.save_nvidia()?;
            self.podman.start(c.name())?;
            pid = self.podman.container(c.name())?.map_or(0, |c| c.pid);
        }
        let stamp = toolbx_stamp(pid);
        let how = crate::toolbox::readiness::Watch::from_env();
        let exit_watch = self.podman.watch_exit(c.name())?;
        let waited =
            crate::toolbox::readiness::until_ready(&dir, how, || stamp.exists(), exit_watch, timeout)
                .map_err(io(format!("cannot watch {}", dir.display())))?;
        if pid > 0 && waited == crate::toolbox::readiness::Waited::Ready {
            return Ok(());
        }
        let logs = self.podman.logs(c.name());
        let mut why: Vec<String> =
            logs.lines().filter_map(|l| l.strip_prefix("Error: ")).map(str::to_string).collect();
        if why.is_empty() {
            why.push(format!("failed to initialize container {}", c.name()));
        }
        Err(OpsError::NotStarted { name: c.name().to_string(), why })
    }

    /// Run `spec` in a container Toolbx made, as Toolbx runs it: `capsh`
    /// without capabilities, a login shell for `run` (`login`), in
    /// `workdir`. The command's exit status.
    pub fn exec_toolbx_made(
        &self,
        spec: &ExecSpec<'_>,
        login: bool,
        workdir: &Path,
    ) -> Result<std::process::ExitStatus, OpsError> {
        Ok(self.podman.exec(&self.with_nvidia_env(spec).toolbx_args(login, workdir))?)
    }

    /// Whether `path` is a directory in the container, for the user (the
    /// working directory's fallback, as Toolbx probes it).
    pub fn path_present(&self, container: &str, user: &str, path: &Path) -> bool {
        let path = path.to_string_lossy();
        self.podman.status(&["exec", "--user", user, container, "sh", "-c", "test -d \"$1\"", "sh", &path])
            == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(labels: &[(&str, &str)], command: Option<&[&str]>, mounts: &[&str]) -> ContainerInfo {
        serde_json::from_value(serde_json::json!({
            "Id": "0123",
            "Names": ["box"],
            "Labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
            "Command": command,
            "Mounts": mounts,
        }))
        .unwrap()
    }

    #[test]
    fn the_maker_is_read_from_the_labels_and_the_entry_point() {
        let toolbx = [(LABEL_TOOLBOX, "true")];
        let init = ["toolbox", "--log-level", "debug", "init-container", "--uid", "1000"];
        let mtbx = [(LABEL_TOOLBOX, "true"), (LABEL_ARCH, "arm64/v8")];
        assert_eq!(maker(&info(&mtbx, Some(&["/run/mtbx-host/mtbx"]), &[])), Maker::Mtbx);
        assert_eq!(
            maker(&info(&toolbx, Some(&init), &["/run/host", "/home/ann"])),
            Maker::Toolbx { deprecated: false }
        );
        assert_eq!(
            maker(&info(&toolbx, Some(&init), &["/run/host/monitor", "/home/ann"])),
            Maker::Toolbx { deprecated: true }
        );
        assert_eq!(maker(&info(&toolbx, Some(&["/bin/sh", "-c", "sleep +Inf"]), &[])), Maker::TooOld);
        assert_eq!(maker(&info(&toolbx, None, &[])), Maker::TooOld);
    }
}
