//! The files that tell programs inside where they are: Toolbx's markers,
//! mtbx's /run/mtbx, and the prompt of a foreign container.

use std::path::Path;

use super::InitArgs;
use crate::fsutil::write_atomic;

/// Where mtbx tells programs inside about the container.
pub const RUN_DIR: &str = "/run/mtbx";

/// The prompt script for foreign containers. Debian's and Ubuntu's bash
/// prompts show `$debian_chroot` in parentheses (their ~/.bashrc sets PS1
/// again after the profile, with it); elsewhere the prompt gets a prefix.
/// Named to run after the images' own (Fedora's toolbox.sh sets PS1).
const PROMPT_SCRIPT: &str = r#"# Written by mtbx: this container runs another architecture under QEMU,
# and the prompt says which, so emulated shells stand out.
if [ -n "${MTBX_ARCH-}" ] && [ -n "${PS1-}" ]; then
    case "$PS1" in
        *debian_chroot*) debian_chroot="${debian_chroot:-$MTBX_ARCH}" ;;
        *"[$MTBX_ARCH]"*) ;;
        *) PS1="[$MTBX_ARCH] $PS1" ;;
    esac
fi
"#;

/// The markers programs and profile scripts look for: Toolbx's
/// /run/.toolboxenv and /run/.toolbxenv (the images' prompt and welcome
/// scripts key on them), and mtbx's own /run/mtbx/arch (`arm64`), with
/// /run/mtbx/emulated naming the interpreter of a foreign container, whose
/// prompt then shows the architecture.
pub(super) fn mark(args: &InitArgs) -> std::io::Result<()> {
    mark_in(Path::new("/"), args)
}

fn mark_in(root: &Path, args: &InitArgs) -> std::io::Result<()> {
    for f in ["run/.toolboxenv", "run/.toolbxenv"] {
        std::fs::OpenOptions::new().create(true).append(true).open(root.join(f))?;
    }
    let run = root.join(RUN_DIR.trim_start_matches('/'));
    crate::fsutil::mkdir_all(&run, 0o755)?;
    write_atomic(&run.join("arch"), format!("{}\n", args.arch.short_name()).as_bytes(), 0o644)?;
    // The CPU model, for programs and people inside (`cat /run/mtbx/cpu`).
    match &args.cpu {
        Some(model) => write_atomic(&run.join("cpu"), format!("{model}\n").as_bytes(), 0o644)?,
        None => {
            let _ = std::fs::remove_file(run.join("cpu"));
        }
    }
    // The container's own home, for container-exec (a snapshot's copy
    // of this directory must not give another container that home).
    match args.own_home {
        true => write_atomic(&run.join("home"), format!("{}\n", args.user.home.display()).as_bytes(), 0o644)?,
        false => {
            let _ = std::fs::remove_file(run.join("home"));
        }
    }
    let emulated = run.join("emulated");
    let prompt = root.join("etc/profile.d/zz-mtbx-arch.sh");
    match &args.qemu {
        Some(q) => {
            write_atomic(&emulated, format!("{}\n", q.display()).as_bytes(), 0o644)?;
            if prompt.parent().is_some_and(Path::is_dir) {
                write_atomic(&prompt, PROMPT_SCRIPT.as_bytes(), 0o644)?;
            }
        }
        None => {
            let _ = std::fs::remove_file(&emulated);
        }
    }
    Ok(())
}

/// The container's own home, when create gave it one: what
/// init-container recorded under `root` (at most a path's length, from a
/// regular file).
pub fn own_home(root: &Path) -> Option<std::path::PathBuf> {
    use std::io::Read;
    let file = root.join(RUN_DIR.trim_start_matches('/')).join("home");
    let mut text = String::new();
    crate::sys::files::open_regular(&file, false).ok()?.take(4097).read_to_string(&mut text).ok()?;
    let path = Path::new(text.strip_suffix('\n')?);
    (path.is_absolute() && text.len() <= 4096).then(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emu::arch::Arch;

    #[test]
    fn markers_and_the_prompt_of_a_foreign_container() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("run")).unwrap();
        std::fs::create_dir_all(root.path().join("etc/profile.d")).unwrap();
        let args = InitArgs {
            arch: Arch::parse("arm64").unwrap(),
            user: crate::toolbox::HostUser::example("ann", 1000, 1000, "/home/ann", "/bin/sh"),
            cpu: None,
            qemu: Some("/run/mtbx-host/qemu-aarch64".into()),
            own_home: false,
        };
        mark_in(root.path(), &args).unwrap();
        let r = root.path();
        assert!(r.join("run/.toolboxenv").is_file() && r.join("run/.toolbxenv").is_file());
        assert_eq!(std::fs::read_to_string(r.join("run/mtbx/arch")).unwrap(), "arm64\n");
        assert!(r.join("run/mtbx/emulated").is_file());
        let script = r.join("etc/profile.d/zz-mtbx-arch.sh");
        // The script as sh runs it: a prefix, or Debian's chroot marker.
        let run = |ps1: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(". {}; printf '%s|%s' \"$PS1\" \"${{debian_chroot-}}\"", script.display()))
                .env("MTBX_ARCH", "arm64")
                .env("PS1", ps1)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(run("$ "), "[arm64] $ |");
        assert_eq!(
            run("${debian_chroot:+($debian_chroot)}\\u$ "),
            "${debian_chroot:+($debian_chroot)}\\u$ |arm64"
        );
        assert_eq!(own_home(r), None);
        let own = InitArgs { own_home: true, ..args.clone() };
        mark_in(root.path(), &own).unwrap();
        assert_eq!(own_home(r).as_deref(), Some(Path::new("/home/ann")));
        let native = InitArgs { arch: Arch::host(), qemu: None, ..args };
        mark_in(root.path(), &native).unwrap();
        assert!(!r.join("run/mtbx/emulated").exists());
        assert_eq!(own_home(r), None, "a container without its own home (a snapshot's copy is removed)");
    }
}
