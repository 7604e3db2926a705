//! `toolbox` mode through a link named `toolbox`, as a Toolbx user puts
//! mtbx on PATH: Toolbx's words, streams and exit codes for what needs no
//! container engine, and mtbx's own voice when called `mtbx`.

use std::process::{Command, Output};

use common::{mtbx_bin, text};

/// `toolbox ARGS...` through a symlink to the built binary, outside any
/// container, with no toolbox.conf of the user's.
fn toolbox(args: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("toolbox");
    std::os::unix::fs::symlink(mtbx_bin(), &link).unwrap();
    let out = Command::new(&link)
        .args(args)
        .env("XDG_CONFIG_HOME", dir.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (out, dir)
}

/// stderr's lines, and that stdout was empty and the exit code 1.
fn failure(args: &[&str]) -> Vec<String> {
    let (out, _dir) = toolbox(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "{args:?}: nothing on stdout");
    text(&out.stderr).lines().map(str::to_string).collect()
}

#[test]
fn version_has_toolbx_shape() {
    let (out, _dir) = toolbox(&["--version"]);
    assert!(out.status.success());
    let v = text(&out.stdout);
    let rest = v.strip_prefix("toolbox version 0.").unwrap_or_else(|| panic!("{v}"));
    assert!(rest.trim_end().split('.').all(|n| n.parse::<u32>().is_ok_and(|n| n > 0)), "{v}");
    assert!(text(&out.stderr).is_empty());
    // Called mtbx, it keeps its own voice.
    let out = common::mtbx(&["--version"]).output().unwrap();
    assert!(text(&out.stdout).starts_with("mtbx "), "{}", text(&out.stdout));
}

#[test]
fn usage_errors_are_cobras_words() {
    let hint = "Run 'toolbox --help' for usage.";
    let missing = failure(&[]);
    assert_eq!(missing[0], "Error: missing command");
    assert_eq!(missing[2], "create    Create a new Toolbx container");
    assert_eq!(missing.last().unwrap(), hint);
    assert_eq!(missing.len(), 7);
    assert_eq!(failure(&["foo"]), ["Error: unknown command \"foo\" for \"toolbox\"", hint]);
    for cmd in ["", "create", "enter", "help", "init-container", "list", "rm", "rmi", "run", "completion"] {
        let mut args: Vec<&str> = cmd.split_whitespace().collect();
        args.push("--foo");
        assert_eq!(failure(&args), ["Error: unknown flag: --foo", hint], "{cmd}");
    }
    assert_eq!(failure(&["list", "-x"]), ["Error: unknown shorthand flag: 'x' in -x", hint]);
    assert_eq!(failure(&["completion"]), ["Error: accepts 1 arg(s), received 0", hint]);
    assert_eq!(failure(&["completion", "bash", "fish"]), ["Error: accepts 1 arg(s), received 2", hint]);
    assert_eq!(
        failure(&["completion", "powershell"]),
        ["Error: invalid argument \"powershell\" for \"toolbox completion\"", hint]
    );
    assert_eq!(failure(&["run"]), ["Error: missing argument for \"run\"", hint]);
    assert_eq!(failure(&["rm"]), ["Error: missing argument for \"rm\"", hint]);
    assert_eq!(failure(&["rmi"]), ["Error: missing argument for \"rmi\"", hint]);
}

#[test]
fn create_checks_its_options_before_anything_else() {
    let hint = "Run 'toolbox --help' for usage.";
    assert_eq!(
        failure(&["create", "--distro", "fedora", "--image", "x"]),
        ["Error: options --distro and --image cannot be used together", hint]
    );
    assert_eq!(
        failure(&["create", "--image", "x", "--release", "1"]),
        ["Error: options --image and --release cannot be used together", hint]
    );
    assert_eq!(
        failure(&["create", "--authfile", "/nonexistent/auth.json"]),
        [
            "Error: file /nonexistent/auth.json not found",
            "'podman login' can be used to create the file.",
            hint
        ]
    );
    let regexp = "Container names must match '[a-zA-Z0-9][a-zA-Z0-9_.-]*'.";
    assert_eq!(
        failure(&["-y", "create", "ßpeci@l.N@m€"]),
        ["Error: invalid argument for 'CONTAINER'", regexp, hint]
    );
    assert_eq!(
        failure(&["create", "-c", "ßpeci@l.N@m€"]),
        ["Error: invalid argument for '--container'", regexp, hint]
    );
    assert_eq!(
        failure(&["create", "--image", "ßpeci@l.N@m€"]),
        [
            "Error: invalid argument for '--image'",
            "Container name ßpeci@l.N@m€ generated from image is invalid.",
            regexp,
            hint
        ]
    );
    assert_eq!(
        failure(&["create", "--distro", "foo"]),
        ["Error: invalid argument for '--distro'", "Distribution foo is unsupported.", hint]
    );
    for (distro, release, why) in [
        ("fedora", "foo", "The release must be a positive integer."),
        // A value that looks like a flag is still the value, as in cobra.
        ("fedora", "-3", "The release must be a positive integer."),
        ("rhel", "-2.1", "The release must be a positive number."),
        ("rhel", "8", "The release must be in the '<major>.<minor>' format."),
        ("ubuntu", "20.4", "The release month must have two digits."),
        ("arch", "1", "The release must be 'latest'."),
    ] {
        assert_eq!(
            failure(&["create", "--distro", distro, "--release", release]),
            ["Error: invalid argument for '--release'", why, hint],
            "{distro} {release}"
        );
        assert_eq!(
            failure(&["run", "-d", distro, "-r", release, "true"]),
            ["Error: invalid argument for '--release'", why, hint],
            "run {distro} {release}"
        );
    }
    assert_eq!(failure(&["create", "-a", "vax"])[0], "Error: invalid argument for '--arch'");
}

#[test]
fn toolbox_conf_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("containers")).unwrap();
    std::fs::write(dir.path().join("containers/toolbox.conf"), "[general]\ndistro = \n").unwrap();
    let link = dir.path().join("toolbox");
    std::os::unix::fs::symlink(mtbx_bin(), &link).unwrap();
    let out = Command::new(&link).args(["create"]).env("XDG_CONFIG_HOME", dir.path()).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("Error: {}:2: ", dir.path().join("containers/toolbox.conf").display())),
        "{err}"
    );
}

#[test]
fn completion_scripts_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let (out, _dir) = toolbox(&["completion", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("toolbox"), "{shell}");
    }
}

#[test]
fn help_without_man_is_toolbxs_short_text() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("toolbox");
    std::os::unix::fs::symlink(mtbx_bin(), &link).unwrap();
    for args in [&["help"][..], &["--help"], &["create", "--help"]] {
        let out = Command::new(&link).args(args).env("PATH", "/nonexistent").output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
        assert_eq!(lines[0], "toolbox - Tool for interactive command line environments on Linux");
        assert_eq!(lines[2], "Common commands are:");
        assert_eq!(lines[7], "Go to https://containertoolbx.org/ for further information.");
        assert_eq!(lines.len(), 8);
    }
}

#[test]
fn log_podman_shows_podmans_own_log() {
    if std::process::Command::new("podman").arg("--version").output().is_err() {
        return common::skip("log_podman_shows_podmans_own_log", "podman not installed");
    }
    let (out, _dir) = toolbox(&["--log-podman", "--log-level", "debug", "list"]);
    assert!(text(&out.stderr).contains("level=debug"), "podman's debug log: {}", text(&out.stderr));
    let (out, _dir) = toolbox(&["list"]);
    assert!(!text(&out.stderr).contains("level=debug"), "{}", text(&out.stderr));
}
