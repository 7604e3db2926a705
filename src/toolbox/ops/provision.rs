//! Provisioning at a container's first start and `upgrade`, from the
//! host: `mtbx container-provision` run inside as root through `podman
//! exec`, its output read as it comes (progress for the front end, the
//! last lines kept for a failure). See [`crate::toolbox::provision`] for
//! why it is done there and then.

use super::*;
use crate::toolbox::provision::{self as prov, LastLines, Provision, PENDING_FILE};

/// What provisioning reports as it goes, for a front end's progress.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A step begins (`apt-get install -y hello`).
    Step(&'a str),
    /// A line of the package manager's (or a hook's) output, cleaned.
    Line(&'a str),
}

/// Whether the stamp directory `dir` says provisioning may be to do.
pub fn provision_pending(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(PENDING_FILE)).is_ok_and(|m| m.is_file())
}

/// Mark (or clear) provisioning as possibly to do in the stamp directory.
pub(super) fn set_pending(dir: &Path, on: bool) -> std::io::Result<()> {
    match (on, provision_pending(dir)) {
        (true, false) => crate::fsutil::write_atomic(
            &dir.join(PENDING_FILE),
            b"provision at the next start (mtbx create --packages/--init-hook)\n",
            0o644,
        ),
        (false, true) => std::fs::remove_file(dir.join(PENDING_FILE)),
        _ => Ok(()),
    }
}

impl Toolbox {
    /// Provision the started container `c` when its stamp directory says
    /// it may be to do: the packages and init hooks of its labels, unless
    /// the container's own marker says they were done. Whether anything
    /// ran. On failure the mark stays, so the next start tries again.
    pub fn provision(
        &self,
        c: &ContainerInfo,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<bool, OpsError> {
        let dir = stamp_dir_of(c);
        if !provision_pending(&dir) {
            return Ok(false);
        }
        let p = Provision::from_labels(c.labels.as_ref())?;
        if !p.is_empty() {
            self.in_container(c.name(), "provision", &p.args(), progress)?;
        }
        set_pending(&dir, false).map_err(io(format!("cannot write in {}", dir.display())))?;
        Ok(!p.is_empty())
    }

    /// Refresh and upgrade every package of container `name`: started
    /// when needed (and then provisioned first, as any first start is),
    /// and stopped again afterwards when it was stopped and no other
    /// session began meanwhile.
    pub fn upgrade(&self, name: &str, progress: &mut dyn FnMut(Progress<'_>)) -> Result<(), OpsError> {
        let opened = self.open_session(name, || self.find(Some(name), &SelectFlags::default()))?;
        let (session, container) = match opened {
            Opened::Ready(s) => (s, None),
            Opened::Stopped { container, session } => (session, Some(container)),
        };
        let was_stopped = container.as_ref().is_some_and(|c| c.state != "running");
        let mut work = || -> Result<(), OpsError> {
            if let Some(c) = &container {
                self.start(c, START_TIMEOUT)?;
                self.provision(c, progress)?;
            }
            self.in_container(name, "upgrade", &["--upgrade".to_string()], progress)
        };
        let result = work();
        let ended = match (was_stopped, session) {
            // Another session began meanwhile: it keeps the container.
            (true, Some(s)) => match s.end_last() {
                Some(last) => {
                    let stopped = self.stop(name);
                    drop(last);
                    stopped
                }
                None => Ok(()),
            },
            (true, None) => self.stop(name),
            (false, session) => self.end_session(name, session),
        };
        result.and(ended)
    }

    /// `mtbx container-provision ARGS` in container `name` as root; a
    /// failure carries its reason and the last lines of output.
    fn in_container(
        &self,
        name: &str,
        what: &'static str,
        args: &[String],
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(), OpsError> {
        let mut a: Vec<String> = ["exec", "--user", "root", name].iter().map(|s| s.to_string()).collect();
        a.push(format!("{}/mtbx", crate::toolbox::HOST_DIR));
        a.push("container-provision".into());
        a.extend(args.iter().cloned());
        let mut last = LastLines::default();
        let mut why = None;
        let mut line = |l: &str| -> bool {
            if let Some(step) = l.strip_prefix(prov::STEP_PREFIX.trim_end()) {
                progress(Progress::Step(step.trim_start()));
                return false;
            }
            if let Some(e) = l.strip_prefix(prov::ERROR_PREFIX.trim_end()) {
                why = Some(e.trim_start().to_string());
                return false;
            }
            tracing::debug!("{name}: {l}");
            progress(Progress::Line(l));
            true
        };
        let status = self.podman.exec_merged(&a, &mut |chunk| last.feed(chunk, &mut line));
        last.finish(&mut line);
        let status = status?;
        if status.success() {
            return Ok(());
        }
        let last = last.lines();
        let why = why.or_else(|| last.last().cloned()).unwrap_or_else(|| match status.code() {
            Some(code) => format!("podman exec exited with status {code}"),
            None => "podman exec was killed".to_string(),
        });
        Err(OpsError::Provision { name: name.to_string(), what, why, last })
    }
}
