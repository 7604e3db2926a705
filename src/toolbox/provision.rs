//! Provisioning: the packages (`create --packages`) and init hooks
//! (`create --init-hook`) a container gets at its first start, and
//! `upgrade`, with the distribution's own package manager.
//!
//! Where it runs, and why: the work is done by the static mtbx inside the
//! container (`container-provision`, run by the host through `podman exec
//! --user root` from the session-opening path of `run`/`enter` of both
//! front ends, and by `upgrade`). Inside, because the package manager is
//! chosen from the container's own `/etc/os-release` (read bounded, as
//! every outside file) and the done marker lives in the container's own
//! file system; from the host, because only there can the output be
//! shown as progress and its last lines kept for the error. Not in
//! init-container: its log is read back only after it is ready, which a
//! minutes-long emulated `apt-get` would hold up past any start timeout,
//! and its failure would stop the container rather than leave it usable
//! for a retry. At first start rather than at create, as distrobox does
//! it: create stays quick (and works offline when the image is stored),
//! and a failure (no network) is retried by the next `run` or `enter`.
//!
//! State: what is wanted is in the container's labels (immutable, so one
//! truth); "done" is a marker inside the container ([`DONE_MARKER`]),
//! which outlives reboots; "may be pending" is a file in the host's stamp
//! directory ([`PENDING_FILE`]), written by create and whenever the stamp
//! directory is made again (a reboot clears it), so a running, set-up
//! container with nothing pending still costs no podman call.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use crate::error::{Classify, Kind};

/// The label holding the packages, a JSON array of strings.
pub const LABEL_PACKAGES: &str = "io.github.mtbx.packages";
/// The label holding the init hooks, a JSON array of shell commands.
pub const LABEL_INIT_HOOKS: &str = "io.github.mtbx.init-hooks";
/// In the host's stamp directory: provisioning may still be to do.
pub const PENDING_FILE: &str = "provision-pending";
/// Inside the container: provisioning was done (never repeated).
pub const DONE_MARKER: &str = "/var/lib/mtbx/provisioned";
/// How `container-provision` marks its own lines among the package
/// manager's: a step begins.
pub const STEP_PREFIX: &str = "mtbx-provision: step: ";
/// How `container-provision` says why it failed (its last line).
pub const ERROR_PREFIX: &str = "mtbx-provision: error: ";
/// How many of the package manager's last lines a failure keeps.
pub const LAST_LINES: usize = 10;
/// How many characters of one output line are kept.
pub const LINE_CHARS: usize = 300;
/// The longest package name taken (distributions' are far shorter).
const MAX_PACKAGE: usize = 256;

/// What a container gets at its first start: packages, then init hooks,
/// in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provision {
    /// Packages to install, as the package manager names them.
    pub packages: Vec<String>,
    /// Shell commands run as root (`sh -c`) after the packages.
    pub init_hooks: Vec<String>,
}

/// Why provisioning cannot be done or failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A package name a package manager could take for an option, or that
    /// no distribution uses.
    #[error("invalid package name {0}: use the distribution's name, such as `hello` or `python3-pip`")]
    BadPackage(String),
    /// An empty init hook.
    #[error("an --init-hook is empty: give the shell command to run")]
    EmptyHook,
    /// A label that is not what create writes.
    #[error("the container's {label} label is not a JSON list of strings: recreate the container")]
    BadLabel {
        /// The label.
        label: &'static str,
    },
    /// No row of [`MANAGERS`] fits the container's distribution.
    #[error("no package manager mtbx knows ({}) for ID={} ID_LIKE={}", known_managers(), crate::text::quoted(.id), crate::text::quoted(.id_like))]
    NoManager {
        /// os-release's ID.
        id: String,
        /// os-release's ID_LIKE.
        id_like: String,
    },
    /// A step exited non-zero.
    #[error("{step} exited with status {code}")]
    Step {
        /// The command, as shown.
        step: String,
        /// Its exit status (-1 for a signal).
        code: i32,
    },
    /// A file or process operation.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Classify for ProvisionError {
    fn kind(&self) -> Kind {
        match self {
            ProvisionError::BadPackage(_) | ProvisionError::EmptyHook => Kind::BadInput,
            ProvisionError::BadLabel { .. } | ProvisionError::Io { .. } => Kind::Failed,
            ProvisionError::NoManager { .. } | ProvisionError::Step { .. } => Kind::Provision,
        }
    }
}

fn known_managers() -> String {
    MANAGERS.iter().map(|m| m.program).collect::<Vec<_>>().join(", ")
}

impl Provision {
    /// The provisioning asked for, checked: a package name must not look
    /// like an option (`-o ...` would reconfigure the package manager) and
    /// uses only the characters package names and version constraints
    /// use; an init hook must not be empty.
    pub fn new(packages: Vec<String>, init_hooks: Vec<String>) -> Result<Provision, ProvisionError> {
        for p in &packages {
            let ok_char = |c: char| c.is_ascii_alphanumeric() || "._+-:@/=~<>*^".contains(c);
            if p.is_empty() || p.starts_with('-') || p.len() > MAX_PACKAGE || !p.chars().all(ok_char) {
                return Err(ProvisionError::BadPackage(crate::text::quoted(p)));
            }
        }
        if init_hooks.iter().any(|h| h.trim().is_empty()) {
            return Err(ProvisionError::EmptyHook);
        }
        Ok(Provision { packages, init_hooks })
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty() && self.init_hooks.is_empty()
    }

    /// The container labels that record it (none when empty, so other
    /// containers' `podman create` stays as it was).
    pub fn labels(&self) -> Vec<(&'static str, String)> {
        let json = |v: &Vec<String>| serde_json::to_string(v).expect("strings serialize");
        let mut out = Vec::new();
        if !self.packages.is_empty() {
            out.push((LABEL_PACKAGES, json(&self.packages)));
        }
        if !self.init_hooks.is_empty() {
            out.push((LABEL_INIT_HOOKS, json(&self.init_hooks)));
        }
        out
    }

    /// The provisioning a container's labels record, checked as
    /// [`Provision::new`] checks a command line's.
    pub fn from_labels(labels: Option<&BTreeMap<String, String>>) -> Result<Provision, ProvisionError> {
        let read = |label: &'static str| -> Result<Vec<String>, ProvisionError> {
            match labels.and_then(|l| l.get(label)) {
                None => Ok(Vec::new()),
                Some(v) => serde_json::from_str(v).map_err(|_| ProvisionError::BadLabel { label }),
            }
        };
        Provision::new(read(LABEL_PACKAGES)?, read(LABEL_INIT_HOOKS)?)
    }

    /// Whether labels ask for any provisioning (without checking them).
    pub fn labelled(labels: Option<&BTreeMap<String, String>>) -> bool {
        labels.is_some_and(|l| l.contains_key(LABEL_PACKAGES) || l.contains_key(LABEL_INIT_HOOKS))
    }

    /// The `container-provision` arguments that carry it.
    pub fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for p in &self.packages {
            a.extend(["--package".to_string(), p.clone()]);
        }
        for h in &self.init_hooks {
            a.extend(["--init-hook".to_string(), h.clone()]);
        }
        a
    }
}

/// A package manager: one row of [`MANAGERS`].
#[derive(Debug)]
pub struct Manager {
    /// The program; also what must be on the container's PATH.
    pub program: &'static str,
    /// os-release IDs (its own ID, or one in ID_LIKE) it serves.
    pub ids: &'static [&'static str],
    /// Refresh the package lists.
    pub refresh: &'static [&'static str],
    /// Install: the package names are appended.
    pub install: &'static [&'static str],
    /// Upgrade every package (after a refresh).
    pub upgrade: &'static [&'static str],
    /// Variables that keep it from asking.
    pub env: &'static [(&'static str, &'static str)],
}

/// dpkg asks about a changed configuration file on its terminal even
/// under DEBIAN_FRONTEND=noninteractive; these answer it (keep the
/// local file unless the default says otherwise).
const DPKG_KEEP_CONFIG: [&str; 4] =
    ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"];

/// The package managers, one row each: a new one is a row. Rows serving
/// the same IDs are tried in order, and the first whose program the
/// container has wins (UBI's minimal images have only microdnf).
pub const MANAGERS: &[Manager] = &[
    Manager {
        program: "apt-get",
        ids: &["debian", "ubuntu"],
        refresh: &["apt-get", "update"],
        install: &[
            "apt-get",
            "install",
            "-y",
            DPKG_KEEP_CONFIG[0],
            DPKG_KEEP_CONFIG[1],
            DPKG_KEEP_CONFIG[2],
            DPKG_KEEP_CONFIG[3],
        ],
        upgrade: &[
            "apt-get",
            "upgrade",
            "-y",
            DPKG_KEEP_CONFIG[0],
            DPKG_KEEP_CONFIG[1],
            DPKG_KEEP_CONFIG[2],
            DPKG_KEEP_CONFIG[3],
        ],
        env: &[("DEBIAN_FRONTEND", "noninteractive"), ("APT_LISTCHANGES_FRONTEND", "none")],
    },
    Manager {
        program: "dnf",
        ids: &["fedora", "rhel", "centos"],
        refresh: &["dnf", "makecache"],
        install: &["dnf", "install", "-y"],
        upgrade: &["dnf", "upgrade", "-y"],
        env: &[],
    },
    Manager {
        program: "microdnf",
        ids: &["fedora", "rhel", "centos"],
        refresh: &["microdnf", "makecache"],
        install: &["microdnf", "install", "-y"],
        upgrade: &["microdnf", "upgrade", "-y"],
        env: &[],
    },
    // Arch supports no partial upgrade: installing after a bare -Sy can
    // pull a package built against newer libraries, so the refresh is a
    // full sync and upgrade.
    Manager {
        program: "pacman",
        ids: &["arch"],
        refresh: &["pacman", "-Syu", "--noconfirm"],
        install: &["pacman", "-S", "--noconfirm", "--needed"],
        upgrade: &["pacman", "-Su", "--noconfirm"],
        env: &[],
    },
    Manager {
        program: "zypper",
        ids: &["suse", "opensuse", "opensuse-leap", "opensuse-tumbleweed", "sles"],
        refresh: &["zypper", "--non-interactive", "refresh"],
        install: &["zypper", "--non-interactive", "install"],
        upgrade: &["zypper", "--non-interactive", "update"],
        env: &[],
    },
    Manager {
        program: "apk",
        ids: &["alpine"],
        refresh: &["apk", "update"],
        install: &["apk", "add"],
        upgrade: &["apk", "upgrade"],
        env: &[],
    },
];

/// The value of `key` in os-release(5) text (quotes removed).
fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
    })
}

/// The package manager of a distribution, from its os-release text: its
/// ID first, then each ID_LIKE in order (os-release's rule: closest
/// first); among rows serving that ID, the first whose program `has`.
pub fn detect(os_release: &str, has: impl Fn(&str) -> bool) -> Result<&'static Manager, ProvisionError> {
    let id = os_release_field(os_release, "ID").unwrap_or_default();
    let id_like = os_release_field(os_release, "ID_LIKE").unwrap_or_default();
    std::iter::once(id.as_str())
        .chain(id_like.split_whitespace())
        .filter(|i| !i.is_empty())
        .find_map(|i| MANAGERS.iter().find(|m| m.ids.contains(&i) && has(m.program)))
        .ok_or(ProvisionError::NoManager { id, id_like })
}

/// An output's last lines, kept bounded: at most [`LAST_LINES`] lines of
/// at most [`LINE_CHARS`] characters, cleaned of control characters; a
/// line without end (or a megabyte one) costs no more than that.
#[derive(Debug, Default)]
pub struct LastLines {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

impl LastLines {
    /// Feed bytes as they come; each complete line, cleaned, goes to
    /// `line`, and is kept when it says so.
    pub fn feed(&mut self, bytes: &[u8], line: &mut dyn FnMut(&str) -> bool) {
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                self.end_line(line);
            } else if self.partial.len() < LINE_CHARS * 4 {
                self.partial.push(b);
            }
        }
    }

    /// The output ended: a last line without a newline counts.
    pub fn finish(&mut self, line: &mut dyn FnMut(&str) -> bool) {
        self.end_line(line);
    }

    fn end_line(&mut self, line: &mut dyn FnMut(&str) -> bool) {
        let raw = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        let clean = crate::text::one_line(&raw, LINE_CHARS);
        if clean.is_empty() || !line(&clean) {
            return;
        }
        if self.lines.len() == LAST_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(clean);
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// What `container-provision` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// First start: install and run the hooks once, then mark it done.
    FirstStart,
    /// Refresh and upgrade every package.
    Upgrade,
}

/// Inside the container, as root: the provisioning (or the upgrade).
/// Its steps are announced with [`STEP_PREFIX`] on stdout, where the
/// package manager's output goes too, both its streams: podman carries a
/// process's stdout and stderr apart, and the host reading them merged
/// could find a marker in the middle of a line of the other stream.
pub fn run_inside(p: &Provision, mode: Mode) -> Result<(), ProvisionError> {
    if mode == Mode::FirstStart && is_file(Path::new(DONE_MARKER)) {
        println!("{STEP_PREFIX}already provisioned ({DONE_MARKER})");
        return Ok(());
    }
    let needs_manager = mode == Mode::Upgrade || !p.packages.is_empty();
    let manager =
        if needs_manager { Some(detect(&read_os_release()?, |prog| on_path(prog).is_some())?) } else { None };
    let env: &[(&str, &str)] = manager.map_or(&[], |m| m.env);
    if let Some(m) = manager {
        run_step(m.refresh, &[], env)?;
        match mode {
            Mode::Upgrade => return run_step(m.upgrade, &[], env),
            Mode::FirstStart if !p.packages.is_empty() => run_step(m.install, &p.packages, env)?,
            Mode::FirstStart => {}
        }
    }
    for hook in &p.init_hooks {
        run_step(&["sh", "-c"], std::slice::from_ref(hook), env)?;
    }
    let marker = Path::new(DONE_MARKER);
    let io = |what: &str| {
        let what = what.to_string();
        move |source| ProvisionError::Io { what, source }
    };
    let dir = marker.parent().expect("the marker has a directory");
    crate::fsutil::mkdir_all(dir, 0o755).map_err(io(&format!("cannot create {}", dir.display())))?;
    let record = serde_json::json!({"packages": p.packages, "init_hooks": p.init_hooks});
    crate::fsutil::write_atomic(marker, format!("{record}\n").as_bytes(), 0o644)
        .map_err(io(&format!("cannot write {DONE_MARKER}")))
}

fn is_file(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
}

/// The container's os-release, read bounded (it is the image's file).
fn read_os_release() -> Result<String, ProvisionError> {
    use std::io::Read;
    let mut last = None;
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        match crate::sys::files::open_regular(Path::new(path), true) {
            Ok(f) => {
                let mut text = String::new();
                f.take(64 * 1024)
                    .read_to_string(&mut text)
                    .map_err(|source| ProvisionError::Io { what: format!("cannot read {path}"), source })?;
                return Ok(text);
            }
            Err(e) => last = Some((path, e)),
        }
    }
    let (path, source) = last.expect("two paths tried");
    Err(ProvisionError::Io { what: format!("cannot read {path}"), source })
}

/// Where the container's PATH (or, without one, the usual directories)
/// has `program`.
fn on_path(program: &str) -> Option<std::path::PathBuf> {
    crate::fsutil::find_on_path(program).or_else(|| {
        ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(program))
            .find(|p| p.is_file())
    })
}

/// Run one step (`argv` then `extra`), announced, without a terminal and
/// with its input closed, so nothing can wait for an answer.
fn run_step(argv: &[&str], extra: &[String], env: &[(&str, &str)]) -> Result<(), ProvisionError> {
    let shown = argv.iter().map(|s| s.to_string()).chain(extra.iter().cloned()).collect::<Vec<_>>().join(" ");
    println!("{STEP_PREFIX}{shown}");
    let program = on_path(argv[0]).unwrap_or_else(|| argv[0].into());
    let mut cmd = std::process::Command::new(program);
    // Its stderr into this stdout: one stream, in the order written.
    let stdout = std::os::fd::AsFd::as_fd(&std::io::stdout())
        .try_clone_to_owned()
        .map_err(|source| ProvisionError::Io { what: "cannot duplicate stdout".into(), source })?;
    cmd.args(&argv[1..])
        .args(extra)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(stdout));
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    }
    let status = cmd
        .current_dir("/")
        .status()
        .map_err(|source| ProvisionError::Io { what: format!("cannot run {}", argv[0]), source })?;
    if status.success() {
        return Ok(());
    }
    // Cut, so that the status still fits the one line the host keeps.
    Err(ProvisionError::Step { step: crate::text::one_line(&shown, 160), code: status.code().unwrap_or(-1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";

    fn everything(_: &str) -> bool {
        true
    }

    #[test]
    fn os_release_picks_the_managers_row() {
        assert_eq!(detect(DEBIAN, everything).unwrap().program, "apt-get");
        let mint = "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n";
        assert_eq!(detect(mint, everything).unwrap().program, "apt-get", "through ID_LIKE");
        let rocky = "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n";
        assert_eq!(detect(rocky, everything).unwrap().program, "dnf");
        let ubi_minimal = |p: &str| p == "microdnf";
        assert_eq!(detect("ID=rhel\n", ubi_minimal).unwrap().program, "microdnf", "the program it has");
        assert_eq!(detect("ID=arch\n", everything).unwrap().program, "pacman");
        assert_eq!(detect("ID=manjaro\nID_LIKE=arch\n", everything).unwrap().program, "pacman");
        assert_eq!(
            detect("ID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n", everything).unwrap().program,
            "zypper"
        );
        assert_eq!(detect("ID=alpine\n", everything).unwrap().program, "apk");
        let e = detect("ID=gentoo\n", everything).unwrap_err();
        assert!(matches!(&e, ProvisionError::NoManager { id, .. } if id == "gentoo"), "{e}");
        assert!(e.to_string().contains("apt-get, dnf"), "says which it knows: {e}");
        assert_eq!(e.kind(), Kind::Provision);
        assert!(detect(DEBIAN, |_| false).is_err(), "a program the container lacks is no answer");
    }

    #[test]
    fn the_argv_of_each_step() {
        let apt = detect(DEBIAN, everything).unwrap();
        assert_eq!(apt.refresh, ["apt-get", "update"]);
        assert_eq!(
            apt.install.join(" "),
            "apt-get install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
        );
        assert!(apt.upgrade.starts_with(&["apt-get", "upgrade", "-y"]));
        assert!(apt.env.contains(&("DEBIAN_FRONTEND", "noninteractive")));
        for m in MANAGERS {
            assert_eq!(m.refresh[0], m.program, "{}", m.program);
            assert_eq!(m.install[0], m.program, "{}", m.program);
            assert_eq!(m.upgrade[0], m.program, "{}", m.program);
        }
        let p = Provision::new(vec!["hello".into(), "vim".into()], vec!["echo hi > /x".into()]).unwrap();
        assert_eq!(p.args(), ["--package", "hello", "--package", "vim", "--init-hook", "echo hi > /x"]);
    }

    #[test]
    fn labels_round_trip() {
        let p = Provision::new(vec!["hello".into(), "libc6:arm64".into()], vec!["a, b; \"c\"\nd".into()])
            .unwrap();
        let labels: BTreeMap<String, String> =
            p.labels().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(labels[LABEL_PACKAGES], r#"["hello","libc6:arm64"]"#);
        assert_eq!(Provision::from_labels(Some(&labels)).unwrap(), p);
        assert!(Provision::labelled(Some(&labels)));
        assert!(Provision::default().labels().is_empty(), "nothing asked, no label");
        assert_eq!(Provision::from_labels(None).unwrap(), Provision::default());
        assert!(!Provision::labelled(Some(&BTreeMap::new())));
        let bad = BTreeMap::from([(LABEL_PACKAGES.to_string(), "hello".to_string())]);
        assert!(matches!(Provision::from_labels(Some(&bad)), Err(ProvisionError::BadLabel { .. })));
        let option = BTreeMap::from([(LABEL_PACKAGES.to_string(), r#"["-oAPT::x=y"]"#.to_string())]);
        assert!(
            matches!(Provision::from_labels(Some(&option)), Err(ProvisionError::BadPackage(_))),
            "checked as create checks"
        );
    }

    #[test]
    fn package_names_that_are_options_or_odd_are_refused() {
        for bad in ["", "-y", "--allow-unauthenticated", "a b", "a\nb", "x;rm", "$(id)", &"a".repeat(300)] {
            let e = Provision::new(vec![bad.into()], vec![]).unwrap_err();
            assert_eq!(e.kind(), Kind::BadInput, "{bad:?}");
        }
        for good in
            ["hello", "g++", "python3-pip", "libc6:arm64", "vim=2:9.0", "@development-tools", "pkg>=1.0"]
        {
            assert!(Provision::new(vec![good.into()], vec![]).is_ok(), "{good}");
        }
        assert!(matches!(Provision::new(vec![], vec![" ".into()]), Err(ProvisionError::EmptyHook)));
    }

    #[test]
    fn last_lines_are_bounded() {
        let mut l = LastLines::default();
        let mut seen = 0;
        let mut count = |l: &str| {
            seen += 1;
            !l.starts_with("skip")
        };
        l.feed(b"skipped, not kept\n", &mut count);
        for i in 0..100 {
            l.feed(format!("line {i}\n").as_bytes(), &mut count);
        }
        // A megabyte without a newline, split across feeds, then escapes.
        for _ in 0..1024 {
            l.feed(&[b'x'; 1024], &mut count);
        }
        l.feed(b"\n\x1b[31mred\x1b[0m\r\n\n", &mut count);
        l.feed(b"no newline at the end", &mut count);
        l.finish(&mut count);
        let got = l.lines();
        assert_eq!(seen, 104, "empty lines are not lines");
        assert_eq!(got.len(), LAST_LINES);
        assert_eq!(got[0], "line 93");
        assert_eq!(got[7].chars().count(), LINE_CHARS + 1, "cut, with an ellipsis");
        assert!(!got[8].contains('\x1b'), "{:?}", got[8]);
        assert_eq!(got[9], "no newline at the end");
    }
}
