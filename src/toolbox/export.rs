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
/// PATH, cron and IDEs included).
pub fn wrapper_text(mtbx: &Path, container: &str, program: &str) -> String {
    let marker =
        serde_json::to_string(&WrapperMarker { container: container.into(), program: program.into() })
            .expect("strings serialise");
    let name = program.rsplit('/').next().unwrap_or(program);
    format!(
        "#!/bin/sh\n{WRAPPER_MARKER}{marker}\n\
         # Runs {name} in the toolbox container {container} (written by `mtbx export`;\n\
         # `mtbx export -c {container} --delete` with this file's name removes it).\n\
         exec {} run -c {} -- {} \"$@\"\n",
        shell_quote(&mtbx.to_string_lossy()),
        shell_quote(container),
        shell_quote(program)
    )
}

/// What a file's head says it exports, if mtbx wrote it: a wrapper's
/// marker line, or a desktop entry's X-Mtbx keys.
pub fn parse_marker(text: &str) -> Option<(String, Item)> {
    let mut lines = text.lines();
    if lines.next() == Some("#!/bin/sh") {
        let m: WrapperMarker = serde_json::from_str(lines.next()?.strip_prefix(WRAPPER_MARKER)?).ok()?;
        return Some((m.container, Item::Bin(m.program)));
    }
    let mut group = "";
    let (mut container, mut app) = (None, None);
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with('[') {
            group = line;
        } else if group == "[Desktop Entry]" {
            if let Some(v) = line.strip_prefix(DESKTOP_CONTAINER_KEY).and_then(|r| r.strip_prefix('=')) {
                container = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix(DESKTOP_APP_KEY).and_then(|r| r.strip_prefix('=')) {
                app = Some(v.to_string());
            }
        }
    }
    Some((container?, Item::App(app?)))
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
/// mark the file as mtbx's.
pub fn rewrite_desktop(
    text: &str,
    mtbx: &Path,
    container: &str,
    app: &str,
    label: &str,
) -> Result<String, ExportError> {
    let prefix = [&*mtbx.to_string_lossy(), "run", "-c", container, "--"]
        .iter()
        .map(|a| desktop_exec_arg(a))
        .collect::<Vec<_>>()
        .join(" ");
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
            k if k == DESKTOP_CONTAINER_KEY || k == DESKTOP_APP_KEY => {}
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
        let Some((c, item)) = marker_of(&path) else { continue };
        if container.is_none_or(|want| want == c) {
            out.push(Exported { path, container: c, item });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The marker of the regular file at `path` (never through a link).
pub fn marker_of(path: &Path) -> Option<(String, Item)> {
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

/// Whether `path` is mtbx's own export of `item` from `container`
/// (true: replace it), absent (false), or in the way (an error).
fn existing(path: &Path, container: &str, item: &Item) -> Result<bool, ExportError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(false);
    }
    match marker_of(path) {
        Some((c, i)) if c == container && &i == item => Ok(true),
        Some((c, i)) => {
            Err(ExportError::Taken { path: path.to_path_buf(), container: c, what: i.value().to_string() })
        }
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
                    Some((c, i)) => {
                        Err(ExportError::Taken { path: p, container: c, what: i.value().to_string() })
                    }
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
        Some((c, i)) if c == e.container && i == e.item => {
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
        let text = wrapper_text(&fake, "box-1", "/opt/my prog/it's");
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
            Some(("box-1".to_string(), Item::Bin("/opt/my prog/it's".to_string())))
        );
        assert_eq!(parse_marker("#!/bin/sh\necho hi\n"), None, "a script of someone else");
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
        let out = rewrite_desktop(orig, Path::new("/opt/m tbx"), "box", "calc", "arm64").unwrap();
        assert_eq!(
            out,
            "# comment=x\n[Desktop Entry]\nX-Mtbx-Container=box\nX-Mtbx-App=calc\nType=Application\n\
             Name=Calc (arm64)\nName[de]=Rechner (arm64)\nGenericName=Calculator\nTryExec=/opt/m tbx\n\
             Exec=\"/opt/m tbx\" run -c box -- calc %U\nActions=new;\n\n[Desktop Action new]\nName=New\n\
             Exec=\"/opt/m tbx\" run -c box -- calc --new\n\n[X-Other]\nExec=untouched\n"
        );
        assert_eq!(parse_marker(&out), Some(("box".into(), Item::App("calc".into()))));
        assert!(rewrite_desktop("[Desktop Entry]\nName=x\n", Path::new("/m"), "b", "x", "l").is_err());
        // Localized Exec and TryExec keys run through mtbx too.
        let out = rewrite_desktop(
            "[Desktop Entry]\nName=x\nExec=x\nExec[de]=/usr/bin/x --de\nTryExec[de] = /usr/bin/x\n",
            Path::new("/m"),
            "b",
            "x",
            "l",
        )
        .unwrap();
        assert!(out.contains("\nExec[de]=/m run -c b -- /usr/bin/x --de\n"), "{out}");
        assert!(out.contains("\nTryExec[de]=/m\n") && !out.contains("TryExec[de] ="), "{out}");
        assert!(rewrite_desktop("Name=x\nExec=x\n", Path::new("/m"), "b", "x", "l").is_err());
    }

    #[test]
    fn install_never_overwrites_a_file_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let item = Item::Bin("/bin/sh".into());
        let text = wrapper_text(Path::new("/m"), "box", "/bin/sh");
        let p = install(dir.path(), "sh-arm64", &text, 0o755, "box", &item).unwrap();
        // Again: the same export is replaced.
        install(dir.path(), "sh-arm64", &text, 0o755, "box", &item).unwrap();
        // Another container's export of that name is refused.
        let other = wrapper_text(Path::new("/m"), "other", "/bin/sh");
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
