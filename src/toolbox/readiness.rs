//! Waiting for a starting container to become ready, without polling.
//!
//! init-container writes its stamp into a host directory bind-mounted
//! into the container, so the host kernel sees the write: an inotify
//! watch on that directory wakes the waiter the moment the stamp lands.
//! The container's end is noticed through one `podman wait` child whose
//! stdout closes when the container stops. Asking podman for the state
//! every few milliseconds instead forked a Go program each time: a 60 s
//! wait cost 40 s of CPU on two cores.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify;

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The stamp says the container is ready.
    Ready,
    /// The container stopped first.
    Exited,
    /// Neither, within the time allowed.
    TimedOut,
}

/// The longest a wait sleeps between two looks at the stamp when no event
/// comes: a safety net for file systems whose writes inotify may miss,
/// not the way readiness is normally seen.
const SAFETY_TICK: Duration = Duration::from_secs(1);

/// How the stamp is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// inotify events on the stamp's directory (the default).
    Events,
    /// A look every second and no inotify, as Toolbx falls back to when
    /// `TOOLBX_RUN_USE_POLLING` is set (file systems without inotify).
    Polling,
}

impl Watch {
    /// Toolbx's choice: polling when `TOOLBX_RUN_USE_POLLING` is set.
    pub fn from_env() -> Watch {
        match std::env::var_os("TOOLBX_RUN_USE_POLLING") {
            Some(v) if !v.is_empty() => Watch::Polling,
            _ => Watch::Events,
        }
    }
}

/// Wait until `ready()` holds, `exit_watch` (a child whose stdout closes
/// when the container stops, such as `podman wait NAME`) ends, or
/// `timeout` passes. `dir` is the directory the stamp is written in.
/// The child is killed and reaped before returning.
pub fn until_ready(
    dir: &Path,
    watch: Watch,
    ready: impl Fn() -> bool,
    mut exit_watch: Child,
    timeout: Duration,
) -> std::io::Result<Waited> {
    let result = wait(dir, watch, &ready, &mut exit_watch, timeout);
    let _ = exit_watch.kill();
    let _ = exit_watch.wait();
    result
}

fn wait(
    dir: &Path,
    watch: Watch,
    ready: &impl Fn() -> bool,
    exit_watch: &mut Child,
    timeout: Duration,
) -> std::io::Result<Waited> {
    let deadline = Instant::now() + timeout;
    // Every way a stamp can appear: written in place, renamed in (as
    // write_atomic does), or its mode or owner changed afterwards. Polling
    // (Toolbx's fallback) needs no inotify instance at all.
    let events = match watch {
        Watch::Events => {
            let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
            inotify::add_watch(
                &fd,
                dir,
                inotify::WatchFlags::CLOSE_WRITE
                    | inotify::WatchFlags::MOVED_TO
                    | inotify::WatchFlags::CREATE
                    | inotify::WatchFlags::ATTRIB,
            )?;
            Some(fd)
        }
        Watch::Polling => None,
    };
    // After the watch: a stamp written before it is seen here.
    if ready() {
        return Ok(Waited::Ready);
    }
    let mut stdout = exit_watch.stdout.take();
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(Waited::TimedOut);
        }
        let tick = (deadline - now).min(SAFETY_TICK);
        let timespec = Timespec::try_from(tick).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
        let (inotify_ready, exited) = {
            let mut fds = Vec::with_capacity(2);
            if let Some(e) = &events {
                fds.push(PollFd::new(e, PollFlags::IN));
            }
            if let Some(out) = &stdout {
                fds.push(PollFd::new(out, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, Some(&timespec)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            let mut polled = fds.iter().map(|f| !f.revents().is_empty());
            let inotify_ready = events.is_some() && polled.next() == Some(true);
            (inotify_ready, stdout.is_some() && polled.next() == Some(true))
        };
        if let (true, Some(e)) = (inotify_ready, &events) {
            drain(e.as_fd(), &mut buf);
        } else if watch == Watch::Polling && !exited {
            // Toolbx's words, which its tests look for.
            tracing::debug!("Handling polling tick");
        }
        if ready() {
            return Ok(Waited::Ready);
        }
        if exited {
            // podman wait prints the exit code, then ends: read to the end
            // (it is a few bytes) so a printed line is not taken for the end.
            if let Some(mut out) = stdout.take() {
                let mut rest = Vec::new();
                let _ = (&mut out).take(4096).read_to_end(&mut rest);
            }
            return Ok(if ready() { Waited::Ready } else { Waited::Exited });
        }
    }
}

/// Read every queued inotify event (they only say "look again").
fn drain(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) {
    while let Ok(n) = rustix::io::read(fd, &mut *buf) {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn child(script: &str) -> Child {
        Command::new("sh").args(["-c", script]).stdout(Stdio::piped()).spawn().unwrap()
    }

    /// A stamp written 200 ms from now, by `write`.
    fn stamp_later(dir: &Path, write: fn(&Path)) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
        let stamp = dir.join("ready");
        let later = stamp.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            write(&later);
        });
        (stamp, writer)
    }

    #[test]
    fn a_stamp_written_later_is_seen_and_the_watch_is_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let (stamp, writer) =
            stamp_later(dir.path(), |p| crate::fsutil::write_atomic(p, b"x", 0o644).unwrap());
        let watch = child("sleep 30");
        let pid = watch.id();
        let got = until_ready(dir.path(), Watch::Events, || stamp.exists(), watch, Duration::from_secs(20))
            .unwrap();
        writer.join().unwrap();
        assert_eq!(got, Waited::Ready);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the exit watch is killed and reaped");
    }

    #[test]
    fn the_containers_end_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let watch = child("sleep 0.2; echo 1");
        let got = until_ready(dir.path(), Watch::Events, || false, watch, Duration::from_secs(20)).unwrap();
        assert_eq!(got, Waited::Exited);
    }

    #[test]
    fn a_stamp_already_there_needs_no_event() {
        let dir = tempfile::tempdir().unwrap();
        let watch = child("sleep 30");
        assert_eq!(
            until_ready(dir.path(), Watch::Events, || true, watch, Duration::from_secs(20)).unwrap(),
            Waited::Ready
        );
    }

    #[test]
    fn polling_sees_the_stamp_without_inotify() {
        let dir = tempfile::tempdir().unwrap();
        let (stamp, writer) = stamp_later(dir.path(), |p| std::fs::write(p, b"x").unwrap());
        let watch = child("sleep 30");
        let got = until_ready(dir.path(), Watch::Polling, || stamp.exists(), watch, Duration::from_secs(20));
        writer.join().unwrap();
        assert_eq!(got.unwrap(), Waited::Ready);
    }

    #[test]
    fn nothing_happening_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let watch = child("sleep 30");
        let got =
            until_ready(dir.path(), Watch::Events, || false, watch, Duration::from_millis(300)).unwrap();
        assert_eq!(got, Waited::TimedOut);
    }
}
