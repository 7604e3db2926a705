//! The toolbox commands' own errors, where no container engine is needed
//! to see them.

use common::{mtbx, text};

#[test]
fn without_podman_every_container_command_says_what_to_install() {
    for args in [&["list"][..], &["create", "--arch", "arm64"], &["run", "-c", "x", "true"], &["rm", "x"]] {
        let out = mtbx(args).env("PATH", "/nonexistent").output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("podman is not installed") && err.contains("install podman"), "{args:?}: {err}");
    }
}

#[test]
fn internal_commands_stay_out_of_help() {
    let out = mtbx(&["--help"]).output().unwrap();
    let help = text(&out.stdout);
    for cmd in [
        "create", "enter", "run", "list", "rm", "rmi", "stop", "export", "pull", "images", "inspect",
        "upgrade",
    ] {
        assert!(help.contains(&format!("  {cmd} ")), "{cmd} in --help: {help}");
    }
    assert!(!help.contains("init-container") && !help.contains("container-exec"), "{help}");
    assert!(!help.contains("container-probe") && !help.contains("container-provision"), "{help}");
}

/// export, stop, upgrade and create's provisioning refuse bad input
/// with exit 2 and one line, before asking podman anything (none is on
/// PATH here).
#[test]
fn export_stop_upgrade_and_provisioning_refuse_bad_input_before_podman() {
    for (args, says) in [
        (&["export"][..], "--bin PATH or --app APP"),
        (&["export", "-c", "x", "--bin", "gcc"], "absolute path"),
        (&["export", "-c", "x", "--bin", "/usr/bin/gcc", "--as", "../gcc"], "one file name"),
        (&["export", "-c", "x", "--app", "../evil"], "desktop file id"),
        (&["export", "-c", "x", "--delete"], "--delete needs what to remove"),
        (&["export", "--list", "--bin", "/bin/sh"], "cannot be used with"),
        (&["stop"], "or pass --all"),
        (&["stop", "--arch", "arm64"], "--all"),
        (&["upgrade"], "or pass --all"),
        (&["upgrade", "--all", "x"], "cannot be used with"),
        (&["create", "--packages=hello,-oAPT::Get::x=1"], "invalid package name '-oAPT::Get::x=1'"),
        (&["create", "--packages", "hello,,vim"], "invalid package name ''"),
        (&["create", "--init-hook", " "], "--init-hook is empty"),
    ] {
        let out = mtbx(args).env("PATH", "/nonexistent").output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says) && !err.contains("podman"), "{args:?}: {err}");
    }
    // --list reads directories only: nothing exported, nothing printed.
    let dir = tempfile::tempdir().unwrap();
    let out = mtbx(&["export", "--list", "--dir", &dir.path().display().to_string()])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn flags_as_a_toolbx_user_types_them() {
    // -a is --arch on create, enter and run; list takes -c and -i.
    for args in [
        &["create", "-a", "arm64", "--help"][..],
        &["enter", "-a", "s390x", "--help"],
        &["list", "-c", "-i", "--help"],
    ] {
        let out = mtbx(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    // An unknown flag before the command is refused, not run; after `--`
    // it is the command.
    let out = mtbx(&["run", "-c", "x", "--foo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("'--foo'"), "{}", text(&out.stderr));
    let out = mtbx(&["run", "-c", "x", "--", "--foo"]).env("PATH", "/nonexistent").output().unwrap();
    assert!(text(&out.stderr).contains("podman is not installed"), "{}", text(&out.stderr));
}

#[test]
fn completion_and_help_of_mtbx() {
    for shell in ["bash", "zsh", "fish"] {
        let out = mtbx(&["completion", shell]).output().unwrap();
        assert!(out.status.success() && text(&out.stdout).contains("mtbx"), "{shell}");
    }
    let out = mtbx(&["completion", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Candidates come from the binary itself: every architecture alias.
    let out = mtbx(&["--", "mtbx", "create", "--arch", "aarc"])
        .env("MTBX_COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", "3")
        .env("_CLAP_COMPLETE_COMP_TYPE", "9")
        .env("_CLAP_COMPLETE_SPACE", "true")
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("aarch64"), "{}{}", text(&out.stdout), text(&out.stderr));
    // Without man(1), help is the command's long help.
    let out = mtbx(&["help", "create"]).env("PATH", "/nonexistent").output().unwrap();
    assert!(out.status.success() && text(&out.stdout).contains("--arch"), "{}", text(&out.stderr));
}

#[test]
fn a_container_name_too_long_for_a_directory_is_refused_before_anything() {
    let test = "a_container_name_too_long_for_a_directory_is_refused_before_anything";
    if std::process::Command::new("podman").arg("--version").output().is_err() {
        return common::skip(test, "podman not installed");
    }
    let name = "a".repeat(300);
    let out = mtbx(&["create", "--image", "localhost/none:1", &name]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("at most 255 characters"), "{err}");
    let odd = "bad\nname";
    let out = mtbx(&["create", "--image", "localhost/none:1", odd]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(r"'bad\nname'") && err.lines().count() == 1, "{err}");
}

/// `mtbx ... | head`: a reader that has gone is no error. Every output
/// path (println!, print!, JSON written to stdout, clap's help) ends
/// quietly with 0, under both names; stdout here is a pipe whose read end
/// is closed before mtbx starts, so every write meets EPIPE.
#[test]
fn a_reader_that_leaves_ends_the_command_quietly() {
    let toolbox_dir = tempfile::tempdir().unwrap();
    let toolbox = toolbox_dir.path().join("toolbox");
    std::os::unix::fs::symlink(common::mtbx_bin(), &toolbox).unwrap();
    let cases: &[(&std::path::Path, &[&str])] = &[
        (&common::mtbx_bin(), &["arch", "list"]),
        (&common::mtbx_bin(), &["arch", "list", "--format", "json"]),
        (&common::mtbx_bin(), &["completion", "bash"]),
        (&common::mtbx_bin(), &["--help"]),
        (&toolbox, &["completion", "bash"]),
    ];
    for (bin, args) in cases {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(bin)
            .args(*args)
            .env("MANPAGER", "cat")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{bin:?} {args:?}: {err}");
        assert_eq!(err, "", "{bin:?} {args:?}");
    }
}

/// create's --home, --volume, --env and --device, clone's and snapshot's
/// names: what would break the toolbox is refused with exit 2 and one
/// line, before podman is asked anything (none is on PATH here) and
/// before anything is made.
#[test]
fn box_options_that_would_break_the_toolbox_are_refused_before_podman() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().display().to_string();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let made = t.path().join("made/home");
    let vol = |dst: &str| format!("{src}:{dst}");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--volume".into(), vol("/run/mtbx-host")], "/run/mtbx-host"),
        (vec!["--volume".into(), vol("/run/mtbx-stamp/x")], "/run/mtbx-stamp"),
        (vec!["--volume".into(), vol("/run/host")], "/run/host"),
        (vec!["--volume".into(), vol("/dev")], "/dev"),
        (vec!["--volume".into(), vol("/proc/x")], "/proc"),
        (vec!["--volume".into(), vol("/sys")], "/sys"),
        (vec!["--volume".into(), vol("/usr/bin/toolbox")], "/usr/bin/toolbox"),
        (vec!["--volume".into(), vol("/usr")], "/usr/bin/toolbox"),
        (vec!["--volume".into(), vol("/")], "/"),
        (vec!["--volume".into(), vol(&home)], "choose another path"),
        (vec!["--volume".into(), format!("relative:/x")], "not an absolute path"),
        (vec!["--volume".into(), format!("{src}/missing:/x")], "does not exist"),
        (vec!["--volume".into(), vol("/x:Z")], "U, z and Z"),
        (vec!["--env".into(), "MTBX_ARCH=x".into()], "mtbx sets MTBX_ARCH"),
        (vec!["--env".into(), "TOOLBOX_PATH=/x".into()], "mtbx sets TOOLBOX_PATH"),
        (vec!["--env".into(), "HOME=/x".into()], "--home DIR"),
        (vec!["--env".into(), "LANG=C".into()], "pass LANG"),
        (vec!["--env".into(), "NOVALUE".into()], "NAME=VALUE"),
        (vec!["--device".into(), "/dev/nonexistent-mtbx".into()], "does not exist"),
        (vec!["--device".into(), src.clone()], "not a device node"),
        (vec!["--device".into(), "/dev/null:/dev/other".into()], "/dev"),
        (vec!["--home".into(), home.clone()], "your home already"),
        (vec!["--home".into(), "/run/host/box".into()], "/run/host"),
        (
            vec![
                "--home".into(),
                made.display().to_string(),
                "--volume".into(),
                vol(&made.display().to_string()),
            ],
            "choose another path",
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["create", "--arch", "arm64"];
        all.extend(args.iter().map(String::as_str));
        let out = mtbx(&all).env("PATH", "/nonexistent").output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says) && !err.contains("podman"), "{args:?}: {err}");
    }
    assert!(!t.path().join("made").exists(), "a refused create makes no home");
    for (args, says) in [
        (&["clone", "box", "a b"][..], "invalid container name"),
        (&["snapshot", "box", ".tag"], "not an image tag"),
        (&["snapshot", "box", "a:b"], "not an image tag"),
    ] {
        let out = mtbx(args).env("PATH", "/nonexistent").output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says) && !err.contains("podman"), "{args:?}: {err}");
    }
}
