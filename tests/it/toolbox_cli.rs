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
    for cmd in ["create", "enter", "run", "list", "rm", "rmi", "pull", "images", "inspect"] {
        assert!(help.contains(&format!("  {cmd} ")), "{cmd} in --help: {help}");
    }
    assert!(!help.contains("init-container") && !help.contains("container-exec"), "{help}");
}
