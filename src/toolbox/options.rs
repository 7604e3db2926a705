//! What a user adds to a toolbox at create: a home of its own, volumes,
//! variables and devices (`create --home/--volume/--env/--device`), as
//! one typed value. It is checked here once (syntax first, then the host),
//! turned into `podman create` arguments and labels here, and read back
//! from those labels here ([`BoxOptions::from_labels`]), so that `clone`
//! and `list` see exactly what create was given.
//!
//! The refusals keep a toolbox working: nothing may be mounted at, under
//! or over what mtbx and Toolbx put in the container (the static mtbx and
//! the stamp under /run/mtbx-host and /run/mtbx-stamp, the host at
//! /run/host, /dev, /proc, /sys, /usr/bin/toolbox, the files
//! init-container rewrites, the home's own mount), and no variable may
//! name one that mtbx sets or that `run` passes from the host at every
//! command (which would silently win).

use std::path::{Component, Path, PathBuf};

use crate::error::{Classify, Kind};

/// The label holding the container's own home, when it has one.
pub const LABEL_HOME: &str = "io.github.mtbx.home";
/// The label holding the volumes, a JSON array of `SRC:DST[:OPTS]`.
pub const LABEL_VOLUMES: &str = "io.github.mtbx.volumes";
/// The label holding the variables, a JSON array of `NAME=VALUE`.
pub const LABEL_ENV: &str = "io.github.mtbx.env";
/// The label holding the devices, a JSON array of `SRC[:DST]`.
pub const LABEL_DEVICES: &str = "io.github.mtbx.devices";
/// The labels of [`BoxOptions`]: a snapshot empties them (a container
/// made from it has only what its own create says).
pub const LABELS: [&str; 4] = [LABEL_HOME, LABEL_VOLUMES, LABEL_ENV, LABEL_DEVICES];

/// Trees mtbx or Toolbx fill in every toolbox: nothing at, under or over them.
const TREES: &[&str] =
    &["/run/mtbx-host", "/run/mtbx-stamp", "/run/mtbx", "/run/host", "/dev", "/proc", "/sys"];
/// Single files mtbx or Toolbx put or rewrite: nothing at or over them.
const SPOTS: &[&str] = &[
    "/usr/bin/toolbox",
    "/run/.toolboxenv",
    "/run/.toolbxenv",
    "/run/.containerenv",
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
];
/// Variables mtbx sets in every toolbox (create) or every command (run).
const SET_BY_MTBX: &[&str] = &[
    crate::toolbox::ENV_ARCH,
    "TOOLBOX_PATH",
    "USER",
    "LOGNAME",
    "SHELL",
    "TOOLBX_DELAY_ENTRY_POINT",
    "TOOLBX_FAIL_ENTRY_POINT",
];
/// The volume options passed on to podman. `U`, `z` and `Z` are not:
/// they change the owner or the SELinux label of the host's files.
const VOLUME_OPTS: &[&str] = &[
    "ro",
    "rw",
    "bind",
    "rbind",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "unbindable",
    "runbindable",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "O",
    "copy",
    "nocopy",
];

/// A bind mount from the host (`--volume SRC:DST[:OPTS]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The host path, absolute.
    pub src: PathBuf,
    /// Where it appears inside, absolute and normalized.
    pub dst: PathBuf,
    /// podman's options (`ro`, `rslave`, ...).
    pub opts: Vec<String>,
}

/// A host device (`--device SRC[:DST]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The host's device node.
    pub src: PathBuf,
    /// Where it appears inside: the same path by default.
    pub dst: PathBuf,
}

/// What create adds to a toolbox beyond Toolbx's shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoxOptions {
    /// A home of the container's own (`--home DIR`), canonical once made.
    pub home: Option<PathBuf>,
    /// Bind mounts from the host.
    pub volumes: Vec<Volume>,
    /// Variables every process of the container starts with, in order.
    pub env: Vec<(String, String)>,
    /// Host devices.
    pub devices: Vec<Device>,
}

/// Why an option cannot be used; one line saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// Syntax, or a rule of this module.
    #[error("{0}")]
    Bad(String),
    /// A label create wrote no longer parses (edited by hand).
    #[error("container label {label} does not hold what mtbx writes: {why}")]
    Label {
        /// The label.
        label: &'static str,
        /// What is wrong.
        why: String,
    },
}

impl Classify for OptionsError {
    fn kind(&self) -> Kind {
        match self {
            OptionsError::Bad(_) => Kind::BadInput,
            OptionsError::Label { .. } => Kind::Failed,
        }
    }
}

fn bad(msg: String) -> OptionsError {
    OptionsError::Bad(msg)
}

fn shown(p: &Path) -> String {
    crate::text::quoted_path(p)
}

/// `p` absolute with no `..`, as a path of components (no `.`, no double
/// or trailing slash); `what` names it in the message.
fn absolute(p: &str, what: &str) -> Result<PathBuf, OptionsError> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(bad(format!(
            "{what} {} is not an absolute path: give it from / (\"$PWD/{}\" for one here)",
            crate::text::quoted(p),
            crate::text::escaped(p)
        )));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                return Err(bad(format!(
                    "{what} {} has a '..': give the path itself",
                    crate::text::quoted(p)
                )))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The path well-known links inside images lead to (usr-merge, /var/run).
fn unaliased(p: &Path) -> PathBuf {
    for (alias, real) in
        [("/var/run", "/run"), ("/bin", "/usr/bin"), ("/sbin", "/usr/sbin"), ("/lib", "/usr/lib")]
    {
        if let Ok(rest) = p.strip_prefix(alias) {
            return Path::new(real).join(rest);
        }
    }
    p.to_path_buf()
}

/// What mtbx puts at, under or over `dst` inside, if anything: the
/// protected trees and files, and `homes` (the user's home mount and the
/// container's own), under which mounts are fine.
fn collides(dst: &Path, homes: &[&Path]) -> Option<String> {
    for d in [dst.to_path_buf(), unaliased(dst)] {
        if let Some(t) = TREES.iter().map(Path::new).find(|t| d.starts_with(t) || t.starts_with(&d)) {
            return Some(t.display().to_string());
        }
        let spots = SPOTS.iter().map(Path::new).chain(homes.iter().copied());
        if let Some(s) = spots.into_iter().find(|s| s.starts_with(&d)) {
            return Some(s.display().to_string());
        }
    }
    None
}

fn check_dst(dst: &Path, what: &str, homes: &[&Path]) -> Result<(), OptionsError> {
    match collides(dst, homes) {
        Some(p) if Path::new(&p) == dst => Err(bad(format!(
            "{what} {}: mtbx puts {p} there itself, and the toolbox needs it: choose another path",
            shown(dst)
        ))),
        Some(p) => Err(bad(format!(
            "{what} {} would hide or be hidden by {p}, which the toolbox needs: choose a path outside it",
            shown(dst)
        ))),
        None => Ok(()),
    }
}

impl Volume {
    /// `SRC:DST[:OPTS]` as podman takes it; paths with `:` cannot be said so.
    pub fn parse(s: &str) -> Result<Volume, OptionsError> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, opts) = match parts[..] {
            [src, dst] => (src, dst, ""),
            [src, dst, opts] => (src, dst, opts),
            _ => {
                return Err(bad(format!(
                    "--volume {} is not SRC:DST[:OPTIONS]: give the host path and the path inside",
                    crate::text::quoted(s)
                )))
            }
        };
        let src = absolute(src, "--volume source")?;
        let dst = absolute(dst, "--volume destination")?;
        let opts: Vec<String> = opts.split(',').filter(|o| !o.is_empty()).map(str::to_string).collect();
        if let Some(o) = opts.iter().find(|o| !VOLUME_OPTS.contains(&o.as_str())) {
            return Err(bad(format!(
                "--volume option {} is not one mtbx passes on (U, z and Z would change the host's files): use {}",
                crate::text::quoted(o),
                VOLUME_OPTS.join(", ")
            )));
        }
        Ok(Volume { src, dst, opts })
    }

    fn spec(&self) -> String {
        let base = format!("{}:{}", self.src.display(), self.dst.display());
        if self.opts.is_empty() {
            base
        } else {
            format!("{base}:{}", self.opts.join(","))
        }
    }
}

impl Device {
    /// `SRC[:DST]`.
    pub fn parse(s: &str) -> Result<Device, OptionsError> {
        let (src, dst) = match s.split_once(':') {
            Some((src, dst)) if !dst.contains(':') => (src, Some(dst)),
            None => (s, None),
            Some(_) => {
                return Err(bad(format!(
                    "--device {} is not SRC[:DST]: give the host's device node and, if elsewhere, the path inside",
                    crate::text::quoted(s)
                )))
            }
        };
        let src = absolute(src, "--device")?;
        let dst = match dst {
            Some(d) => absolute(d, "--device destination")?,
            None => src.clone(),
        };
        Ok(Device { src, dst })
    }

    /// Whether the container already has it where asked: a host device at
    /// its own path under /dev, which every toolbox has whole.
    pub fn in_host_dev(&self) -> bool {
        self.src == self.dst && self.src.starts_with("/dev")
    }

    fn spec(&self) -> String {
        if self.src == self.dst {
            self.src.display().to_string()
        } else {
            format!("{}:{}", self.src.display(), self.dst.display())
        }
    }
}

/// `NAME=VALUE`, with a name a shell can set and that no one else sets.
fn parse_env(s: &str) -> Result<(String, String), OptionsError> {
    let Some((name, value)) = s.split_once('=') else {
        return Err(bad(format!("--env {} has no '=': give NAME=VALUE", crate::text::quoted(s))));
    };
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(bad(format!(
            "--env {}: a variable name is letters, digits and '_', not starting with a digit",
            crate::text::quoted(name)
        )));
    }
    if name == "HOME" {
        return Err(bad(
            "--env HOME: run and enter set HOME; give the container a home of its own with --home DIR".into(),
        ));
    }
    if SET_BY_MTBX.contains(&name) {
        return Err(bad(format!(
            "--env {name}: mtbx sets {name} in every toolbox itself; choose another name"
        )));
    }
    if crate::toolbox::PASSED_ENV.contains(&name) {
        return Err(bad(format!(
            "--env {name}: run and enter pass {name} from your environment to every command, which would override it: set it there, or in the container's ~/.profile"
        )));
    }
    Ok((name.to_string(), value.to_string()))
}

impl BoxOptions {
    /// The options as the command line gives them, their syntax checked.
    pub fn parse(
        home: Option<&str>,
        volumes: &[String],
        env: &[String],
        devices: &[String],
    ) -> Result<BoxOptions, OptionsError> {
        Ok(BoxOptions {
            home: home.map(|h| absolute(h, "--home")).transpose()?,
            volumes: volumes.iter().map(|v| Volume::parse(v)).collect::<Result<_, _>>()?,
            env: env.iter().map(|e| parse_env(e)).collect::<Result<_, _>>()?,
            devices: devices.iter().map(|d| Device::parse(d)).collect::<Result<_, _>>()?,
        })
    }

    /// Whether nothing is asked beyond Toolbx's shape.
    pub fn is_empty(&self) -> bool {
        *self == BoxOptions::default()
    }

    /// The checks that need the host, before anything is made: sources
    /// and devices exist, the home is a directory or can be made, and
    /// nothing lands on what the toolbox needs (`user_home`, the user's
    /// home as create mounts it, included) or twice at one place.
    pub fn check(&self, user_home: &Path) -> Result<(), OptionsError> {
        let user_home = std::fs::canonicalize(user_home).unwrap_or_else(|_| user_home.to_path_buf());
        let home = self.home.as_deref().map(planned_canonical);
        if let Some(h) = &home {
            if *h == user_home {
                return Err(bad(format!(
                    "--home {} is your home already: give a directory of the container's own",
                    shown(h)
                )));
            }
            // As given and where it leads: the second is the mount.
            for p in [self.home.as_deref().unwrap_or(h), h] {
                check_dst(p, "--home", &[&user_home])?;
            }
            if h.exists() && !h.is_dir() {
                return Err(bad(format!("--home {} is not a directory", shown(h))));
            }
        }
        let homes: Vec<&Path> = std::iter::once(user_home.as_path()).chain(home.as_deref()).collect();
        let mut seen: Vec<&Path> = Vec::new();
        for v in &self.volumes {
            check_dst(&v.dst, "--volume destination", &homes)?;
            if std::fs::symlink_metadata(&v.src).is_err() {
                return Err(bad(format!(
                    "--volume source {} does not exist: create it first, or fix the path",
                    shown(&v.src)
                )));
            }
            seen.push(&v.dst);
        }
        for d in &self.devices {
            let kind = std::fs::metadata(&d.src).map(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_char_device() || m.file_type().is_block_device()
            });
            match kind {
                Err(_) => return Err(bad(format!("--device {} does not exist on this host", shown(&d.src)))),
                Ok(false) => {
                    return Err(bad(format!(
                        "--device {} is not a device node: bind files and directories with --volume",
                        shown(&d.src)
                    )))
                }
                Ok(true) => {}
            }
            if !d.in_host_dev() {
                check_dst(&d.dst, "--device destination", &homes)?;
                seen.push(&d.dst);
            }
        }
        if let Some(h) = home.as_deref() {
            seen.push(h);
        }
        for (i, p) in seen.iter().enumerate() {
            if seen[..i].contains(p) {
                return Err(bad(format!("two options put something at {}: keep one", shown(p))));
            }
        }
        let mut names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("--env {} is given twice: keep one", w[0])));
        }
        Ok(())
    }

    /// The `podman create` arguments: the mounts, the variables and the
    /// labels that record them (always all four, so a container never
    /// shows what the image it came from recorded).
    pub fn create_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(h) = &self.home {
            a.extend(["--volume".into(), format!("{}:{}:rslave", h.display(), h.display())]);
        }
        for v in &self.volumes {
            a.extend(["--volume".into(), v.spec()]);
        }
        for d in self.devices.iter().filter(|d| !d.in_host_dev()) {
            a.extend(["--volume".into(), format!("{}:{}", d.src.display(), d.dst.display())]);
        }
        for (k, v) in &self.env {
            a.extend(["--env".into(), format!("{k}={v}")]);
        }
        for (label, value) in self.labels() {
            a.extend(["--label".into(), format!("{label}={value}")]);
        }
        a
    }

    /// The four labels and their values (empty when not given).
    pub fn labels(&self) -> [(&'static str, String); 4] {
        let json = |v: Vec<String>| {
            if v.is_empty() {
                String::new()
            } else {
                serde_json::Value::from(v).to_string()
            }
        };
        [
            (LABEL_HOME, self.home.as_ref().map(|h| h.display().to_string()).unwrap_or_default()),
            (LABEL_VOLUMES, json(self.volumes.iter().map(Volume::spec).collect())),
            (LABEL_ENV, json(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect())),
            (LABEL_DEVICES, json(self.devices.iter().map(Device::spec).collect())),
        ]
    }

    /// The options a container was created with, from its labels (absent
    /// or empty: not given).
    pub fn from_labels(
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<BoxOptions, OptionsError> {
        let get = |k: &str| labels.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let list = |label: &'static str| -> Result<Vec<String>, OptionsError> {
            match get(label) {
                None => Ok(Vec::new()),
                Some(v) => {
                    serde_json::from_str(v).map_err(|e| OptionsError::Label { label, why: e.to_string() })
                }
            }
        };
        let relabel =
            |label: &'static str| move |e: OptionsError| OptionsError::Label { label, why: e.to_string() };
        let home = get(LABEL_HOME).map(|h| absolute(h, "home")).transpose().map_err(relabel(LABEL_HOME))?;
        let volumes = list(LABEL_VOLUMES)?;
        let env = list(LABEL_ENV)?;
        let devices = list(LABEL_DEVICES)?;
        Ok(BoxOptions {
            home,
            volumes: volumes
                .iter()
                .map(|v| Volume::parse(v))
                .collect::<Result<_, _>>()
                .map_err(relabel(LABEL_VOLUMES))?,
            env: env
                .iter()
                .map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect::<Option<_>>()
                .ok_or_else(|| OptionsError::Label {
                    label: LABEL_ENV,
                    why: "an entry without '='".into(),
                })?,
            devices: devices
                .iter()
                .map(|d| Device::parse(d))
                .collect::<Result<_, _>>()
                .map_err(relabel(LABEL_DEVICES))?,
        })
    }
}

/// The options as `list --format json` shows them: as create was given them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Shown {
    /// The container's own home.
    pub home: Option<PathBuf>,
    /// `SRC:DST[:OPTS]`.
    pub volumes: Vec<String>,
    /// `NAME=VALUE`.
    pub env: Vec<String>,
    /// `SRC[:DST]`.
    pub devices: Vec<String>,
}

impl BoxOptions {
    /// How `list` shows them.
    pub fn shown(&self) -> Shown {
        Shown {
            home: self.home.clone(),
            volumes: self.volumes.iter().map(Volume::spec).collect(),
            env: self.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            devices: self.devices.iter().map(Device::spec).collect(),
        }
    }

    /// Make the container's own home when it is missing (0700, as a new
    /// user's home), and record its canonical path: the one mounted, and
    /// the one the host's getcwd() gives, as for the user's own home. The
    /// top directory this call made, for the caller to remove when the
    /// create fails.
    pub fn make_home(&mut self) -> std::io::Result<Option<PathBuf>> {
        let Some(home) = self.home.clone() else { return Ok(None) };
        let mut top = None;
        let mut cur = home.as_path();
        while !cur.exists() {
            top = Some(cur.to_path_buf());
            match cur.parent() {
                Some(p) => cur = p,
                None => break,
            }
        }
        crate::fsutil::mkdir_all(&home, 0o700)?;
        self.home = Some(std::fs::canonicalize(&home)?);
        top.map(std::fs::canonicalize).transpose()
    }
}

/// `p` as its canonical path, or for a path still to be made, its
/// deepest existing ancestor's canonical path with the rest beneath.
pub fn planned_canonical(p: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = p.to_path_buf();
    loop {
        if let Ok(c) = std::fs::canonicalize(&cur) {
            return rest.iter().rev().fold(c, |acc: PathBuf, n: &std::ffi::OsString| acc.join(n));
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n);
                cur = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<impl std::fmt::Debug, OptionsError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), Kind::BadInput, "{e}");
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        text
    }

    fn opts(home: Option<&str>, v: &[&str], e: &[&str], d: &[&str]) -> Result<BoxOptions, OptionsError> {
        let s = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        BoxOptions::parse(home, &s(v), &s(e), &s(d))
    }

    #[test]
    fn syntax_is_podmans_and_paths_are_absolute() {
        let o = opts(
            Some("/srv/box//home/"),
            &["/data:/mnt/data:ro,rslave", "/a:/b"],
            &["A=1", "B=x=y", "C="],
            &["/dev/fuse", "/dev/loop0:/run/disk"],
        )
        .unwrap();
        assert_eq!(o.home.as_deref(), Some(Path::new("/srv/box/home")));
        assert_eq!(o.volumes[0].opts, ["ro", "rslave"]);
        assert_eq!(o.volumes[1].dst, Path::new("/b"));
        assert_eq!(
            o.env,
            [("A".into(), "1".into()), ("B".into(), "x=y".into()), ("C".into(), String::new())]
        );
        assert!(o.devices[0].in_host_dev() && !o.devices[1].in_host_dev());
        assert!(err(opts(None, &["data:/data"], &[], &[])).contains("not an absolute path"));
        assert!(err(opts(None, &["/data"], &[], &[])).contains("SRC:DST"));
        assert!(err(opts(None, &["/a:/b:ro:x"], &[], &[])).contains("SRC:DST"));
        assert!(err(opts(None, &["/a:/b/../run/host"], &[], &[])).contains("'..'"));
        assert!(err(opts(None, &["/a:/b:Z"], &[], &[])).contains("U, z and Z"));
        assert!(err(opts(None, &["/a:/b:U"], &[], &[])).contains("U, z and Z"));
        assert!(err(opts(Some("box"), &[], &[], &[])).contains("--home"));
        assert!(err(opts(None, &[], &["NOVALUE"], &[])).contains("NAME=VALUE"));
        assert!(err(opts(None, &[], &["1X=a"], &[])).contains("variable name"));
        assert!(err(opts(None, &[], &["A-B=a"], &[])).contains("variable name"));
        assert!(err(opts(None, &[], &[], &["/dev/a:/b:/c"])).contains("SRC[:DST]"));
    }

    #[test]
    fn variables_mtbx_sets_or_run_passes_are_refused() {
        for (e, says) in [
            ("MTBX_ARCH=x", "mtbx sets MTBX_ARCH"),
            ("TOOLBOX_PATH=/x", "mtbx sets TOOLBOX_PATH"),
            ("USER=x", "mtbx sets USER"),
            ("HOME=/x", "--home DIR"),
            ("XDG_RUNTIME_DIR=/x", "pass XDG_RUNTIME_DIR"),
            ("LANG=C", "pass LANG"),
            ("TERM=dumb", "pass TERM"),
        ] {
            let text = err(opts(None, &[], &[e], &[]));
            assert!(text.contains(says), "{e}: {text}");
        }
    }

    #[test]
    fn nothing_lands_on_what_the_toolbox_needs() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let src = t.path().display().to_string();
        let check = |v: &str| opts(None, &[&format!("{src}:{v}")], &[], &[]).unwrap().check(&home);
        for dst in [
            "/run/mtbx-host",
            "/run/mtbx-stamp/x",
            "/run/host",
            "/run/host/etc",
            "/dev",
            "/dev/shm",
            "/proc",
            "/sys/fs",
            "/usr/bin/toolbox",
            "/bin/toolbox",
            "/usr/bin",
            "/usr",
            "/",
            "/run",
            "/var/run/host",
            "/etc",
            "/etc/passwd",
            "/run/mtbx",
        ] {
            let text = err(check(dst));
            assert!(text.contains(dst) || text.contains("/usr/bin/toolbox"), "{dst}: {text}");
        }
        let canonical_home = std::fs::canonicalize(&home).unwrap();
        err(check(&canonical_home.display().to_string()));
        err(check(&canonical_home.parent().unwrap().display().to_string()));
        // Beneath the home, and anywhere else, is fine.
        check(&canonical_home.join("data").display().to_string()).unwrap();
        check("/srv/data").unwrap();
        check("/etc/myapp.conf").unwrap();
        check("/run/user-data").unwrap();
    }

    #[test]
    fn sources_devices_and_homes_are_checked_on_the_host() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let file = t.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let missing = t.path().join("missing").display().to_string();
        let o = |h: Option<&str>, v: &[&str], d: &[&str]| opts(h, v, &[], d).unwrap().check(&home);
        assert!(err(o(None, &[&format!("{missing}:/x")], &[])).contains("does not exist"));
        assert!(err(o(None, &[], &["/dev/nonexistent-mtbx"])).contains("does not exist"));
        assert!(err(o(None, &[], &[&file.display().to_string()])).contains("not a device node"));
        assert!(err(o(None, &[], &["/dev/null:/dev/mine"])).contains("/dev"));
        o(None, &[], &["/dev/null", "/dev/null:/run/null"]).unwrap();
        assert!(err(o(Some(&home.display().to_string()), &[], &[])).contains("your home already"));
        assert!(err(o(Some(&file.display().to_string()), &[], &[])).contains("not a directory"));
        assert!(err(o(Some("/run/host/box"), &[], &[])).contains("/run/host"));
        let own = t.path().join("boxes/one").display().to_string();
        o(Some(&own), &[], &[]).unwrap();
        let v = format!("{}:{own}", t.path().display());
        assert!(
            err(o(Some(&own), &[&v], &[])).contains("choose another path"),
            "a volume over the container's home"
        );
        let twice = [format!("{}:/x", t.path().display()), format!("{}:/x", home.display())];
        assert!(err(o(None, &[&twice[0], &twice[1]], &[])).contains("two options"));
        let e = opts(None, &[], &["A=1", "A=2"], &[]).unwrap().check(&home);
        assert!(err(e).contains("twice"));
    }

    #[test]
    fn labels_give_back_what_create_was_given() {
        let o = opts(
            Some("/srv/box"),
            &["/data:/mnt/data:ro", "/b:/c"],
            &["A=1", "B=x=y, \"q\""],
            &["/dev/fuse", "/dev/loop0:/run/disk"],
        )
        .unwrap();
        let labels: std::collections::BTreeMap<String, String> =
            o.labels().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(labels[LABEL_VOLUMES], r#"["/data:/mnt/data:ro","/b:/c"]"#);
        assert_eq!(BoxOptions::from_labels(&labels).unwrap(), o);
        let args = o.create_args().join(" ");
        assert!(
            args.starts_with("--volume /srv/box:/srv/box:rslave --volume /data:/mnt/data:ro --volume /b:/c "),
            "{args}"
        );
        assert!(args.contains("--volume /dev/loop0:/run/disk --env A=1 "), "{args}");
        assert!(!args.contains("/dev/fuse:"), "a device at its own path is there already: {args}");
        assert!(
            args.contains("--label io.github.mtbx.devices=[\"/dev/fuse\",\"/dev/loop0:/run/disk\"]"),
            "{args}"
        );
        // Nothing given: every label written, empty, and read back as nothing.
        let none = BoxOptions::default();
        let args = none.create_args();
        assert_eq!(args.len(), 8, "{args:?}");
        assert!(args.iter().all(|a| a == "--label" || a.ends_with('=')), "{args:?}");
        let empty: std::collections::BTreeMap<String, String> =
            none.labels().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert!(BoxOptions::from_labels(&empty).unwrap().is_empty());
        assert!(BoxOptions::from_labels(&Default::default()).unwrap().is_empty());
        let mut broken = labels.clone();
        broken.insert(LABEL_ENV.into(), "[1".into());
        let e = BoxOptions::from_labels(&broken).unwrap_err();
        assert_eq!(e.kind(), Kind::Failed);
        assert!(e.to_string().contains(LABEL_ENV), "{e}");
    }

    #[test]
    fn a_missing_home_is_made_private_and_recorded_canonical() {
        let t = tempfile::tempdir().unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(t.path(), &link).unwrap();
        let mut o = opts(Some(&link.join("boxes/one").display().to_string()), &[], &[], &[]).unwrap();
        let top = o.make_home().unwrap().unwrap();
        assert_eq!(top, std::fs::canonicalize(t.path()).unwrap().join("boxes"));
        let canonical = std::fs::canonicalize(t.path()).unwrap().join("boxes/one");
        assert_eq!(o.home.as_deref(), Some(canonical.as_path()));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&canonical).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(o.make_home().unwrap(), None, "there already");
        assert_eq!(
            planned_canonical(&link.join("x/y")),
            std::fs::canonicalize(t.path()).unwrap().join("x/y")
        );
    }
}
