//! The hosts people have: login umasks (0002 on Debian 13 and Fedora, 0077
//! for the careful), no XDG_RUNTIME_DIR (`su -`, cron: the rootless
//! environments here never set it), one toolbox.conf read alike by `mtbx`
//! and `toolbox`, images already in the store whose config names their
//! architecture, and `enter` fed by a pipe. Real podman, real QEMU, the
//! real registry; rootful and as the rootless test user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::podman::PodmanEnv;
use common::text;

use crate::toolbox::Setup;

/// `mtbx ARGS` in `s` under `umask`: wrapped in a shell that sets it, so
/// rootful commands get it as well as the test user's.
fn under_umask(s: &Setup, umask: u32, program: &Path, args: &[&str]) -> Command {
    let script = format!("umask {umask:04o} && exec \"$@\"");
    let mut all = vec!["-c", script.as_str(), "sh", program.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut c = s.env.command(Path::new("sh"), &all);
    match &s.env.user {
        Some(u) => c.current_dir(&u.home),
        None => c.current_dir(mtbx::toolbox::HostUser::current().unwrap().home),
    };
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// A directory the test user can read and write, for its config files.
fn user_dir(s: &Setup, name: &str) -> PathBuf {
    let d = s.env.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    if let Some(u) = &s.env.user {
        std::os::unix::fs::chown(&d, Some(u.uid), Some(u.gid)).unwrap();
    }
    d
}

/// A `toolbox` link to the static mtbx, reachable by the test user.
fn toolbox_link(s: &Setup) -> PathBuf {
    let dir = user_dir(s, "bin");
    let link = dir.join("toolbox");
    if !link.exists() {
        std::os::unix::fs::symlink(&s.mtbx, &link).unwrap();
    }
    link
}

/// create, run, enter from a pipe, stop and start again, rm: every step
/// under `umask`, and what mtbx made for the container has the modes it
/// means.
fn every_step_under(test: &str, rootless: bool, umask: u32) {
    let s = match rootless {
        true => Setup::with_env(test, PodmanEnv::rootless_with_umask(test, umask)),
        false => Setup::with_env(test, PodmanEnv::rootful(test)),
    };
    let Some(s) = s else { return };
    let run = |args: &[&str]| under_umask(&s, umask, &s.mtbx, args).output().unwrap();
    let name =
        ok(run(&["create", "-y", "--tls-verify=false", "--image", &s.image, "--arch", "arm64"]), "create");
    let name = name.trim();
    assert_eq!(ok(run(&["run", "-c", name, "uname", "-m"]), "run").trim(), "aarch64");
    // The readiness directory is the container's and its user's alone.
    let stamp_dir = readiness_dir(&s, name);
    let mode = std::fs::metadata(&stamp_dir).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o755, "{}", stamp_dir.display());
    // `enter` with its input from a pipe, under both names: no terminal,
    // no escape sequence, and the shell sees the end of its input.
    for program in [s.mtbx.clone(), toolbox_link(&s)] {
        let mut child = under_umask(&s, umask, &program, &["enter", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"echo piped-$(uname -m)\n").unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{program:?} enter: {stdout}{}", text(&out.stderr));
        assert_eq!(stdout, "piped-aarch64\n", "{program:?} enter: no terminal, no OSC 777: {stdout:?}");
    }
    // Stopped, then started again by the next run (the wait for readiness).
    ok(run(&["stop", name]), "stop");
    assert_eq!(ok(run(&["run", "-c", name, "echo", "again"]), "run after stop").trim(), "again");
    ok(run(&["rm", "--force", name]), "rm");
    assert!(!s.env.podman(&["container", "exists", name]).status().unwrap().success());
}

/// The readiness directory of `name`, as the user running mtbx in `s`
/// has it (no XDG_RUNTIME_DIR there: /tmp/mtbx-UID for the test user).
fn readiness_dir(s: &Setup, name: &str) -> PathBuf {
    match &s.env.user {
        Some(u) => PathBuf::from(format!("/tmp/mtbx-{}/{name}", u.uid)),
        None => mtbx::toolbox::stamp_dir(name),
    }
}

#[test]
fn rootless_login_umask_0002_creates_runs_enters_stops_and_removes() {
    every_step_under("rootless_login_umask_0002_creates_runs_enters_stops_and_removes", true, 0o002);
}

#[test]
fn rootless_umask_0077_creates_runs_enters_stops_and_removes() {
    every_step_under("rootless_umask_0077_creates_runs_enters_stops_and_removes", true, 0o077);
}

#[test]
fn rootful_umask_0002_creates_runs_enters_stops_and_removes() {
    every_step_under("rootful_umask_0002_creates_runs_enters_stops_and_removes", false, 0o002);
}

/// An image pulled for arm64 and then named as it is stored: the
/// container is arm64 (its config says so), in both front ends; an
/// `--arch` that contradicts the store is refused before anything is made.
#[test]
fn a_stored_image_is_the_truth_about_its_architecture() {
    let test = "a_stored_image_is_the_truth_about_its_architecture";
    let Some(s) = Setup::new(test, true) else { return };
    let pulled = ok(
        s.mtbx(&["pull", "-y", "--tls-verify=false", "--arch", "arm64", "--format", "json", &s.image])
            .output()
            .unwrap(),
        "pull",
    );
    let stored = format!("{}-arm64", s.image);
    assert!(pulled.contains(&stored), "{pulled}");
    let id = s.env.podman_ok(&["image", "inspect", "--format", "{{.Id}}", &stored]).trim().to_string();
    for (image, name) in [(stored.as_str(), "by-name"), (&id[..16], "by-id"), (&id[..8], "by-short-id")] {
        ok(s.mtbx(&["create", "--image", image, name]).output().unwrap(), "create");
        assert_eq!(s.ok(&["run", "-c", name, "uname", "-m"]).trim(), "aarch64", "{name}");
        let label = s.env.podman_ok(&[
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.github.mtbx.arch\"}}",
            name,
        ]);
        assert_eq!(label.trim(), "arm64/v8", "{name}");
    }
    let native = mtbx::emu::arch::Arch::host().short_name();
    let out = s.mtbx(&["create", "--image", &stored, "--arch", &native, "contradiction"]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("arm64") && err.contains("--arch"), "{err}");
    assert!(!s.env.podman(&["container", "exists", "contradiction"]).status().unwrap().success());
    // toolbox: the same rule, Toolbx's words.
    let toolbox = toolbox_link(&s);
    let out = s.env.command(&toolbox, &["create", "--image", &stored, "tb-arm64"]).output().unwrap();
    ok(out, "toolbox create");
    let out = s.env.command(&toolbox, &["run", "-c", "tb-arm64", "uname", "-m"]).output().unwrap();
    assert_eq!(ok(out, "toolbox run").trim(), "aarch64");
    // Removed by its id, it takes its readiness directory with it.
    let stamp = readiness_dir(&s, "tb-arm64");
    assert!(stamp.is_dir(), "{}", stamp.display());
    let cid = s.env.podman_ok(&["inspect", "--format", "{{.Id}}", "tb-arm64"]).trim().to_string();
    ok(s.env.command(&toolbox, &["rm", "--force", &cid[..12]]).output().unwrap(), "toolbox rm ID");
    assert!(!stamp.exists(), "the readiness directory of a container removed by id");
    let out = s
        .env
        .command(&toolbox, &["create", "--image", &stored, "--arch", &native, "tb-no"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("Error: invalid argument for '--arch'"), "{err}");
    assert!(!s.env.podman(&["container", "exists", "tb-no"]).status().unwrap().success());
}

/// One toolbox.conf, read alike under both names: its image and arch
/// make the default container, which `mtbx run` and `toolbox run` then
/// find with no name given; `-y` before the command works in mtbx mode.
#[test]
fn one_toolbox_conf_decides_the_default_container_under_both_names() {
    let test = "one_toolbox_conf_decides_the_default_container_under_both_names";
    let Some(s) = Setup::new(test, true) else { return };
    let config = user_dir(&s, "config");
    std::fs::create_dir_all(config.join("containers")).unwrap();
    std::fs::write(
        config.join("containers/toolbox.conf"),
        format!("[general]\nimage = \"{}\"\narch = \"arm64\"\n", s.image),
    )
    .unwrap();
    let with_conf = |mut c: Command| {
        c.env("XDG_CONFIG_HOME", &config);
        c.output().unwrap()
    };
    let made = ok(with_conf(s.mtbx(&["-y", "create", "--tls-verify=false"])), "mtbx -y create");
    let expected = format!("{}-1-arm64", s.repo);
    assert_eq!(made.trim(), expected);
    assert_eq!(ok(with_conf(s.mtbx(&["run", "uname", "-m"])), "mtbx run").trim(), "aarch64");
    let toolbox = toolbox_link(&s);
    let out = with_conf(s.env.command(&toolbox, &["run", "uname", "-m"]));
    assert_eq!(ok(out, "toolbox run").trim(), "aarch64");
    // toolbox create of the same defaults names the same container.
    let out = with_conf(s.env.command(&toolbox, &["create"]));
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("container {expected} already exists")), "{err}");
}

/// A home outside /home reached through a symlink (Fedora Atomic's
/// /home -> var/home is the common case), with XDG_RUNTIME_DIR set as a
/// desktop login sets it: inside, $HOME is the path the user knows, the
/// working directory is the canonical one the host's getcwd() gives, and
/// files written there are the host's.
#[test]
fn rootless_home_through_a_symlink_outside_home() {
    let test = "rootless_home_through_a_symlink_outside_home";
    let Some(s) = Setup::new(test, true) else { return };
    let u = s.env.user.clone().unwrap();
    let base = tempfile::Builder::new().prefix("mtbx-homes-").tempdir_in("/var/tmp").unwrap();
    let real = base.path().join("var/home");
    let home_link = base.path().join("home");
    std::fs::create_dir_all(real.join(&u.name)).unwrap();
    std::os::unix::fs::symlink("var/home", &home_link).unwrap();
    std::os::unix::fs::chown(real.join(&u.name), Some(u.uid), Some(u.gid)).unwrap();
    let home = home_link.join(&u.name);
    let runtime = user_dir(&s, "runtime");
    std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    // Through env(1): runuser sets HOME from passwd, as su does.
    let (home_var, runtime_var) =
        (format!("HOME={}", home.display()), format!("XDG_RUNTIME_DIR={}", runtime.display()));
    let mtbx = |args: &[&str]| {
        let mut all = vec![home_var.as_str(), runtime_var.as_str(), s.mtbx.to_str().unwrap()];
        all.extend_from_slice(args);
        s.env.command(Path::new("env"), &all).current_dir(&home).output().unwrap()
    };
    let name =
        ok(mtbx(&["create", "-y", "--tls-verify=false", "--image", &s.image, "--arch", "arm64"]), "create");
    let name = name.trim();
    let out = ok(
        mtbx(&[
            "run",
            "-c",
            name,
            "sh",
            "-c",
            "echo $HOME; pwd; cd \"$HOME\" && pwd -P && echo inside > made-inside",
        ]),
        "run",
    );
    assert!(runtime.join("mtbx").join(name).join("ready").exists(), "the stamp in XDG_RUNTIME_DIR");
    let canonical = real.join(&u.name);
    assert_eq!(out, format!("{}\n{}\n{}\n", home.display(), canonical.display(), canonical.display()));
    assert_eq!(std::fs::read_to_string(canonical.join("made-inside")).unwrap(), "inside\n");
    ok(mtbx(&["rm", "--force", name]), "rm");
    let _ = Command::new("rm").arg("-rf").arg(base.path()).status();
}
