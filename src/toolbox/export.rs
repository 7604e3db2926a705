//! `mtbx export`: programs and desktop entries of a container made
//! available on the host. A program becomes a small shell script (a
//! wrapper) that runs it through `mtbx run`; a desktop entry becomes a
//! copy whose Exec lines do the same. Each file carries a marker naming
//! the container and what it exports, so `--list` and `--delete` find
//! mtbx's files and never touch anyone else's.
//!
//! Everything here is pure (texts, names, parsing) or plain file work in
//! one directory; asking the container whether the program exists is the
//! CLI's part (it needs a running container).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The marker line of a wrapper (its second line), followed by JSON.
pub const WRAPPER_MARKER: &str = "# mtbx-export ";
/// The desktop entry key naming the container an entry runs in.
pub const DESKTOP_CONTAINER_KEY: &str = "X-Mtbx-Container";
/// The desktop entry key naming the container's desktop file id.
pub const DESKTOP_APP_KEY: &str = "X-Mtbx-App";
/// The desktop entry key present when the entry runs its program as root.
pub const DESKTOP_SUDO_KEY: &str = "X-Mtbx-Sudo";
/// The desktop entry key naming the icon mtbx copied for the entry, so
/// that removing the entry removes the icon too.
pub const DESKTOP_ICON_KEY: &str = "X-Mtbx-Icon";
/// What runs an exported program as root in its container: the
/// container's sudo, told never to prompt (`-n`: a launcher has no
/// terminal to ask on; mtbx's init-container gives the user a
/// password-less rule, as Toolbx images do), keeping the variables a
/// graphical program needs to reach the user's display and session bus,
/// which sudo's env_reset would drop. mtbx run has no root option of its
/// own, and through sudo the export keeps run's one path into the
/// container (session, start, auto-stop).
pub const SUDO: &[&str] = &[
    "sudo",
    "-n",
    "--preserve-env=DISPLAY,WAYLAND_DISPLAY,XAUTHORITY,XDG_RUNTIME_DIR,DBUS_SESSION_BUS_ADDRESS,XDG_SESSION_TYPE,XDG_CURRENT_DESKTOP",
    "--",
];
/// The most of one icon file copied (icons are kilobytes; large SVGs a
/// few hundred).
pub const MAX_ICON: u64 = 1 << 20;
/// The most of all of an entry's icon files together.
pub const MAX_ICONS: u64 = 8 << 20;
/// The most icon size directories looked at in the container's hicolor
/// theme (it has about twenty).
const MAX_SIZE_DIRS: usize = 64;
/// The start of every icon name mtbx gives: `mtbx-CONTAINER-ICON`. No
/// host theme names its icons so, and removal touches no other name.
pub const ICON_PREFIX: &str = "mtbx-";
/// The most of a file export reads: a wrapper's marker is in its first
/// lines, and a desktop entry is a few kilobytes.
pub const MAX_READ: u64 = 1 << 20;

/// Why an export, a listing or a removal failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file mtbx did not write is in the way.
    #[error("{} exists and was not written by mtbx export: it is left alone; pick another name with --as NAME (or move it away)", crate::text::quoted_path(.0))]
    Foreign(PathBuf),
    /// mtbx wrote the file, for another container or program.
    #[error("{} already exports {} from container {container}: remove it with `mtbx export -c {container} --delete {name}`, or pick another name with --as NAME", crate::text::quoted_path(.path), crate::text::quoted(.what), container = crate::text::escaped(.container), name = crate::text::escaped(&path.file_name().unwrap_or_default().to_string_lossy()))]
    Taken {
        /// The file.
        path: PathBuf,
        /// Its container.
        container: String,
        /// What it exports.
        what: String,
    },
    /// A native export would hide a host program, or be hidden by it.
    #[error("a wrapper named {} would be confused with the host's {}: pick another name with --as NAME", crate::text::quoted(.name), crate::text::quoted_path(.host))]
    Shadows {
        /// The wrapper's name.
        name: String,
        /// The host program of that name.
        host: PathBuf,
    },
    /// Bad input: a relative program, a bad name.
    #[error("{0}")]
    Bad(String),
    /// Nothing exported matches.
    #[error(
        "container {container} has no export named {} (`mtbx export --list -c {container}` shows them)",
        crate::text::escaped(.what),
        container = crate::text::escaped(.container)
    )]
    NotExported {
        /// The container.
        container: String,
        /// What was asked for.
        what: String,
    },
    /// Several exports match.
    #[error("{} names several exports of {}: {}; name the file", crate::text::escaped(.what), crate::text::escaped(.container), names.iter().map(|n| crate::text::quoted(n)).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        /// The container.
        container: String,
        /// What was asked for.
        what: String,
        /// The matching file names.
        names: Vec<String>,
    },
    /// The container has no such program or desktop file.
    #[error("container {} has no {}: {}", crate::text::escaped(.container), crate::text::escaped(.what), crate::text::one_line(.why, crate::text::SHOWN_CHARS))]
    NotInContainer {
        /// The container.
        container: String,
        /// The program or desktop file.
        what: String,
        /// What the container said.
        why: String,
    },
    /// The container's desktop file is not one.
    #[error("{0}")]
    BadDesktop(String),
    /// A file operation.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Classify for ExportError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            ExportError::Bad(_)
            | ExportError::Shadows { .. }
            | ExportError::Ambiguous { .. }
            | ExportError::NotInContainer { .. } => Kind::BadInput,
            _ => Kind::Failed,
        }
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> ExportError {
    move |source| ExportError::Io { what, source }
}

/// What an exported file runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Item {
    /// A program, by its absolute path in the container.
    Bin(String),
    /// A desktop entry, by its id (the file name without `.desktop`).
    App(String),
}

impl Item {
    /// The path or id, for messages and `--delete`.
    pub fn value(&self) -> &str {
        match self {
            Item::Bin(s) | Item::App(s) => s,
        }
    }
}

/// One file mtbx exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exported {
    /// The file on the host.
    pub path: PathBuf,
    /// The container it runs in.
    pub container: String,
    /// What it runs.
    pub item: Item,
    /// Whether it runs as root in the container (`--sudo`).
    pub sudo: bool,
    /// The icon copied for a desktop entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

/// What the marker of a file mtbx exported says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The container it runs in.
    pub container: String,
    /// What it runs.
    pub item: Item,
    /// Whether it runs as root in the container.
    pub sudo: bool,
    /// The icon copied for a desktop entry.
    pub icon: Option<String>,
}

impl Exported {
    /// The file's name.
    pub fn file_name(&self) -> String {
        self.path.file_name().unwrap_or_default().to_string_lossy().into_owned()
    }
}

/// The JSON of a wrapper's marker line.
#[derive(Debug, Serialize, Deserialize)]
struct WrapperMarker {
    container: String,
    program: String,
    /// Absent in wrappers that run as the user (and in older ones).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    sudo: bool,
}

/// The suffix that tells exports of a container apart from the host's
/// own: the architecture's short name (`arm64`) for a foreign container,
/// none for a native one (its programs are the host's kind).
pub fn suffix(arch_short: &str, native: bool) -> Option<String> {
    (!native).then(|| arch_short.to_string())
}

/// The wrapper's file name for `program`: its base name, with `-SUFFIX`.
pub fn wrapper_name(program: &str, suffix: Option<&str>) -> Result<String, ExportError> {
    check_program(program)?;
    let base = program.rsplit('/').next().unwrap_or(program);
    Ok(match suffix {
        Some(s) => format!("{base}-{s}"),
        None => base.to_string(),
    })
}

/// A program to export: an absolute path in the container, one line.
pub fn check_program(program: &str) -> Result<(), ExportError> {
    if !program.starts_with('/') || program.ends_with('/') || program.contains(['\n', '\0']) {
        return Err(ExportError::Bad(format!(
            "--bin takes the program's absolute path in the container (such as /usr/bin/gcc), not {}",
            crate::text::quoted(program)
        )));
    }
    Ok(())
}

/// A file name given with `--as` or made from a name: one component,
/// not hidden, no control characters.
pub fn check_file_name(name: &str) -> Result<(), ExportError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 200
        && !name.contains('/')
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ExportError::Bad(format!(
            "{} cannot name an exported file: one file name, not starting with '.'",
            crate::text::quoted(name)
        )))
    }
}

/// A desktop file id as `--app` takes it (`org.gnome.Foo`, `foo.desktop`).
pub fn check_app(app: &str) -> Result<String, ExportError> {
    let id = app.strip_suffix(".desktop").unwrap_or(app);
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 200
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(id.to_string())
    } else {
        Err(ExportError::Bad(format!(
            "--app takes a desktop file id from the container's /usr/share/applications (such as org.gnome.Calculator), not {}",
            crate::text::quoted(app)
        )))
    }
}

/// `s` as one word of a POSIX shell: single quotes, each `'` as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The wrapper script: `exec MTBX run -c CONTAINER -- PROGRAM "$@"`, so
/// the working directory, every argument (`"$@"` keeps empty ones and
/// `--`), stdin, stdout and the exit code pass through, and the mtbx that
/// exported it runs it (by its absolute path: the wrapper works from any
/// PATH, cron and IDEs included). With `sudo`, PROGRAM runs as root in
/// the container, through [`SUDO`].
pub fn wrapper_text(mtbx: &Path, container: &str, program: &str, sudo: bool) -> String {
    let marker =
        serde_json::to_string(&WrapperMarker { container: container.into(), program: program.into(), sudo })
            .expect("strings serialise");
    let name = program.rsplit('/').next().unwrap_or(program);
    let root = if sudo { SUDO.join(" ") + " " } else { String::new() };
    let as_root = if sudo { " as root" } else { "" };
    format!(
        "#!/bin/sh\n{WRAPPER_MARKER}{marker}\n\
         # Runs {name}{as_root} in the toolbox container {container} (written by `mtbx export`;\n\
         # `mtbx export -c {container} --delete` with this file's name removes it).\n\
         exec {} run -c {} -- {root}{} \"$@\"\n",
        shell_quote(&mtbx.to_string_lossy()),
        shell_quote(container),
        shell_quote(program)
    )
}

/// What a file's head says it exports, if mtbx wrote it: a wrapper's
/// marker line, or a desktop entry's X-Mtbx keys.
pub fn parse_marker(text: &str) -> Option<Marker> {
    let mut lines = text.lines();
    if lines.next() == Some("#!/bin/sh") {
        let m: WrapperMarker = serde_json::from_str(lines.next()?.strip_prefix(WRAPPER_MARKER)?).ok()?;
        return Some(Marker { container: m.container, item: Item::Bin(m.program), sudo: m.sudo, icon: None });
    }
    let mut group = "";
    let (mut container, mut app, mut sudo, mut icon) = (None, None, false, None);
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with('[') {
            group = line;
        } else if group == "[Desktop Entry]" {
            let value =
                |key: &str| line.strip_prefix(key).and_then(|r| r.strip_prefix('=')).map(String::from);
            if let Some(v) = value(DESKTOP_CONTAINER_KEY) {
                container = Some(v);
            } else if let Some(v) = value(DESKTOP_APP_KEY) {
                app = Some(v);
            } else if let Some(v) = value(DESKTOP_SUDO_KEY) {
                sudo = v == "true";
            } else if let Some(v) = value(DESKTOP_ICON_KEY) {
                icon = Some(v).filter(|i| check_icon_name(i).is_ok() && i.starts_with(ICON_PREFIX));
            }
        }
    }
    Some(Marker { container: container?, item: Item::App(app?), sudo, icon })
}

/// One argument of a desktop entry's Exec key: quoted when it holds a
/// reserved character, with the escapes the Desktop Entry specification
/// asks for (inside quotes `"`, `` ` ``, `$`, `\`; `%` doubled; then the
/// string value's own escape of `\`).
pub fn desktop_exec_arg(s: &str) -> String {
    const RESERVED: &str = " \t\n\"'\\><~|&;$*?#()`";
    let s = s.replace('%', "%%");
    let quoted = if s.is_empty() || s.chars().any(|c| RESERVED.contains(c)) {
        let mut q = String::from("\"");
        for c in s.chars() {
            if "\"`$\\".contains(c) {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    } else {
        s
    };
    desktop_value(&quoted)
}

/// A string value as a desktop file writes it: `\` as `\\`, and the
/// characters a line cannot hold as `\n`, `\t`, `\r`.
fn desktop_value(s: &str) -> String {
    s.replace('\\', r"\\").replace('\n', r"\n").replace('\t', r"\t").replace('\r', r"\r")
}

/// The container's desktop entry rewritten for the host: every Exec (of
/// the entry and of its actions) runs through `MTBX run -c CONTAINER --`
/// with the original command line (its field codes still for the
/// launcher to expand), TryExec names mtbx (the original path is the
/// container's), each Name gets ` (LABEL)`, D-Bus activation is dropped
/// (the service would be looked for on the host), and the X-Mtbx keys
/// mark the file as mtbx's. With `how.sudo` the commands run as root in
/// the container ([`SUDO`]); with `how.icon` (the container's icon,
/// copied under a name of mtbx's: (old, new)) the Icon keys naming the
/// old icon name the new one.
pub fn rewrite_desktop(
    text: &str,
    mtbx: &Path,
    container: &str,
    app: &str,
    label: &str,
    how: &Rewrite<'_>,
) -> Result<String, ExportError> {
    let mut words = vec![&*mtbx.to_string_lossy(), "run", "-c", container, "--"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    if how.sudo {
        words.extend(SUDO.iter().map(|w| w.to_string()));
    }
    let prefix = words.iter().map(|a| desktop_exec_arg(a)).collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(text.len() + 256);
    let mut group = String::new();
    let (mut entry, mut exec) = (false, false);
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            group = trimmed.to_string();
            out.push_str(line);
            out.push('\n');
            if group == "[Desktop Entry]" {
                if entry {
                    return Err(ExportError::BadDesktop(format!(
                        "{app}.desktop has two [Desktop Entry] groups"
                    )));
                }
                entry = true;
                out.push_str(&format!("{DESKTOP_CONTAINER_KEY}={container}\n{DESKTOP_APP_KEY}={app}\n"));
                if how.sudo {
                    out.push_str(&format!("{DESKTOP_SUDO_KEY}=true\n"));
                }
                if let Some((_, new)) = how.icon {
                    out.push_str(&format!("{DESKTOP_ICON_KEY}={new}\n"));
                }
            }
            continue;
        }
        let ours = group == "[Desktop Entry]" || group.starts_with("[Desktop Action ");
        let Some((key, value)) = line.split_once('=').filter(|_| ours && !trimmed.starts_with('#')) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let key = key.trim();
        let value = value.trim_start();
        // Localized variants (`Exec[de]`, `TryExec[de]`) are not in the
        // specification, but a launcher that honours them must not run the
        // container's command on the host: they are rewritten alike.
        let base = key.split_once('[').map_or(key, |(b, _)| b.trim_end());
        match base {
            "Exec" => {
                if key == "Exec" && group == "[Desktop Entry]" {
                    exec = true;
                }
                out.push_str(&format!("{key}={prefix} {value}\n"));
            }
            "TryExec" => out.push_str(&format!("{key}={}\n", desktop_value(&mtbx.to_string_lossy()))),
            "DBusActivatable" => {}
            k if [DESKTOP_CONTAINER_KEY, DESKTOP_APP_KEY, DESKTOP_SUDO_KEY, DESKTOP_ICON_KEY]
                .contains(&k) => {}
            "Icon" if how.icon.is_some_and(|(old, _)| value.trim_end() == old) => {
                out.push_str(&format!("{key}={}\n", how.icon.map(|(_, new)| new).unwrap_or_default()));
            }
            "Name" if group == "[Desktop Entry]" => {
                out.push_str(&format!("{key}={value} ({})\n", desktop_value(label)));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !entry {
        return Err(ExportError::BadDesktop(format!("{app}.desktop has no [Desktop Entry] group")));
    }
    if !exec {
        return Err(ExportError::BadDesktop(format!(
            "{app}.desktop has no Exec key: only applications can be exported"
        )));
    }
    Ok(out)
}

/// How [`rewrite_desktop`] rewrites beyond running through mtbx.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rewrite<'a> {
    /// Run the commands as root in the container.
    pub sudo: bool,
    /// The icon's name in the container and the name of its copy.
    pub icon: Option<(&'a str, &'a str)>,
}

/// The icon a desktop entry names (its [Desktop Entry] group's Icon key):
/// a theme icon's name or a file's absolute path.
pub fn desktop_icon(text: &str) -> Option<String> {
    let mut group = "";
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            group = t;
        } else if group == "[Desktop Entry]" && !t.starts_with('#') {
            if let Some((k, v)) = t.split_once('=') {
                if k.trim_end() == "Icon" && !v.trim().is_empty() {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

/// What mtbx exported into `dir`, optionally only from `container`:
/// regular files (links are never followed) whose head carries a marker.
pub fn list(dir: &Path, container: Option<&str>) -> Result<Vec<Exported>, ExportError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("cannot read {}", dir.display()))(e)),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let path = e.path();
        let Some(m) = marker_of(&path) else { continue };
        if container.is_none_or(|want| want == m.container) {
            out.push(Exported { path, container: m.container, item: m.item, sudo: m.sudo, icon: m.icon });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The marker of the regular file at `path` (never through a link).
pub fn marker_of(path: &Path) -> Option<Marker> {
    if !std::fs::symlink_metadata(path).ok()?.file_type().is_file() {
        return None;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).ok()?;
    let mut head = Vec::new();
    f.take(MAX_READ).read_to_end(&mut head).ok()?;
    parse_marker(&String::from_utf8_lossy(&head))
}

/// Write `content` as `dir/name`: a new file, or one mtbx wrote for the
/// same container and item (an export done again); anything else there
/// is refused and left as it was. The file appears whole or not at all
/// (a temporary file, then a link that fails if someone else's file
/// appeared meanwhile, or a rename over mtbx's own).
pub fn install(
    dir: &Path,
    name: &str,
    content: &str,
    mode: u32,
    container: &str,
    item: &Item,
) -> Result<PathBuf, ExportError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    check_file_name(name)?;
    crate::fsutil::mkdir_all(dir, 0o755).map_err(io(format!("cannot create {}", dir.display())))?;
    let path = dir.join(name);
    let replace = existing(&path, container, item)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".mtbx-export-")
        .tempfile_in(dir)
        .map_err(io(format!("cannot write in {}", dir.display())))?;
    let written = tmp
        .write_all(content.as_bytes())
        .and_then(|()| tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| tmp.as_file().sync_all());
    written.map_err(io(format!("cannot write {}", path.display())))?;
    if replace {
        tmp.persist(&path).map_err(|e| io(format!("cannot write {}", path.display()))(e.error))?;
    } else {
        match std::fs::hard_link(tmp.path(), &path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ExportError::Foreign(path));
            }
            Err(e) => return Err(io(format!("cannot write {}", path.display()))(e)),
        }
    }
    Ok(path)
}

/// Whether `dir/name` may become the export of `item` from `container`:
/// absent, or mtbx's own export of it; an error says what is in the way.
pub fn check_free(dir: &Path, name: &str, container: &str, item: &Item) -> Result<(), ExportError> {
    check_file_name(name)?;
    existing(&dir.join(name), container, item).map(drop)
}

/// Whether `path` is mtbx's own export of `item` from `container`
/// (true: replace it), absent (false), or in the way (an error).
fn existing(path: &Path, container: &str, item: &Item) -> Result<bool, ExportError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(false);
    }
    match marker_of(path) {
        Some(m) if m.container == container && &m.item == item => Ok(true),
        Some(m) => Err(ExportError::Taken {
            path: path.to_path_buf(),
            container: m.container,
            what: m.item.value().to_string(),
        }),
        None => Err(ExportError::Foreign(path.to_path_buf())),
    }
}

/// The exports of `container` in `dirs` that `what` names: a file name,
/// a program's path or base name, or a desktop file id.
pub fn find(dirs: &[PathBuf], container: &str, what: &str) -> Result<Vec<Exported>, ExportError> {
    let mut found = Vec::new();
    for d in dirs {
        for e in list(d, Some(container))? {
            let base = e.item.value().rsplit('/').next().unwrap_or_default();
            if e.file_name() == what || e.item.value() == what || base == what {
                found.push(e);
            }
        }
    }
    if found.is_empty() {
        // A file of that name that is not mtbx's (or another container's).
        for d in dirs {
            let p = d.join(what);
            if check_file_name(what).is_ok() && std::fs::symlink_metadata(&p).is_ok() {
                return match marker_of(&p) {
                    Some(m) => Err(ExportError::Taken {
                        path: p,
                        container: m.container,
                        what: m.item.value().to_string(),
                    }),
                    None => Err(ExportError::Foreign(p)),
                };
            }
        }
        return Err(ExportError::NotExported { container: container.into(), what: what.into() });
    }
    if found.len() > 1 && !found.iter().all(|e| e.path == found[0].path) {
        return Err(ExportError::Ambiguous {
            container: container.into(),
            what: what.into(),
            names: found.iter().map(Exported::file_name).collect(),
        });
    }
    found.truncate(1);
    Ok(found)
}

/// Remove an export, after checking once more that it is mtbx's file
/// for that container and item.
pub fn remove(e: &Exported) -> Result<(), ExportError> {
    match marker_of(&e.path) {
        Some(m) if m.container == e.container && m.item == e.item => {
            std::fs::remove_file(&e.path).map_err(io(format!("cannot remove {}", e.path.display())))
        }
        _ => Err(ExportError::Foreign(e.path.clone())),
    }
}

/// Inside the container: whether `path` (links followed, as exec
/// follows them) is a regular file someone may execute.
pub fn probe_executable(path: &Path) -> Result<(), ExportError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |why: &str| ExportError::Bad(why.to_string());
    let m = std::fs::metadata(path).map_err(|e| bad(&e.to_string()))?;
    if !m.is_file() {
        return Err(bad("not a regular file"));
    }
    if m.permissions().mode() & 0o111 == 0 {
        return Err(bad("not executable"));
    }
    Ok(())
}

/// What [`probe_read`] says of a file that is not there (the words
/// [`find_desktop`] knows it by, to look in the next directory).
const NO_SUCH_FILE: &str = "there is no such file";

/// Inside the container: the regular file at `path` (links followed, a
/// FIFO or device refused before it is read), refused beyond [`MAX_READ`].
pub fn probe_read(path: &Path) -> Result<Vec<u8>, ExportError> {
    let f = crate::sys::files::open_regular(path, true).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ExportError::Bad(format!("{}: {NO_SUCH_FILE}", crate::text::quoted_path(path)))
        } else {
            io(format!("cannot read {}", crate::text::quoted_path(path)))(e)
        }
    })?;
    let mut data = Vec::new();
    f.take(MAX_READ + 1).read_to_end(&mut data).map_err(io(format!("cannot read {}", path.display())))?;
    if data.len() as u64 > MAX_READ {
        return Err(ExportError::Bad(format!("{} is larger than {MAX_READ} bytes", path.display())));
    }
    Ok(data)
}

/// The desktop file `ID.desktop` of a container, read by `read` (a probe
/// in the container: the file's text, or what went wrong) from the first
/// of the applications directories that has it. Err: what was looked for
/// (in the directory where it was found, when reading it failed there)
/// and why.
pub fn find_desktop(
    id: &str,
    read: impl Fn(&str) -> Result<String, String>,
) -> Result<String, (String, String)> {
    let dirs = ["/usr/share/applications", "/usr/local/share/applications"];
    let mut missing = String::new();
    for dir in dirs {
        match read(&format!("{dir}/{id}.desktop")) {
            Ok(text) => return Ok(text),
            // Found, but not to be read (too large, a FIFO): said of this
            // directory, not of the next one that lacks it.
            Err(why) if !why.ends_with(NO_SUCH_FILE) => {
                return Err((format!("readable {id}.desktop in {dir}"), why))
            }
            Err(why) => missing = why,
        }
    }
    Err((format!("{id}.desktop in {}", dirs.join(" or ")), missing))
}

/// An icon's name (a desktop entry's Icon key, or mtbx's name for its
/// copy): one file name without its extension, not hidden, of the
/// characters icon names use.
pub fn check_icon_name(name: &str) -> Result<(), ExportError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 200
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ExportError::Bad(format!("{} cannot name an icon", crate::text::quoted(name))))
    }
}

/// A size directory of the hicolor theme: `48x48`, `24x24@2` or
/// `scalable` (`symbolic` icons are the desktop's monochrome variants and
/// are not copied).
pub fn is_size_dir(name: &str) -> bool {
    if name == "scalable" {
        return true;
    }
    let (dims, scale) = name.split_once('@').unwrap_or((name, "1"));
    let num = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    matches!(dims.split_once('x'), Some((w, h)) if num(w) && num(h)) && scale.len() == 1 && num(scale)
}

/// One icon file of a container, as the probe inside hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IconFile {
    /// The hicolor size directory it was found in; None for a file of
    /// /usr/share/pixmaps or named by its path.
    pub size: Option<String>,
    /// `png` or `svg`.
    pub ext: String,
    /// The content, base64.
    pub data: String,
}

/// Inside the container: the files of the icon a desktop entry names,
/// each size of the hicolor theme and /usr/share/pixmaps for a name, or
/// the one file for an absolute path; PNG and SVG only. Bounded and
/// cautious, as the image may be hostile: each file is opened by
/// [`crate::sys::files::open_regular`] (no FIFO, no device), must lie in
/// the image's own trees /usr or /opt once links are followed (never in
/// the home, /run/host or other places the host reaches in), and is at
/// most [`MAX_ICON`], all together at most [`MAX_ICONS`]; files that fail
/// are left out, as the export works without them.
pub fn probe_icons(icon: &str) -> Result<Vec<IconFile>, ExportError> {
    let mut candidates: Vec<(Option<String>, PathBuf)> = Vec::new();
    if icon.starts_with('/') {
        candidates.push((None, PathBuf::from(icon)));
    } else {
        let icon = strip_icon_ext(icon);
        check_icon_name(icon)?;
        let hicolor = Path::new("/usr/share/icons/hicolor");
        let mut sizes: Vec<String> = std::fs::read_dir(hicolor)
            .map(|rd| {
                rd.flatten()
                    .take(MAX_SIZE_DIRS)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| is_size_dir(n))
                    .collect()
            })
            .unwrap_or_default();
        sizes.sort();
        for size in sizes {
            for ext in ["png", "svg"] {
                candidates.push((Some(size.clone()), hicolor.join(&size).join(format!("apps/{icon}.{ext}"))));
            }
        }
        for ext in ["png", "svg"] {
            candidates.push((None, PathBuf::from(format!("/usr/share/pixmaps/{icon}.{ext}"))));
        }
    }
    let mut out = Vec::new();
    let mut total = 0;
    for (size, path) in candidates {
        let ext = match path.extension().and_then(|e| e.to_str()) {
            Some(e @ ("png" | "svg")) => e.to_string(),
            _ => continue,
        };
        let Some(data) = read_icon(&path) else { continue };
        total += data.len() as u64;
        if total > MAX_ICONS {
            break;
        }
        use base64::Engine;
        out.push(IconFile { size, ext, data: base64::engine::general_purpose::STANDARD.encode(data) });
    }
    Ok(out)
}

/// The icon files `container-probe --icons` printed; none when that is
/// not their JSON (icons are optional: the export goes on without).
pub fn icon_files(json: &str) -> Vec<IconFile> {
    serde_json::from_str(json).unwrap_or_default()
}

/// An icon file's content, if it is a regular file of the image's own
/// trees and not too large.
fn read_icon(path: &Path) -> Option<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let f = crate::sys::files::open_regular(path, true).ok()?;
    // Where the links led: what the descriptor is open on.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()?;
    if !(real.starts_with("/usr/") || real.starts_with("/opt/")) {
        return None;
    }
    let mut data = Vec::new();
    f.take(MAX_ICON + 1).read_to_end(&mut data).ok()?;
    (data.len() as u64 <= MAX_ICON).then_some(data)
}

/// An icon name without the file extension some entries give it (the
/// specification says none; launchers drop it).
fn strip_icon_ext(icon: &str) -> &str {
    [".png", ".svg", ".xpm"].iter().find_map(|e| icon.strip_suffix(e)).unwrap_or(icon)
}

/// A PNG's width and height, from its header.
pub fn png_size(data: &[u8]) -> Option<(u32, u32)> {
    if data.len() < 24 || &data[..8] != b"\x89PNG\r\n\x1a\n" || &data[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&data[16..20]), be(&data[20..24])))
}

/// The name mtbx gives its copy of a container's icon: `mtbx-CONTAINER-`
/// and the icon's name (a path's file name without its extension). None
/// when that is no icon name.
pub fn icon_copy_name(container: &str, icon: &str) -> Option<String> {
    let base = if icon.starts_with('/') {
        let file = icon.rsplit('/').next()?;
        file.rsplit_once('.').map_or(file, |(stem, _)| stem)
    } else {
        strip_icon_ext(icon)
    };
    let name = format!("{ICON_PREFIX}{container}-{base}");
    check_icon_name(&name).ok().map(|()| name)
}

/// Where each of a container's icon files goes under the user's icon
/// directory, checked again here (the probe's output is the container's
/// word): `hicolor/SIZE/apps/NAME.EXT` and the content. A file without a
/// size (a pixmap, a path) takes its PNG header's size, or `scalable` for
/// an SVG, unless the theme gave that size already.
pub fn place_icons(name: &str, files: &[IconFile]) -> Vec<(PathBuf, Vec<u8>)> {
    use base64::Engine;
    let mut out: Vec<(String, PathBuf, Vec<u8>)> = Vec::new();
    let mut total = 0;
    for f in files {
        let Ok(data) = base64::engine::general_purpose::STANDARD.decode(&f.data) else { continue };
        if data.len() as u64 > MAX_ICON || !matches!(f.ext.as_str(), "png" | "svg") {
            continue;
        }
        let size = match (&f.size, f.ext.as_str()) {
            (Some(s), _) if is_size_dir(s) && (s != "scalable" || f.ext == "svg") => s.clone(),
            (Some(_), _) => continue,
            (None, "svg") => "scalable".to_string(),
            (None, _) => match png_size(&data) {
                Some((w, h)) if w == h && (1..=1024).contains(&w) => format!("{w}x{h}"),
                _ => continue,
            },
        };
        let rel = PathBuf::from(format!("hicolor/{size}/apps/{name}.{}", f.ext));
        if out.iter().any(|(s, _, _)| *s == size) {
            continue;
        }
        total += data.len() as u64;
        if total > MAX_ICONS {
            break;
        }
        out.push((size, rel, data));
    }
    out.into_iter().map(|(_, rel, data)| (rel, data)).collect()
}

/// Write icon files under `root` (the user's icons directory), each whole
/// or not at all. A name of mtbx's ([`ICON_PREFIX`]) is mtbx's file: it
/// is replaced, unless something else than a regular file is there.
pub fn install_icons(root: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<Vec<PathBuf>, ExportError> {
    let mut written = Vec::new();
    for (rel, data) in files {
        let path = root.join(rel);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.file_type().is_file()) {
            return Err(ExportError::Foreign(path));
        }
        crate::fsutil::write_atomic(&path, data, 0o644)
            .map_err(io(format!("cannot write {}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

/// Remove mtbx's icon `name` (one of [`ICON_PREFIX`]) from every size of
/// the hicolor theme under `root`: regular files only.
pub fn remove_icons(root: &Path, name: &str) -> Result<Vec<PathBuf>, ExportError> {
    if !name.starts_with(ICON_PREFIX) || check_icon_name(name).is_err() {
        return Ok(Vec::new());
    }
    let hicolor = root.join("hicolor");
    let Ok(rd) = std::fs::read_dir(&hicolor) else { return Ok(Vec::new()) };
    let mut removed = Vec::new();
    for e in rd.flatten() {
        if !e.file_name().to_str().is_some_and(is_size_dir) {
            continue;
        }
        for ext in ["png", "svg"] {
            let p = e.path().join(format!("apps/{name}.{ext}"));
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_file()) {
                std::fs::remove_file(&p).map_err(io(format!("cannot remove {}", p.display())))?;
                removed.push(p);
            }
        }
    }
    Ok(removed)
}

/// Inside the container: whether sudo runs a program as root without
/// asking for a password, exactly as an export with --sudo will call it.
pub fn probe_sudo() -> Result<(), ExportError> {
    let out = std::process::Command::new(SUDO[0])
        .args(&SUDO[1..])
        .arg("true")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ExportError::Bad(format!("cannot run sudo: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("it failed");
    Err(ExportError::Bad(format!("sudo -n cannot run programs as root: {}", last.trim())))
}

/// The user's icons directory: `$XDG_DATA_HOME/icons`, else
/// `~/.local/share/icons`.
pub fn default_icon_dir(home: &Path) -> PathBuf {
    xdg("XDG_DATA_HOME").unwrap_or_else(|| home.join(".local/share")).join("icons")
}

/// The directory wrappers go to: `$XDG_BIN_HOME` when set (absolute),
/// else `~/.local/bin` (the systemd file-hierarchy's and most
/// distributions' PATH entry for the user).
pub fn default_bin_dir(home: &Path) -> PathBuf {
    xdg("XDG_BIN_HOME").unwrap_or_else(|| home.join(".local/bin"))
}

/// The directory desktop entries go to: `$XDG_DATA_HOME/applications`,
/// else `~/.local/share/applications`.
pub fn default_app_dir(home: &Path) -> PathBuf {
    xdg("XDG_DATA_HOME").unwrap_or_else(|| home.join(".local/share")).join("applications")
}

/// An XDG base directory variable, ignored unless absolute (as the
/// specification says).
fn xdg(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_names_carry_the_architecture_of_foreign_containers() {
        assert_eq!(wrapper_name("/usr/bin/gcc", suffix("arm64", false).as_deref()).unwrap(), "gcc-arm64");
        assert_eq!(wrapper_name("/usr/bin/gcc", suffix("amd64", true).as_deref()).unwrap(), "gcc");
        assert!(wrapper_name("gcc", None).is_err(), "a relative program");
        assert!(wrapper_name("/usr/bin/", None).is_err());
        assert!(check_file_name("../x").is_err() && check_file_name(".hidden").is_err());
        assert_eq!(check_app("org.gnome.Foo.desktop").unwrap(), "org.gnome.Foo");
        assert!(check_app("../x").is_err() && check_app("a b").is_err());
    }

    /// The wrapper is run by a real shell: every argument, empty ones and
    /// `--` too, reaches the command as given, and the quoting survives
    /// hostile paths.
    #[test]
    fn the_wrapper_passes_every_argument_through_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in "mtbx" that prints its arguments one per line.
        let fake = dir.path().join("it's \"mtbx\" $HOME");
        std::fs::write(&fake, "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\nexit 3\n")
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = wrapper_text(&fake, "box-1", "/opt/my prog/it's", false);
        let w = dir.path().join("w");
        std::fs::write(&w, &text).unwrap();
        let out = std::process::Command::new("sh")
            .arg(&w)
            .args(["a b", "", "--", "\"q\"", "$x", "it's"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "the exit code passes");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "[run]\n[-c]\n[box-1]\n[--]\n[/opt/my prog/it's]\n[a b]\n[]\n[--]\n[\"q\"]\n[$x]\n[it's]\n"
        );
        assert_eq!(
            parse_marker(&text),
            Some(Marker {
                container: "box-1".to_string(),
                item: Item::Bin("/opt/my prog/it's".to_string()),
                sudo: false,
                icon: None
            })
        );
        assert!(!text.contains("sudo"), "{text}");
        assert_eq!(parse_marker("#!/bin/sh\necho hi\n"), None, "a script of someone else");
        // --sudo: the program through the container's sudo, never asking.
        let text = wrapper_text(&fake, "box-1", "/usr/sbin/fdisk", true);
        std::fs::write(&w, &text).unwrap();
        let out = std::process::Command::new("sh").arg(&w).args(["-l", ""]).output().unwrap();
        let mut want = "[run]\n[-c]\n[box-1]\n[--]\n".to_string();
        for word in SUDO {
            want.push_str(&format!("[{word}]\n"));
        }
        want.push_str("[/usr/sbin/fdisk]\n[-l]\n[]\n");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
        assert!(want.contains("[sudo]\n[-n]\n"), "{want}");
        assert!(parse_marker(&text).unwrap().sudo);
    }

    #[test]
    fn a_desktop_file_that_cannot_be_read_is_named_where_it_is() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let e = probe_read(&fifo).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'#'; MAX_READ as usize + 1]).unwrap();
        let e = probe_read(&big).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        let missing = probe_read(&d.path().join("none")).unwrap_err().to_string();
        // Too large in the first directory, missing in the second: the
        // error names the first.
        let read =
            |p: &str| Err(if p.starts_with("/usr/share/") { "too big".to_string() } else { missing.clone() });
        let (what, why) = find_desktop("app", read).unwrap_err();
        assert_eq!(
            (what.as_str(), why.as_str()),
            ("readable app.desktop in /usr/share/applications", "too big")
        );
        let (what, _) = find_desktop("app", |_| Err(missing.clone())).unwrap_err();
        assert!(what.contains("/usr/share/applications or /usr/local/share/applications"), "{what}");
        assert_eq!(
            find_desktop("app", |p| Ok(p.to_string())).unwrap(),
            "/usr/share/applications/app.desktop"
        );
    }

    #[test]
    fn desktop_exec_arguments_are_quoted_as_the_specification_says() {
        assert_eq!(desktop_exec_arg("/usr/bin/mtbx"), "/usr/bin/mtbx");
        assert_eq!(desktop_exec_arg("/opt/my mtbx"), "\"/opt/my mtbx\"");
        assert_eq!(desktop_exec_arg("a\"$`b"), r#""a\\"\\$\\`b""#);
        assert_eq!(desktop_exec_arg(r"a\b"), r#""a\\\\b""#);
        assert_eq!(desktop_exec_arg("100%"), "100%%");
        assert_eq!(desktop_exec_arg(""), "\"\"");
    }

    #[test]
    fn a_desktop_entry_is_rewritten_to_run_in_the_container() {
        let orig = "# comment=x\n[Desktop Entry]\nType=Application\nName=Calc\nName[de]=Rechner\n\
                    GenericName=Calculator\nTryExec=/usr/bin/calc\nExec=calc %U\nDBusActivatable=true\n\
                    X-Mtbx-Container=forged\nActions=new;\n\n[Desktop Action new]\nName=New\nExec=calc --new\n\
                    \n[X-Other]\nExec=untouched\n";
        let plain = Rewrite::default();
        let out = rewrite_desktop(orig, Path::new("/opt/m tbx"), "box", "calc", "arm64", &plain).unwrap();
        assert_eq!(
            out,
            "# comment=x\n[Desktop Entry]\nX-Mtbx-Container=box\nX-Mtbx-App=calc\nType=Application\n\
             Name=Calc (arm64)\nName[de]=Rechner (arm64)\nGenericName=Calculator\nTryExec=/opt/m tbx\n\
             Exec=\"/opt/m tbx\" run -c box -- calc %U\nActions=new;\n\n[Desktop Action new]\nName=New\n\
             Exec=\"/opt/m tbx\" run -c box -- calc --new\n\n[X-Other]\nExec=untouched\n"
        );
        assert_eq!(
            parse_marker(&out),
            Some(Marker { container: "box".into(), item: Item::App("calc".into()), sudo: false, icon: None })
        );
        assert!(rewrite_desktop("[Desktop Entry]\nName=x\n", Path::new("/m"), "b", "x", "l", &plain).is_err());
        // Localized Exec and TryExec keys run through mtbx too.
        let out = rewrite_desktop(
            "[Desktop Entry]\nName=x\nExec=x\nExec[de]=/usr/bin/x --de\nTryExec[de] = /usr/bin/x\n",
            Path::new("/m"),
            "b",
            "x",
            "l",
            &plain,
        )
        .unwrap();
        assert!(out.contains("\nExec[de]=/m run -c b -- /usr/bin/x --de\n"), "{out}");
        assert!(out.contains("\nTryExec[de]=/m\n") && !out.contains("TryExec[de] ="), "{out}");
        assert!(rewrite_desktop("Name=x\nExec=x\n", Path::new("/m"), "b", "x", "l", &plain).is_err());
    }

    #[test]
    fn with_sudo_and_an_icon_the_entry_runs_as_root_and_names_mtbx_s_copy() {
        let orig = "[Desktop Entry]\nName=Disks\nExec=gnome-disks %U\nIcon=org.gnome.Disks\n\
                    Icon[de]=org.gnome.Disks\nX-Mtbx-Sudo=true\nX-Mtbx-Icon=mtbx-forged\nActions=a;\n\n\
                    [Desktop Action a]\nExec=gnome-disks --a\nIcon=other-icon\n";
        assert_eq!(desktop_icon(orig).as_deref(), Some("org.gnome.Disks"));
        let new = icon_copy_name("box", "org.gnome.Disks").unwrap();
        assert_eq!(new, "mtbx-box-org.gnome.Disks");
        let how = Rewrite { sudo: true, icon: Some(("org.gnome.Disks", &new)) };
        let out = rewrite_desktop(orig, Path::new("/m"), "box", "disks", "arm64", &how).unwrap();
        let sudo = SUDO.iter().map(|w| desktop_exec_arg(w)).collect::<Vec<_>>().join(" ");
        assert!(out.contains(&format!("\nExec=/m run -c box -- {sudo} gnome-disks %U\n")), "{out}");
        assert!(out.contains(&format!("\nExec=/m run -c box -- {sudo} gnome-disks --a\n")), "{out}");
        assert!(
            out.contains("\nIcon=mtbx-box-org.gnome.Disks\nIcon[de]=mtbx-box-org.gnome.Disks\n"),
            "{out}"
        );
        assert!(out.contains("\nIcon=other-icon\n"), "an icon not copied is left: {out}");
        assert!(!out.contains("forged") && out.matches("X-Mtbx-Sudo").count() == 1, "{out}");
        assert_eq!(
            parse_marker(&out),
            Some(Marker {
                container: "box".into(),
                item: Item::App("disks".into()),
                sudo: true,
                icon: Some(new.clone())
            })
        );
        // A forged icon marker naming an icon of someone else's is ignored.
        let forged = "[Desktop Entry]\nX-Mtbx-Container=b\nX-Mtbx-App=a\nX-Mtbx-Icon=firefox\n";
        assert_eq!(parse_marker(forged).unwrap().icon, None);
        // Names and paths: the copy's name is mtbx's, or none at all.
        assert_eq!(icon_copy_name("box", "/usr/share/app/logo.svg").unwrap(), "mtbx-box-logo");
        assert_eq!(icon_copy_name("box", "calc.png").unwrap(), "mtbx-box-calc");
        assert_eq!(icon_copy_name("box", "../../x"), None);
        assert_eq!(icon_copy_name("box", "a b"), None);
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut d = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        d.extend(w.to_be_bytes());
        d.extend(h.to_be_bytes());
        d.extend([8, 6, 0, 0, 0]);
        d
    }

    #[test]
    fn icon_files_are_placed_by_size_and_checked_again_on_the_host() {
        use base64::Engine;
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let f = |size: Option<&str>, ext: &str, data: &[u8]| IconFile {
            size: size.map(String::from),
            ext: ext.into(),
            data: b64(data),
        };
        assert!(is_size_dir("48x48") && is_size_dir("24x24@2") && is_size_dir("scalable"));
        assert!(
            !is_size_dir("symbolic") && !is_size_dir("..") && !is_size_dir("48x") && !is_size_dir("1x1@")
        );
        assert_eq!(png_size(&png(64, 32)), Some((64, 32)));
        assert_eq!(png_size(b"GIF89a"), None);
        let files = [
            f(Some("48x48"), "png", &png(48, 48)),
            f(Some("scalable"), "svg", b"<svg/>"),
            f(Some("../../../.."), "png", &png(1, 1)),
            f(Some("scalable"), "png", &png(2, 2)),
            f(Some("16x16"), "exe", b"MZ"),
            f(Some("16x16"), "png", &vec![0; MAX_ICON as usize + 1]),
            // A pixmap: its header's size; one the theme already gave is
            // not taken twice; a non-square or unreadable one is left out.
            f(None, "png", &png(48, 48)),
            f(None, "png", &png(128, 128)),
            f(None, "png", &png(128, 64)),
            f(None, "png", b"not a png"),
        ];
        let placed: Vec<String> =
            place_icons("mtbx-b-x", &files).iter().map(|(p, _)| p.display().to_string()).collect();
        assert_eq!(
            placed,
            [
                "hicolor/48x48/apps/mtbx-b-x.png",
                "hicolor/scalable/apps/mtbx-b-x.svg",
                "hicolor/128x128/apps/mtbx-b-x.png"
            ]
        );
        let bad = IconFile { size: None, ext: "png".into(), data: "%%%".into() };
        assert!(place_icons("mtbx-b-x", &[bad]).is_empty(), "not base64");
    }

    #[test]
    fn icons_are_written_whole_and_removed_by_mtbx_s_names_only() {
        let root = tempfile::tempdir().unwrap();
        let files = place_icons(
            "mtbx-b-x",
            &[IconFile { size: Some("48x48".into()), ext: "png".into(), data: "AAEC".into() }],
        );
        let written = install_icons(root.path(), &files).unwrap();
        assert_eq!(written, [root.path().join("hicolor/48x48/apps/mtbx-b-x.png")]);
        assert_eq!(std::fs::read(&written[0]).unwrap(), [0, 1, 2]);
        install_icons(root.path(), &files).unwrap();
        // The host's own icon beside it, and a link in mtbx's name: kept.
        let apps = root.path().join("hicolor/48x48/apps");
        std::fs::write(apps.join("firefox.png"), "host").unwrap();
        std::os::unix::fs::symlink("firefox.png", apps.join("mtbx-b-y.png")).unwrap();
        let y = place_icons(
            "mtbx-b-y",
            &[IconFile { size: Some("48x48".into()), ext: "png".into(), data: "AAEC".into() }],
        );
        assert!(matches!(install_icons(root.path(), &y), Err(ExportError::Foreign(_))));
        assert_eq!(std::fs::read_to_string(apps.join("firefox.png")).unwrap(), "host", "not written through");
        assert!(remove_icons(root.path(), "firefox").unwrap().is_empty(), "not a name of mtbx's");
        assert!(remove_icons(root.path(), "mtbx-b-y").unwrap().is_empty(), "a link is not mtbx's file");
        assert_eq!(remove_icons(root.path(), "mtbx-b-x").unwrap(), written);
        let mut left: Vec<_> = std::fs::read_dir(&apps).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["firefox.png", "mtbx-b-y.png"]);
    }

    /// The probe reads icons only from the image's own trees, through
    /// links too, and never a FIFO.
    #[test]
    fn icon_files_are_read_only_from_usr_and_opt() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("file.png"), "x").unwrap();
        assert_eq!(read_icon(&d.path().join("file.png")), None, "outside /usr and /opt");
        std::os::unix::fs::symlink("/usr/bin/env", d.path().join("in.png")).unwrap();
        assert!(read_icon(&d.path().join("in.png")).is_some(), "a link into /usr");
        let made = std::process::Command::new("mkfifo").arg(d.path().join("fifo")).status().unwrap();
        assert!(made.success());
        assert_eq!(read_icon(&d.path().join("fifo")), None);
        assert!(probe_icons("../etc/passwd").is_err());
    }

    #[test]
    fn install_never_overwrites_a_file_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let item = Item::Bin("/bin/sh".into());
        let text = wrapper_text(Path::new("/m"), "box", "/bin/sh", false);
        let p = install(dir.path(), "sh-arm64", &text, 0o755, "box", &item).unwrap();
        // Again: the same export is replaced.
        install(dir.path(), "sh-arm64", &text, 0o755, "box", &item).unwrap();
        // Another container's export of that name is refused.
        let other = wrapper_text(Path::new("/m"), "other", "/bin/sh", false);
        let e = install(dir.path(), "sh-arm64", &other, 0o755, "other", &item).unwrap_err();
        assert!(matches!(e, ExportError::Taken { .. }), "{e}");
        // Someone else's file is refused, and left as it was.
        std::fs::write(dir.path().join("mine"), "#!/bin/sh\necho mine\n").unwrap();
        let e = install(dir.path(), "mine", &text, 0o755, "box", &item).unwrap_err();
        assert!(matches!(e, ExportError::Foreign(_)), "{e}");
        assert_eq!(std::fs::read_to_string(dir.path().join("mine")).unwrap(), "#!/bin/sh\necho mine\n");
        // A link is never followed, even to mtbx's own file.
        std::os::unix::fs::symlink(&p, dir.path().join("link")).unwrap();
        assert!(matches!(
            install(dir.path(), "link", &text, 0o755, "box", &item),
            Err(ExportError::Foreign(_))
        ));
        let listed = list(dir.path(), None).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].file_name(), "sh-arm64");
        assert!(list(dir.path(), Some("other")).unwrap().is_empty());
        // find: by file, path or base name; someone else's file is refused.
        let dirs = [dir.path().to_path_buf()];
        assert_eq!(find(&dirs, "box", "sh").unwrap()[0].path, p);
        assert_eq!(find(&dirs, "box", "/bin/sh").unwrap()[0].path, p);
        assert!(matches!(find(&dirs, "box", "mine"), Err(ExportError::Foreign(_))));
        assert!(matches!(find(&dirs, "box", "gcc"), Err(ExportError::NotExported { .. })));
        remove(&find(&dirs, "box", "sh-arm64").unwrap()[0]).unwrap();
        assert!(!p.exists());
        let leftovers: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
    }
}
