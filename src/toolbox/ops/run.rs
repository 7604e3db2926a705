//! A container in use: start and wait for its set-up, sessions (the
//! lock every run/enter holds, and auto-stop), exec as the user, probes.

use super::*;

impl Toolbox {
    /// Start a container if needed and wait until init-container is done.
    /// Returns init-container's warnings; on failure, its error lines.
    pub fn start(&self, c: &ContainerInfo, timeout: Duration) -> Result<Vec<String>, OpsError> {
        let stamp = crate::toolbox::stamp_file(&stamp_dir_of(c));
        if crate::toolbox::is_ready(&stamp) {
            return Ok(Vec::new());
        }
        self.save_nvidia()?;
        self.podman.start(c.name())?;
        // Toolbx's words at debug (its tests read them).
        let how = crate::toolbox::readiness::Watch::from_env();
        match how {
            crate::toolbox::readiness::Watch::Events => {
                tracing::debug!("Setting up watches for file system events from container {}", c.name())
            }
            crate::toolbox::readiness::Watch::Polling => {
                tracing::debug!("Setting up polling ticker for container {}", c.name())
            }
        }
        let dir = stamp_dir_of(c);
        let exit_watch = self.podman.watch_exit(c.name())?;
        let waited = crate::toolbox::readiness::until_ready(
            &dir,
            how,
            || crate::toolbox::is_ready(&stamp),
            exit_watch,
            timeout,
        )
        .map_err(io(format!("cannot watch {}", dir.display())))?;
        let started = waited == crate::toolbox::readiness::Waited::Ready;
        let logs = self.podman.logs(c.name());
        let warnings = logs
            .lines()
            .filter_map(|l| l.strip_prefix(crate::toolbox::inside::WARNING_PREFIX))
            .map(str::to_string)
            .collect();
        if started {
            host_agent(&dir);
            return Ok(warnings);
        }
        let mut why: Vec<String> = logs
            .lines()
            .filter_map(|l| l.strip_prefix(crate::toolbox::inside::ERROR_PREFIX))
            .map(str::to_string)
            .collect();
        if why.is_empty() {
            why.push(logs.lines().last().unwrap_or("no log").to_string());
        }
        Err(OpsError::NotStarted { name: c.name().to_string(), why })
    }

    /// Stop a container (podman stop: init-container ends on SIGTERM).
    pub fn stop(&self, name: &str) -> Result<(), OpsError> {
        Ok(self.podman.stop(name)?)
    }

    /// Run `spec` in its container with the terminal passed through; with
    /// `announce`, tell the terminal which container the shell is in (OSC
    /// 777, as Toolbx's `enter` does; only to a terminal, never into a
    /// pipe). The command's exit status.
    pub fn exec(&self, spec: &ExecSpec<'_>, announce: bool) -> Result<std::process::ExitStatus, OpsError> {
        use std::io::Write;
        let osc = announce && spec.tty;
        if osc {
            print!("{}", crate::toolbox::osc_container_push(spec.container, spec.user.uid));
            let _ = std::io::stdout().flush();
        }
        let status = self.podman.exec(&self.with_nvidia_env(spec).args());
        if osc {
            print!("{}", crate::toolbox::osc_container_pop(spec.user.uid));
            let _ = std::io::stdout().flush();
        }
        Ok(status?)
    }

    /// As Toolbx before a start: the driver's spec where init-container
    /// reads it; without the driver, whatever is there stays as it is.
    pub(super) fn save_nvidia(&self) -> Result<(), OpsError> {
        if let Some(spec) = self.nvidia() {
            let file = crate::toolbox::cdi::host_file();
            crate::toolbox::cdi::save(spec, &file).map_err(io(format!("cannot write {}", file.display())))?;
        }
        Ok(())
    }

    /// `spec` with the variables of NVIDIA's CDI spec added, as Toolbx
    /// passes them to every command (none without the driver).
    pub(super) fn with_nvidia_env<'a>(&self, spec: &ExecSpec<'a>) -> ExecSpec<'a> {
        let mut spec = spec.clone();
        if let Some(nvidia) = self.nvidia() {
            spec.env.extend(nvidia.env().into_iter().map(|(k, v)| (k, v.into())));
        }
        spec
    }

    /// NVIDIA's CDI spec, when this host has the proprietary driver
    /// ([`crate::toolbox::cdi::generate`]); generated once per command.
    pub(super) fn nvidia(&self) -> Option<&crate::toolbox::cdi::Spec> {
        self.nvidia.get_or_init(crate::toolbox::cdi::generate).as_ref()
    }

    /// Whether `command` is found in the container as the user's shell
    /// finds it (a 127 from a command that exists is its own code).
    pub fn command_found(&self, container: &str, user: &str, command: &str) -> bool {
        self.podman.status(&[
            "exec",
            "--user",
            user,
            container,
            "sh",
            "-c",
            "command -v \"$1\"",
            "sh",
            command,
        ]) == Some(0)
    }

    /// Run `mtbx container-probe ARGS` in a running container as the user,
    /// without a terminal: its stdout, or the last line it said on stderr.
    pub fn probe(&self, container: &str, user: &HostUser, args: &[&str]) -> Result<String, String> {
        let mut a: Vec<String> = vec![
            "exec".into(),
            "--user".into(),
            format!("{}:{}", user.uid, user.gid),
            container.into(),
            format!("{}/mtbx", crate::toolbox::HOST_DIR),
            "container-probe".into(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        let out = self.podman.exec_output(&a).map_err(|e| e.to_string())?;
        if out.status.success() {
            return String::from_utf8(out.stdout).map_err(|_| "not UTF-8 text".to_string());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("it failed").trim();
        Err(last.strip_prefix("mtbx: error: ").unwrap_or(last).to_string())
    }

    /// Open a session (see [`crate::toolbox::session`]) in container `name`. A
    /// current stamp proves a running, set-up container: then a command
    /// costs one podman exec. Otherwise `find` says which container it is,
    /// its stamp directory is made again when lost (with XDG_RUNTIME_DIR
    /// at a reboot: podman needs it back to start the container, and the
    /// session its lock and auto-stop mark), and the caller starts it. The
    /// lock comes first, so a container another session is stopping is
    /// never taken for running. Without a lock (a stamp directory this
    /// user cannot write) a container that does not stop by itself still
    /// runs; an auto-stop one fails.
    pub fn open_session(
        &self,
        name: &str,
        find: impl FnOnce() -> Result<ContainerInfo, OpsError>,
    ) -> Result<Opened, OpsError> {
        let dir = crate::toolbox::stamp_dir(name);
        let fast = if dir.is_dir() { Session::begin(&dir).ok() } else { None };
        // Set up means ready and provisioned (see ops::provision).
        let set_up =
            |d: &Path| crate::toolbox::is_ready(&crate::toolbox::stamp_file(d)) && !provision_pending(d);
        let fast = match fast {
            Some(s) if set_up(&dir) => {
                host_agent(&dir);
                return Ok(Opened::Ready(Some(s)));
            }
            other => other,
        };
        let c = find()?;
        let recorded = stamp_dir_of(&c);
        let made = crate::toolbox::make_stamp_dir(&recorded)
            .map_err(io(format!("cannot create {}", recorded.display())))?;
        // A stamp directory made again (a reboot clears it) cannot say
        // provisioning was done: the container's own marker will.
        if made && crate::toolbox::provision::Provision::labelled(c.labels.as_ref()) {
            set_pending(&recorded, true).map_err(io(format!("cannot write in {}", recorded.display())))?;
        }
        let auto_stop = c.label(LABEL_AUTO_STOP) == Some("true");
        crate::toolbox::session::set_auto_stop(&recorded, auto_stop)
            .map_err(io(format!("cannot write in {}", recorded.display())))?;
        let session = match fast {
            Some(s) if recorded == dir => Some(s),
            _ if auto_stop => Some(Session::begin(&recorded)?),
            _ => Session::begin(&recorded).ok(),
        };
        if set_up(&recorded) {
            host_agent(&recorded);
            return Ok(Opened::Ready(session));
        }
        Ok(Opened::Stopped { container: Box::new(c), session })
    }

    /// End a session; the last one of an auto-stop container stops it.
    pub fn end_session(&self, name: &str, session: Option<Session>) -> Result<(), OpsError> {
        if let Some(last) = session.and_then(Session::end) {
            tracing::debug!("last session of {name} ended: stopping it");
            self.stop(name)?;
            drop(last);
        }
        Ok(())
    }
}

/// Make sure the running container whose stamp directory is `dir` has
/// its host agent, for `mtbx host-exec` inside
/// ([`crate::toolbox::host_exec`]). The session goes on without one: only
/// host-exec needs it, and says so.
fn host_agent(dir: &Path) {
    if let Err(e) = crate::toolbox::host_exec::agent::ensure(dir) {
        tracing::debug!("no host agent for {}: {e}", dir.display());
    }
}

/// How opening a session found its container.
#[derive(Debug)]
pub enum Opened {
    /// Running and set up.
    Ready(Option<Session>),
    /// Not (yet) set up: the caller starts it ([`Toolbox::start`]) and
    /// provisions it ([`Toolbox::provision`]), with its own progress and
    /// words.
    Stopped {
        /// The container.
        container: Box<ContainerInfo>,
        /// The session held meanwhile.
        session: Option<Session>,
    },
}
