//! A podman of the test's own: a storage.conf and containers.conf in a
//! temporary directory (graph root and run root inside it), given to both
//! podman and mtbx through CONTAINERS_STORAGE_CONF / CONTAINERS_CONF, so
//! tests never touch the machine's image store or /etc. The
//! containers.conf carries this machine's quirks (docs/podman.md, "Running podman on that machine").
//!
//! Rootless environments run the test user's commands the way a login of
//! that user runs them: with the umask of a Debian 13 login (0002) unless
//! a test asks for another one, and with the storage driver podman itself
//! picks for such a user on this podman (vfs on podman 4, overlay on 5).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use super::{mtbx_bin, skip, text};

pub struct PodmanEnv {
    pub dir: tempfile::TempDir,
    pub graph: PathBuf,
    pub run: PathBuf,
    pub storage_conf: PathBuf,
    pub containers_conf: PathBuf,
    /// Run as this user (rootless tests), via runuser.
    pub user: Option<TestUser>,
    /// The umask the test user's commands start with (rootless only).
    pub umask: u32,
}

#[derive(Clone)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The user CI creates for rootless tests (scripts/setup.sh).
pub const TEST_USER: &str = "mtbxtest";

/// The umask of a login on Debian 13 (and Fedora): pam_umask with
/// USERGROUPS_ENAB gives a user whose primary group is their own 0002,
/// so files and directories a tool makes without an explicit mode are
/// group-writable. Debian 12's `su -` gave 0022, as the test process has.
pub const LOGIN_UMASK: u32 = 0o002;

pub use super::is_root;

fn podman_installed() -> bool {
    Command::new("podman").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Root and podman, or a printed skip reason.
fn root_and_podman(test: &str, why_root: &str) -> Option<()> {
    if !is_root() {
        skip(test, why_root);
        return None;
    }
    if !podman_installed() {
        skip(test, "podman not installed (apt-get install podman runc uidmap)");
        return None;
    }
    Some(())
}

impl PodmanEnv {
    /// A rootful environment (overlay), or None with a printed skip reason.
    pub fn rootful(test: &str) -> Option<PodmanEnv> {
        root_and_podman(test, "needs root (rootful podman and containers-storage)")?;
        Some(Self::make(Some("overlay"), None))
    }

    /// A rootless environment for the test user, whose commands run with
    /// a login's umask (`LOGIN_UMASK`), or None with a printed skip reason.
    pub fn rootless(test: &str) -> Option<PodmanEnv> {
        Self::rootless_with_umask(test, LOGIN_UMASK)
    }

    /// A rootless environment whose commands run with `umask` (0o077:
    /// a user who keeps everything private; 0o022: Debian 12's `su -`).
    pub fn rootless_with_umask(test: &str, umask: u32) -> Option<PodmanEnv> {
        root_and_podman(test, "needs root to act as the rootless test user")?;
        let Some(user) = test_user() else {
            skip(test, &format!("no user {TEST_USER} with /etc/subuid and /etc/subgid ranges (scripts/setup.sh creates it)"));
            return None;
        };
        let mut env = Self::make(Some(rootless_driver()), Some(user));
        env.umask = umask;
        Some(env)
    }

    fn make(driver: Option<&str>, user: Option<TestUser>) -> PodmanEnv {
        let dir = tempfile::Builder::new().prefix("mtbx-podman-").tempdir().unwrap();
        let graph = dir.path().join("graph");
        let run = dir.path().join("run");
        let storage_conf = dir.path().join("storage.conf");
        let containers_conf = dir.path().join("containers.conf");
        // Rootless podman takes only rootless_storage_path from this file.
        let mut conf = match &user {
            None => {
                format!("[storage]\ngraphroot = \"{}\"\nrunroot = \"{}\"\n", graph.display(), run.display())
            }
            Some(_) => format!("[storage]\nrootless_storage_path = \"{}\"\n", graph.display()),
        };
        if let Some(d) = driver {
            conf.push_str(&format!("driver = \"{d}\"\n"));
        }
        std::fs::write(&storage_conf, conf).unwrap();
        std::fs::write(dir.path().join("registries.conf"), "").unwrap();
        std::fs::write(
            &containers_conf,
            "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
        if let Some(u) = &user {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            for d in [&graph, &run, &dir.path().join("tmp")] {
                std::fs::create_dir_all(d).unwrap();
                std::os::unix::fs::chown(d, Some(u.uid), Some(u.gid)).unwrap();
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
            }
        }
        PodmanEnv { dir, graph, run, storage_conf, containers_conf, user, umask: 0o022 }
    }

    /// `program` with this environment's podman settings (as the test user
    /// when rootless).
    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = match &self.user {
            Some(u) => {
                // runuser passes on the caller's umask (the test
                // process's 0022), not a login's: a shell sets it and
                // execs the program, which stays runuser's child.
                let mut c = Command::new("runuser");
                c.args(["-u", &u.name, "--", "sh", "-c"])
                    .arg(format!("umask {:04o} && exec \"$@\"", self.umask))
                    .arg("sh")
                    .arg(program);
                // No XDG_RUNTIME_DIR, as under `su -` or cron; rootless
                // podman then keeps its run root (where the layer store
                // records which layers are mounted), its tmp_dir and its
                // pause process in $TMPDIR/podman-run-UID (podman 4) or
                // storage-run-UID (podman 5). Environments sharing one
                // lose each other's mount records: overlay containers
                // lost their root file system under a second store
                // ("unable to find user root"). So each has its own.
                c.env("HOME", &u.home)
                    .env("USER", &u.name)
                    .env_remove("XDG_RUNTIME_DIR")
                    .env("TMPDIR", self.user_tmp());
                c
            }
            None => Command::new(program),
        };
        c.args(args)
            .env("CONTAINERS_STORAGE_CONF", &self.storage_conf)
            .env("CONTAINERS_CONF", &self.containers_conf)
            .env("CONTAINERS_REGISTRIES_CONF", self.dir.path().join("registries.conf"))
            .env("NO_COLOR", "1")
            .current_dir("/");
        c
    }

    /// The test user's TMPDIR in this environment (rootless only).
    fn user_tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    pub fn podman(&self, args: &[&str]) -> Command {
        self.command(Path::new("podman"), args)
    }

    /// mtbx, from a copy the test user can execute.
    pub fn mtbx(&self, args: &[&str]) -> Command {
        self.command(&self.mtbx_path(), args)
    }

    fn mtbx_path(&self) -> PathBuf {
        self.reachable(&mtbx_bin(), "mtbx")
    }

    /// `bin`, or a copy of it the test user can execute.
    pub fn reachable(&self, bin: &Path, name: &str) -> PathBuf {
        if self.user.is_none() {
            return bin.to_path_buf();
        }
        let p = self.dir.path().join(name);
        if !p.exists() {
            std::fs::copy(bin, &p).unwrap();
        }
        p
    }

    /// Run podman, assert success, return stdout.
    pub fn podman_ok(&self, args: &[&str]) -> String {
        let out = self.podman(args).output().unwrap();
        assert!(out.status.success(), "podman {args:?} failed: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Run mtbx, return its output.
    pub fn run_mtbx(&self, args: &[&str]) -> Output {
        self.mtbx(args).output().unwrap()
    }

    /// layers.json of whichever driver the store uses ([] when none).
    pub fn layers_json(&self) -> serde_json::Value {
        self.store_json("layers")
    }

    /// images.json of whichever driver the store uses ([] when none).
    pub fn images_json(&self) -> serde_json::Value {
        self.store_json("images")
    }

    fn store_json(&self, kind: &str) -> serde_json::Value {
        for d in ["overlay", "vfs"] {
            let p = self.graph.join(format!("{d}-{kind}/{kind}.json"));
            if let Ok(b) = std::fs::read(&p) {
                return serde_json::from_slice(&b).unwrap_or(serde_json::json!([]));
            }
        }
        serde_json::json!([])
    }
}

impl Drop for PodmanEnv {
    fn drop(&mut self) {
        // podman bind-mounts overlay/ onto itself and may leave it mounted.
        let _ = Command::new("umount").arg("-l").arg(self.graph.join("overlay")).output();
        if self.user.is_some() {
            // The test user's files belong to its subordinate ids: remove
            // them from inside its namespace. Not `podman system reset`:
            // it also wipes the run root and tmp_dir, which rootless podman
            // takes from /tmp/podman-run-UID whatever storage.conf says,
            // so it broke the test user's other environments in use at
            // the same time ("cannot chown run directory", "Refreshing
            // container").
            // Rootless overlay (podman 5) keeps its overlay/ directory
            // bind-mounted onto itself in that namespace: unmount it
            // there first, or rm cannot remove it.
            let graph = self.graph.display().to_string();
            let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]).output();
            let _ = self
                .podman(&[
                    "unshare",
                    "sh",
                    "-c",
                    "umount -l \"$1/overlay\" 2>/dev/null; rm -rf \"$1\"",
                    "sh",
                    &graph,
                ])
                .output();
            // The pause processes that hold this environment's user
            // namespaces, which would outlive the test: podman's tmp_dir
            // is in its run directory, under TMPDIR
            // (tmp/storage-run-UID/libpod/tmp) or under an
            // XDG_RUNTIME_DIR a test gave inside `dir` (DIR/libpod/tmp).
            let mut runs = vec![];
            for top in std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten() {
                if top.path() != self.graph {
                    runs.extend(
                        std::fs::read_dir(top.path()).into_iter().flatten().flatten().map(|e| e.path()),
                    );
                    runs.push(top.path());
                }
            }
            for run in runs {
                if let Ok(pid) = std::fs::read_to_string(run.join("libpod/tmp/pause.pid")) {
                    let _ = Command::new("kill").arg(pid.trim()).output();
                }
            }
        }
    }
}

/// The driver podman picks by itself for a rootless user with no
/// storage.conf, which the rootless environments name explicitly:
/// podman 4 refuses a rootless storage.conf without a driver, and on
/// Debian 12 (podman 4.3) it picks vfs; podman 5 (Debian 13) picks native
/// overlay, the store most Toolbx users have. Read from `podman
/// --version` once (asking podman what it picks would make a store in
/// the test user's home).
pub fn rootless_driver() -> &'static str {
    static DRIVER: OnceLock<&'static str> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let version =
            Command::new("podman").arg("--version").output().map(|o| text(&o.stdout)).unwrap_or_default();
        // "podman version 5.4.2"
        let major: u32 = version
            .split_whitespace()
            .last()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse().ok())
            .unwrap_or(4);
        if major >= 5 {
            "overlay"
        } else {
            "vfs"
        }
    })
}

pub fn test_user() -> Option<TestUser> {
    let out = Command::new("id").args(["-u", TEST_USER]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let uid: u32 = text(&out.stdout).trim().parse().ok()?;
    let gid: u32 =
        text(&Command::new("id").args(["-g", TEST_USER]).output().ok()?.stdout).trim().parse().ok()?;
    let has_range = |f: &str| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{TEST_USER}:")))
    };
    if !has_range("/etc/subuid") || !has_range("/etc/subgid") {
        return None;
    }
    Some(TestUser { name: TEST_USER.into(), uid, gid, home: PathBuf::from(format!("/home/{TEST_USER}")) })
}
