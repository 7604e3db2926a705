//! mtbx installed as people install tools, held against Debian's own
//! dpkg and update-alternatives: the package scripts/deb.sh builds is
//! installed on this machine, used, and purged without a trace, leaving
//! Debian's podman-toolbox (/usr/bin/toolbox, a plain file) as it was
//! when it is here; in a Debian tree without it, `toolbox` is mtbx
//! through the alternative. And scripts/install.sh into a prefix, which
//! uninstall.sh leaves as it found it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{skip, text};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn static_mtbx(test: &str) -> Option<PathBuf> {
    let p = std::env::var_os("MTBX_STATIC_BIN").map(PathBuf::from).filter(|p| p.is_file());
    if p.is_none() {
        skip(test, "needs the static mtbx build in MTBX_STATIC_BIN (scripts/test.sh sets it)");
    }
    p
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

fn ok(c: &mut Command) -> String {
    let out = run(c);
    assert!(out.status.success(), "{c:?}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// dpkg, waiting while another dpkg or apt holds its lock (the machine is
/// shared).
fn dpkg(args: &[&str]) -> Output {
    loop {
        let out = run(Command::new("dpkg").args(args));
        let err = text(&out.stderr);
        if out.status.success() || !(err.contains("lock") && err.contains("dpkg")) {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `scripts/deb.sh --bin BIN OUT`: the package's path.
fn build(bin: &Path, out: &Path) -> PathBuf {
    let deb = ok(Command::new("bash").arg(repo().join("scripts/deb.sh")).arg("--bin").arg(bin).arg(out));
    PathBuf::from(deb.trim())
}

/// What a path is, to tell it was left as it was: its kind, link
/// target, content and inode.
fn state(p: &Path) -> Option<(bool, Option<PathBuf>, Vec<u8>, u64)> {
    let m = std::fs::symlink_metadata(p).ok()?;
    let link = std::fs::read_link(p).ok();
    let content = if m.is_file() { std::fs::read(p).unwrap() } else { Vec::new() };
    Some((m.is_file(), link, content, m.ino()))
}

fn needs_root_and_dpkg(test: &str) -> bool {
    if !common::podman::is_root() {
        skip(test, "needs root to install a Debian package");
        return false;
    }
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        skip(test, "dpkg-deb not installed: the package is built on Debian");
        return false;
    }
    true
}

#[test]
fn the_debian_package_installs_works_and_purges_without_a_trace() {
    let test = "the_debian_package_installs_works_and_purges_without_a_trace";
    let Some(bin) = static_mtbx(test) else { return };
    if !needs_root_and_dpkg(test) {
        return;
    }
    if run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "mtbx"])).stdout.ends_with(b" installed") {
        return skip(test, "a package mtbx is installed on this machine: the test would remove it");
    }
    let work = tempfile::tempdir().unwrap();
    let deb = build(&bin, &work.path().join("a"));
    // Deterministic: the same binary gives the same bytes.
    let again = build(&bin, &work.path().join("b"));
    assert_eq!(std::fs::read(&deb).unwrap(), std::fs::read(&again).unwrap(), "two builds differ");

    let field = |f: &str| ok(Command::new("dpkg-deb").arg("--field").arg(&deb).arg(f)).trim().to_string();
    let arch = ok(Command::new("dpkg").arg("--print-architecture")).trim().to_string();
    assert_eq!(field("Package"), "mtbx");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Architecture"), arch);
    assert_eq!(field("Depends"), "podman");
    assert_eq!(field("Recommends"), "qemu-user-static, uidmap");
    let contents = ok(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    assert!(contents.lines().all(|l| l.contains(" root/root ")), "{contents}");
    assert!(!contents.contains("./usr/bin/toolbox"), "toolbox is never a file of the package");

    let toolbox = Path::new("/usr/bin/toolbox");
    let toolbox_before = state(toolbox);
    let toolbx_installed = toolbox_before.as_ref().is_some_and(|s| s.0);
    let alternative_before = run(Command::new("update-alternatives").args(["--query", "toolbox"]));

    let out = dpkg(&["--install", &deb.to_string_lossy()]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    if toolbx_installed {
        // update-alternatives' own refusal, said at install.
        assert!(text(&out.stderr).contains("not replacing /usr/bin/toolbox"), "{}", text(&out.stderr));
    }
    let installed: Vec<PathBuf> = ok(Command::new("dpkg").args(["--listfiles", "mtbx"]))
        .lines()
        .map(PathBuf::from)
        .filter(|p| !p.is_dir())
        .collect();
    assert!(installed.len() > 20, "{installed:?}");

    // Used as installed.
    let version = format!("mtbx {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(ok(Command::new("/usr/bin/mtbx").arg("--version")), version);
    for page in ["mtbx", "mtbx-create", "mtbx-export"] {
        let file = format!("/usr/share/man/man1/{page}.1.gz");
        assert!(Path::new(&file).is_file(), "{file}");
        if Path::new("/usr/bin/man").exists() {
            assert_eq!(ok(Command::new("man").args(["-M", "/usr/share/man", "-w", page])).trim(), file);
        }
    }
    for (file, path) in [
        ("/usr/share/bash-completion/completions/mtbx", "\"/usr/bin/mtbx\""),
        ("/usr/share/zsh/vendor-completions/_mtbx", "/usr/bin/mtbx"),
        ("/usr/share/fish/vendor_completions.d/mtbx.fish", "/usr/bin/mtbx"),
    ] {
        let script = std::fs::read_to_string(file).unwrap();
        assert!(script.contains(path), "{file}: {script}");
    }
    // bash's completion, as bash-completion runs it: the commands.
    let completed = ok(Command::new("bash").arg("-c").arg(
        "source /usr/share/bash-completion/completions/mtbx
         COMP_WORDS=(mtbx exp); COMP_CWORD=1; COMP_TYPE=9
         _clap_complete_mtbx mtbx exp mtbx; printf '%s\\n' \"${COMPREPLY[@]}\"",
    ));
    assert!(completed.lines().any(|l| l.trim() == "export"), "{completed}");
    // toolbox: the alternative is registered; the program it names is
    // mtbx's Toolbx mode.
    let query = ok(Command::new("update-alternatives").args(["--query", "toolbox"]));
    assert!(query.contains("Alternative: /usr/lib/mtbx/toolbox\nPriority: 20"), "{query}");
    let mode = ok(Command::new("/usr/lib/mtbx/toolbox").arg("--version"));
    assert!(mode.starts_with("toolbox version "), "{mode}");
    if toolbx_installed {
        assert_eq!(state(toolbox), toolbox_before, "podman-toolbox's /usr/bin/toolbox is untouched");
        assert!(
            state(Path::new("/usr/share/man/man1/toolbox.1.gz")).is_some_and(|s| s.0),
            "and its manual page"
        );
    } else if toolbox_before.is_none() {
        assert_eq!(std::fs::canonicalize(toolbox).unwrap(), Path::new("/usr/bin/mtbx"));
        assert_eq!(ok(Command::new(toolbox).arg("--version")), mode);
    }

    let out = dpkg(&["--purge", "mtbx"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!run(Command::new("dpkg").args(["--listfiles", "mtbx"])).status.success(), "dpkg forgot it");
    let left: Vec<&PathBuf> = installed.iter().filter(|p| std::fs::symlink_metadata(p).is_ok()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    for gone in ["/usr/lib/mtbx", "/usr/share/doc/mtbx", "/etc/alternatives/toolbox"] {
        assert!(std::fs::symlink_metadata(gone).is_err(), "{gone} is still there");
    }
    let alternative_after = run(Command::new("update-alternatives").args(["--query", "toolbox"]));
    assert_eq!(
        (alternative_after.status.success(), text(&alternative_after.stdout)),
        (alternative_before.status.success(), text(&alternative_before.stdout)),
        "the alternative is gone"
    );
    assert_eq!(state(toolbox), toolbox_before, "/usr/bin/toolbox as before");
}

/// A Debian tree without podman-toolbox (the test's bookworm root file
/// system): there `toolbox` is mtbx, with its manual page, through the
/// alternative; purged, nothing of it is left.
#[test]
fn without_podman_toolbox_the_alternative_makes_toolbox_mtbx() {
    let test = "without_podman_toolbox_the_alternative_makes_toolbox_mtbx";
    let Some(bin) = static_mtbx(test) else { return };
    if !needs_root_and_dpkg(test) {
        return;
    }
    let arch = ok(Command::new("dpkg").arg("--print-architecture")).trim().to_string();
    let Some(tar) = common::debian::rootfs(test, &arch) else { return };
    let work = tempfile::tempdir().unwrap();
    let deb = build(&bin, &work.path().join("out"));
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    ok(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&tree).arg("--exclude=./dev/*"));
    assert!(!tree.join("usr/bin/toolbox").exists());
    let root = format!("--root={}", tree.display());
    // podman is not in the tree: the dependency alone is waived.
    let out = dpkg(&[&root, "--force-depends", "--install", &deb.to_string_lossy()]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let chroot = |args: &[&str]| ok(Command::new("chroot").arg(&tree).args(args));
    assert_eq!(chroot(&["readlink", "-f", "/usr/bin/toolbox"]).trim(), "/usr/bin/mtbx");
    let version = chroot(&["toolbox", "--version"]);
    assert!(version.starts_with("toolbox version "), "{version}");
    assert_eq!(
        chroot(&["readlink", "-f", "/usr/share/man/man1/toolbox.1.gz"]).trim(),
        "/usr/lib/mtbx/man/toolbox.1.gz"
    );
    let completion = chroot(&["cat", "/usr/share/bash-completion/completions/toolbox"]);
    assert!(completion.contains("\"/usr/bin/toolbox\""), "{completion}");

    let out = dpkg(&[&root, "--purge", "mtbx"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    for gone in [
        "usr/bin/toolbox",
        "usr/bin/mtbx",
        "usr/lib/mtbx",
        "etc/alternatives/toolbox",
        "var/lib/dpkg/alternatives/toolbox",
        "usr/share/man/man1/toolbox.1.gz",
        "usr/share/bash-completion/completions/toolbox",
    ] {
        assert!(std::fs::symlink_metadata(tree.join(gone)).is_err(), "{gone} is still there");
    }
}

/// Every path under `dir`, relative, sorted.
fn tree_of(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn install_sh_installs_into_a_prefix_and_uninstall_sh_leaves_it_as_it_was() {
    let test = "install_sh_installs_into_a_prefix_and_uninstall_sh_leaves_it_as_it_was";
    let Some(bin) = static_mtbx(test) else { return };
    let work = tempfile::tempdir().unwrap();
    let install = |args: &[&str], prefix: &Path| {
        run(Command::new("bash")
            .arg(repo().join("scripts/install.sh"))
            .arg("--bin")
            .arg(&bin)
            .args(args)
            .arg(prefix))
    };
    let uninstall =
        |prefix: &Path| ok(Command::new("bash").arg(repo().join("scripts/uninstall.sh")).arg(prefix));

    let prefix = work.path().join("prefix");
    std::fs::create_dir(&prefix).unwrap();
    let out = install(&["--toolbox"], &prefix);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let version = format!("mtbx {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(ok(Command::new(prefix.join("bin/mtbx")).arg("--version")), version);
    let mode = ok(Command::new(prefix.join("bin/toolbox")).arg("--version"));
    assert!(mode.starts_with("toolbox version "), "{mode}");
    let mtbx = prefix.join("bin/mtbx").display().to_string();
    for (file, program) in [
        ("share/bash-completion/completions/mtbx", &mtbx),
        ("share/zsh/site-functions/_mtbx", &mtbx),
        ("share/fish/vendor_completions.d/mtbx.fish", &mtbx),
        ("share/fish/vendor_completions.d/toolbox.fish", &prefix.join("bin/toolbox").display().to_string()),
    ] {
        let script = std::fs::read_to_string(prefix.join(file)).unwrap();
        assert!(script.contains(program.as_str()), "{file}: {script}");
    }
    for page in ["mtbx.1", "mtbx-export.1", "toolbox.1"] {
        assert!(prefix.join("share/man/man1").join(page).is_file(), "{page}");
    }
    // Again over itself, then gone: the prefix is empty again.
    assert!(install(&["--toolbox"], &prefix).status.success());
    uninstall(&prefix);
    assert_eq!(tree_of(&prefix), Vec::<String>::new());

    // A toolbox that is not mtbx's is never replaced without --force, and
    // nothing is written when it is refused; without --toolbox it stays.
    let other = work.path().join("other");
    std::fs::create_dir_all(other.join("bin")).unwrap();
    std::fs::write(other.join("bin/toolbox"), "#!/bin/sh\necho Toolbx\n").unwrap();
    let before = tree_of(&other);
    let out = install(&["--toolbox"], &other);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--force"), "{}", text(&out.stderr));
    assert_eq!(tree_of(&other), before, "nothing written");
    assert_eq!(std::fs::read_to_string(other.join("bin/toolbox")).unwrap(), "#!/bin/sh\necho Toolbx\n");
    assert!(install(&[], &other).status.success());
    assert_eq!(std::fs::read_to_string(other.join("bin/toolbox")).unwrap(), "#!/bin/sh\necho Toolbx\n");
    assert!(!other.join("share/man/man1/toolbox.1").exists(), "no toolbox pages without --toolbox");
    uninstall(&other);
    assert_eq!(tree_of(&other), before);
    assert!(install(&["--toolbox", "--force"], &other).status.success());
    assert_eq!(std::fs::read_link(other.join("bin/toolbox")).unwrap(), Path::new("mtbx"));
    uninstall(&other);
    assert_eq!(tree_of(&other), ["bin"], "the directory that was there stays");
}
