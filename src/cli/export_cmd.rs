//! `mtbx export`: a container's program or desktop entry on the host
//! (`--bin`, `--app`), what mtbx exported (`--list`), and removal
//! (`--delete`); and `container-probe`, its half inside the container.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use super::containers_cmd::{begin_session, end_session, SelectArgs};
use super::exit;
use super::output::{self, Format, Table};
use crate::emu::arch::Arch;
use crate::toolbox::export::{self, ExportError, Exported, Item};
use crate::toolbox::ops::Toolbox;
use crate::toolbox::selection::SelectFlags;
use crate::toolbox::{self, HostUser};

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Container name (`-c NAME`; default: from --arch/--distro/--release).
    #[arg(long, short = 'c', value_name = "NAME", add = super::complete::containers())]
    container: Option<String>,
    #[command(flatten)]
    which: SelectArgs,
    /// A program, by its absolute path in the container: a wrapper that
    /// runs it there (`gcc-arm64` for a foreign container's /usr/bin/gcc).
    #[arg(long, value_name = "PATH", conflicts_with = "app")]
    bin: Option<String>,
    /// An application, by the id of its desktop file in the container's
    /// /usr/share/applications: a desktop entry that runs it there.
    #[arg(long, value_name = "APP")]
    app: Option<String>,
    /// Run it as root in the container, through the container's sudo
    /// without a password (`sudo -n`, as toolbox containers allow).
    #[arg(long)]
    sudo: bool,
    /// Name of the exported file instead of the default.
    #[arg(long = "as", value_name = "NAME")]
    name: Option<String>,
    /// Directory of the exported file (default: $XDG_BIN_HOME or
    /// ~/.local/bin; for --app, ~/.local/share/applications).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// List what mtbx exported (from one container with -c).
    #[arg(long, conflicts_with_all = ["bin", "app", "name", "delete", "sudo"])]
    list: bool,
    /// Remove an export: the file name, the program or the app given, or
    /// the --bin/--app given.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["name", "sudo"])]
    delete: Option<String>,
    /// Output format of --list.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("probe").required(true).args(["executable", "read", "icons", "sudo"])))]
pub(crate) struct ProbeArgs {
    /// Succeed when this is an executable file.
    #[arg(long, value_name = "PATH")]
    executable: Option<PathBuf>,
    /// Print this file (at most 1 MiB).
    #[arg(long, value_name = "PATH")]
    read: Option<PathBuf>,
    /// Print the files of this icon (a name or a path), as JSON.
    #[arg(long, value_name = "ICON")]
    icons: Option<String>,
    /// Succeed when sudo runs programs as root without a password.
    #[arg(long)]
    sudo: bool,
}

pub(crate) fn run(args: ExportArgs) -> Result<i32> {
    let home = HostUser::current()?.home;
    let dirs: Vec<PathBuf> = match &args.dir {
        Some(d) => vec![d.clone()],
        None => vec![export::default_bin_dir(&home), export::default_app_dir(&home)],
    };
    if args.list {
        return list(&dirs, args.container.as_deref(), args.format);
    }
    // Bad input first, before podman is asked anything.
    match (&args.bin, &args.app, &args.name) {
        (Some(program), _, _) => export::check_program(program)?,
        (None, Some(app), _) => drop(export::check_app(app)?),
        (None, None, _) if args.delete.as_deref().is_some_and(|d| !d.is_empty()) => {}
        (None, None, _) if args.delete.is_some() => {
            return Err(crate::error::BadInput(
                "--delete needs what to remove: `--delete NAME`, or with --bin PATH or --app APP".into(),
            )
            .into())
        }
        (None, None, _) => {
            return Err(crate::error::BadInput(
                "say what to export: --bin PATH or --app APP (or --list, --delete)".into(),
            )
            .into())
        }
    }
    if let Some(n) = &args.name {
        export::check_file_name(n)?;
    }
    let tb = Toolbox::new()?;
    let name = tb.name_for(args.container.as_deref(), &SelectFlags::from(&args.which))?;
    if let Some(what) = &args.delete {
        let what = match (what.as_str(), &args.bin, &args.app) {
            ("", Some(b), _) => b.clone(),
            ("", None, Some(a)) => export::check_app(a)?,
            ("", None, None) => unreachable!("checked above"),
            (w, _, _) => w.to_string(),
        };
        for e in export::find(&dirs, &name, &what)? {
            export::remove(&e)?;
            println!("{}", e.path.display());
            if let Some(icon) = &e.icon {
                remove_icon_unless_used(&home, &dirs, icon)?;
            }
        }
        return Ok(exit::OK);
    }
    let c = tb.find(Some(&name), &SelectFlags::from(&args.which))?;
    let arch = Arch::parse(c.label(toolbox::LABEL_ARCH).unwrap_or_default())?;
    // Foreign containers carry Toolbx's arch label (create sets it exactly
    // when there is an interpreter).
    let native = c.label(toolbox::LABEL_TOOLBOX_ARCH).is_none();
    let suffix = export::suffix(&arch.short_name(), native);
    let mtbx = toolbox::invoked_path();
    let path = match (&args.bin, &args.app) {
        (Some(program), _) => {
            let file = match &args.name {
                Some(n) => n.clone(),
                None => {
                    let n = export::wrapper_name(program, suffix.as_deref())?;
                    refuse_shadowing(&n, dirs[0].as_path())?;
                    n
                }
            };
            export::check_file_name(&file)?;
            in_session(&tb, &name, &args.which, |p| {
                p(&["--executable", program])?;
                if args.sudo {
                    p(&["--sudo"]).map_err(no_sudo)?;
                }
                Ok(String::new())
            })?
            .map_err(|why| ExportError::NotInContainer {
                container: name.clone(),
                what: program.clone(),
                why,
            })?;
            let text = export::wrapper_text(&mtbx, &name, program, args.sudo);
            let item = Item::Bin(program.clone());
            let path = export::install(&dirs[0], &file, &text, 0o755, &name, &item)?;
            if !on_path(&dirs[0]) {
                output::warn(&format!(
                    "{} is not on your PATH: add it to run {file} by name",
                    dirs[0].display()
                ));
            }
            path
        }
        (None, Some(app)) => {
            let id = export::check_app(app)?;
            let file = match &args.name {
                Some(n) if n.ends_with(".desktop") => n.clone(),
                Some(n) => format!("{n}.desktop"),
                None => format!("{id}-{}.desktop", suffix.clone().unwrap_or_else(|| name.clone())),
            };
            export::check_file_name(&file)?;
            let app_dir = args.dir.clone().unwrap_or_else(|| export::default_app_dir(&home));
            let item = Item::App(id.clone());
            export::check_free(&app_dir, &file, &name, &item)?;
            // The entry, whether sudo works when asked for, and the files
            // of the icon the entry names: one session.
            let found = in_session(&tb, &name, &args.which, |probe| {
                let text = export::find_desktop(&id, |path| probe(&["--read", path]))?;
                if args.sudo {
                    probe(&["--sudo"]).map_err(|why| ("sudo".to_string(), no_sudo(why)))?;
                }
                let icons = export::desktop_icon(&text).map(|icon| {
                    let files =
                        probe(&["--icons", &icon]).map(|j| export::icon_files(&j)).unwrap_or_default();
                    (icon, files)
                });
                Ok((text, icons))
            })?;
            let (text, icons) = found.map_err(|(what, why)| ExportError::NotInContainer {
                container: name.clone(),
                what,
                why,
            })?;
            // The icon under a name of mtbx's, when the container has it;
            // a name it lacks stays, for the host's theme to provide.
            let copy = icons.and_then(|(icon, files): (String, Vec<export::IconFile>)| {
                let new = export::icon_copy_name(&name, &icon)?;
                let placed = export::place_icons(&new, &files);
                (!placed.is_empty()).then_some((icon, new, placed))
            });
            if let Some((_, _, placed)) = &copy {
                export::install_icons(&export::default_icon_dir(&home), placed)?;
            }
            let how = export::Rewrite {
                sudo: args.sudo,
                icon: copy.as_ref().map(|(old, new, _)| (old.as_str(), new.as_str())),
            };
            let label = suffix.unwrap_or_else(|| name.clone());
            let rewritten = export::rewrite_desktop(&text, &mtbx, &name, &id, &label, &how)?;
            export::install(&app_dir, &file, &rewritten, 0o644, &name, &item)?
        }
        (None, None) => unreachable!("checked above"),
    };
    println!("{}", path.display());
    Ok(exit::OK)
}

/// What the container's sudo said, as what to do.
fn no_sudo(why: String) -> String {
    format!("{why} (--sudo needs sudo in the container, allowed without a password)")
}

/// Remove mtbx's copy of an icon once no export left uses it.
fn remove_icon_unless_used(home: &Path, dirs: &[PathBuf], icon: &str) -> Result<()> {
    for d in dirs {
        if export::list(d, None)?.iter().any(|e| e.icon.as_deref() == Some(icon)) {
            return Ok(());
        }
    }
    for p in export::remove_icons(&export::default_icon_dir(home), icon)? {
        println!("{}", p.display());
    }
    Ok(())
}

/// A wrapper named like a program on the host's PATH would hide it (or
/// be hidden by it); the user names it with --as instead.
fn refuse_shadowing(name: &str, dir: &Path) -> Result<(), ExportError> {
    match crate::fsutil::find_on_path(name) {
        Some(host) if host.parent() != Some(dir) && export::marker_of(&host).is_none() => {
            Err(ExportError::Shadows { name: name.into(), host })
        }
        _ => Ok(()),
    }
}

fn on_path(dir: &Path) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d == dir))
}

type Probed = Result<String, String>;

/// Run `f` in a session of the container (started when needed, and
/// stopped after when it stops by itself), with a way to run `mtbx
/// container-probe ARGS` in it as the user: its stdout, or what it said
/// on stderr.
fn in_session<T>(
    tb: &Toolbox,
    name: &str,
    which: &SelectArgs,
    f: impl FnOnce(&dyn Fn(&[&str]) -> Probed) -> T,
) -> Result<T> {
    let session = begin_session(tb, name, which)?;
    let user = HostUser::current()?;
    let probe = |args: &[&str]| -> Probed { tb.probe(name, &user, args) };
    let result = f(&probe);
    end_session(tb, name, session);
    Ok(result)
}

fn list(dirs: &[PathBuf], container: Option<&str>, format: Format) -> Result<i32> {
    let mut all: Vec<Exported> = Vec::new();
    for d in dirs {
        all.extend(export::list(d, container)?);
    }
    if format == Format::Json {
        output::print_json(&all)?;
        return Ok(exit::OK);
    }
    if all.is_empty() {
        return Ok(exit::OK);
    }
    let mut t = Table::new(&["FILE", "CONTAINER", "KIND", "EXPORTS"]);
    for e in &all {
        let kind = match e.item {
            Item::Bin(_) => "bin",
            Item::App(_) => "app",
        };
        // The container and item come from the files' markers: escaped.
        t.row(vec![
            crate::text::escaped(&e.path.to_string_lossy()),
            crate::text::escaped(&e.container),
            kind.into(),
            crate::text::escaped(e.item.value()),
        ]);
    }
    print!("{}", t.render(output::color_stdout()));
    Ok(exit::OK)
}

/// `container-probe`, inside the container: the file checks export asks for.
pub(crate) fn container_probe(args: ProbeArgs) -> Result<i32> {
    if let Some(p) = &args.executable {
        export::probe_executable(p)?;
    }
    if let Some(p) = &args.read {
        use std::io::Write;
        let data = export::probe_read(p)?;
        std::io::stdout().write_all(&data)?;
    }
    if let Some(icon) = &args.icons {
        output::print_json(&export::probe_icons(icon)?)?;
    }
    if args.sudo {
        export::probe_sudo()?;
    }
    Ok(exit::OK)
}
