//! `mtbx export`, `mtbx stop` and `create --auto-stop` with real podman
//! and real toolbox containers (the busybox images of the toolbox tests,
//! arm64 through QEMU and the host's own), rootful and rootless. The
//! exported wrappers and desktop entries are run from the host as a user
//! would run them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::text;

use crate::toolbox::Setup;

/// A scratch directory in the user's home (the containers have the home,
/// at the same path), owned by the user.
fn scratch(s: &Setup) -> tempfile::TempDir {
    let home = match &s.env.user {
        Some(u) => u.home.clone(),
        None => mtbx::toolbox::HostUser::current().unwrap().home,
    };
    let dir = tempfile::Builder::new().prefix("mtbx-export-test-").tempdir_in(home).unwrap();
    own(s, dir.path());
    dir
}

fn own(s: &Setup, p: &Path) {
    if let Some(u) = &s.env.user {
        std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).unwrap();
    }
}

fn mkdir(s: &Setup, p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).unwrap();
    own(s, p);
    p.to_path_buf()
}

fn running(s: &Setup, name: &str) -> bool {
    s.env.podman_ok(&["container", "inspect", "--format", "{{.State.Running}}", name]).trim() == "true"
}

fn failed(out: &Output) -> (Option<i32>, String) {
    assert!(!out.status.success(), "succeeded: {}", text(&out.stdout));
    (out.status.code(), text(&out.stderr))
}

fn export_wrappers_and_desktop_entries(rootless: bool) {
    let test = if rootless {
        "rootless_exported_programs_and_apps_run_in_their_container"
    } else {
        "rootful_exported_programs_and_apps_run_in_their_container"
    };
    let Some(s) = Setup::new(test, rootless) else { return };
    let Some(native_platform) = s.native_platform() else {
        return common::skip(test, "no busybox for the host's own architecture");
    };
    let host_before = common::host_binfmt_snapshot();
    let arm = s.create("arm64");
    let native = s.create(native_platform);
    let work = scratch(&s);
    let bin = mkdir(&s, &work.path().join("bin"));
    let bin_s = bin.display().to_string();
    let cwd = mkdir(&s, &work.path().join("a dir with 'quotes' and spaces"));

    // The default directory follows XDG_BIN_HOME; a foreign program's
    // wrapper carries the architecture.
    let out = s.mtbx(&["export", "-c", &arm, "--bin", "/bin/sh"]).env("XDG_BIN_HOME", &bin).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sh = bin.join("sh-arm64");
    assert_eq!(text(&out.stdout).trim(), sh.display().to_string());

    // From the host: the working directory, awkward arguments, stdin,
    // stdout and the exit code all pass through.
    let script = r#"pwd; for a in "$@"; do echo "[$a]"; done; uname -m; cat; exit 3"#;
    let args = ["-c", script, "zero", "a b", "it's", "\"q\"", "", "--", "$HOME", "-x"];
    let mut c = s.env.command(&sh, &args);
    c.current_dir(&cwd).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"from stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{}\n[a b]\n[it's]\n[\"q\"]\n[]\n[--]\n[$HOME]\n[-x]\naarch64\nfrom stdin\n", cwd.display())
    );

    // The mechanism of a cargo/meson cross runner: the runner line split
    // at spaces, then a prebuilt arm64 program under the home and its
    // arguments (busybox-static of arm64, run by its path).
    // (busybox picks its applet by its own name: the file keeps it.)
    let prog = mkdir(&s, &work.path().join("target/aarch64-unknown-linux-gnu/debug")).join("busybox");
    std::fs::copy(crate::toolbox::assets().join("arm64/busybox"), &prog).unwrap();
    own(&s, &prog);
    let runner = format!("{} run -c {arm} --", s.mtbx.display());
    let words: Vec<&str> = runner.split_whitespace().collect();
    let mut argv: Vec<String> = words[1..].iter().map(|w| w.to_string()).collect();
    argv.extend([prog.display().to_string(), "uname".into(), "-m".into()]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = s.env.command(Path::new(words[0]), &argv).current_dir(work.path()).output().unwrap();
    assert_eq!(text(&out.stdout), "aarch64\n", "{}", text(&out.stderr));

    // list finds what mtbx wrote, by container.
    s.ok(&["export", "-c", &arm, "--bin", "/bin/uname", "--dir", &bin_s]);
    let listed: serde_json::Value =
        serde_json::from_str(&s.ok(&["export", "--list", "--dir", &bin_s, "--format", "json"])).unwrap();
    let rows: Vec<(String, String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string(),
                e["container"].as_str().unwrap().to_string(),
                e["item"]["bin"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("sh-arm64".into(), arm.clone(), "/bin/sh".into()),
            ("uname-arm64".into(), arm.clone(), "/bin/uname".into())
        ]
    );
    assert_eq!(s.ok(&["export", "--list", "-c", &native, "--dir", &bin_s]), "");
    assert_eq!(s.env.command(&bin.join("uname-arm64"), &["-m"]).output().unwrap().stdout, b"aarch64\n");

    // Never over someone else's file, never delete it; a program the
    // container lacks is refused.
    let mine = bin.join("id-arm64");
    std::fs::write(&mine, "#!/bin/sh\necho mine\n").unwrap();
    let (code, err) =
        failed(&s.mtbx(&["export", "-c", &arm, "--bin", "/bin/id", "--dir", &bin_s]).output().unwrap());
    assert!(code == Some(1) && err.contains("not written by mtbx"), "{err}");
    let (code, err) =
        failed(&s.mtbx(&["export", "-c", &arm, "--delete", "id-arm64", "--dir", &bin_s]).output().unwrap());
    assert!(code == Some(1) && err.contains("not written by mtbx"), "{err}");
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "#!/bin/sh\necho mine\n");
    let (code, err) = failed(
        &s.mtbx(&["export", "-c", &arm, "--bin", "/usr/bin/nonesuch", "--dir", &bin_s]).output().unwrap(),
    );
    assert!(code == Some(2) && err.contains("/usr/bin/nonesuch"), "{err}");
    assert!(!bin.join("nonesuch-arm64").exists());

    // A native container's program keeps its name, unless that would be
    // confused with the host's own: then --as names it.
    let (code, err) =
        failed(&s.mtbx(&["export", "-c", &native, "--bin", "/bin/echo", "--dir", &bin_s]).output().unwrap());
    assert!(code == Some(2) && err.contains("--as"), "{err}");
    s.ok(&["export", "-c", &native, "--bin", "/bin/echo", "--as", "bb-echo", "--dir", &bin_s]);
    assert_eq!(text(&s.env.command(&bin.join("bb-echo"), &["hi", ""]).output().unwrap().stdout), "hi \n");

    // delete: by file name, or by the program.
    s.ok(&["export", "-c", &arm, "--delete", "sh-arm64", "--dir", &bin_s]);
    s.ok(&["export", "-c", &arm, "--bin", "/bin/uname", "--delete", "--dir", &bin_s]);
    assert!(!sh.exists() && !bin.join("uname-arm64").exists());
    assert!(bin.join("bb-echo").exists() && mine.exists(), "the others stay");

    // --app: a desktop file the test puts into the container.
    let desktop = "[Desktop Entry]\nType=Application\nName=Hello\nName[de]=Hallo\nTryExec=/bin/busybox\n\
                   Exec=/bin/busybox touch %f\nExec[de]=/bin/busybox touch --de %f\nTryExec[de]=/bin/busybox\n\
                   DBusActivatable=true\n";
    s.env.podman_ok(&[
        "exec",
        "--user",
        "root",
        &arm,
        "/bin/busybox",
        "mkdir",
        "-p",
        "/usr/share/applications",
    ]);
    let mut put = s
        .env
        .podman(&[
            "exec",
            "-i",
            "--user",
            "root",
            &arm,
            "/bin/busybox",
            "sh",
            "-c",
            "cat > /usr/share/applications/org.example.Hello.desktop",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin.take().unwrap().write_all(desktop.as_bytes()).unwrap();
    assert!(put.wait().unwrap().success());
    let data = mkdir(&s, &work.path().join("data"));
    let out = s
        .mtbx(&["export", "-c", &arm, "--app", "org.example.Hello"])
        .env("XDG_DATA_HOME", &data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entry = data.join("applications/org.example.Hello-arm64.desktop");
    assert_eq!(text(&out.stdout).trim(), entry.display().to_string());
    let got = std::fs::read_to_string(&entry).unwrap();
    let exec = format!("Exec={} run -c {arm} -- /bin/busybox touch %f", s.mtbx.display());
    assert!(got.lines().any(|l| l == exec), "{got}");
    // Localized Exec and TryExec keys run through mtbx too, never the
    // container's command on the host.
    let exec_de = format!("Exec[de]={} run -c {arm} -- /bin/busybox touch --de %f", s.mtbx.display());
    assert!(got.lines().any(|l| l == exec_de), "{got}");
    assert!(got.contains(&format!("\nTryExec[de]={}\n", s.mtbx.display())), "{got}");
    assert!(got.contains("\nName=Hello (arm64)\nName[de]=Hallo (arm64)\n"), "{got}");
    assert!(
        got.contains(&format!("\nTryExec={}\n", s.mtbx.display())) && !got.contains("DBusActivatable"),
        "{got}"
    );
    // The launcher's part: the Exec line with %f expanded, as a launcher
    // runs it; the file appears on the host, made in the container.
    let touched = work.path().join("touched-by-the-app");
    let line = exec.strip_prefix("Exec=").unwrap().replace("%f", &touched.display().to_string());
    let words: Vec<&str> = line.split(' ').collect();
    let out = s.env.command(Path::new(words[0]), &words[1..]).output().unwrap();
    assert!(out.status.success() && touched.exists(), "{}", text(&out.stderr));
    let listed = s
        .mtbx(&["export", "--list", "-c", &arm])
        .env("XDG_DATA_HOME", &data)
        .env("XDG_BIN_HOME", &bin)
        .output()
        .unwrap();
    assert!(text(&listed.stdout).contains("org.example.Hello"), "{}", text(&listed.stdout));
    let out = s
        .mtbx(&["export", "-c", &arm, "--app", "org.example.Hello", "--delete"])
        .env("XDG_DATA_HOME", &data)
        .output()
        .unwrap();
    assert!(out.status.success() && !entry.exists(), "{}", text(&out.stderr));
    let (code, err) = failed(
        &s.mtbx(&["export", "-c", &arm, "--app", "org.example.Nope", "--dir", &bin_s]).output().unwrap(),
    );
    assert!(code == Some(2) && err.contains("org.example.Nope"), "{err}");
    // A FIFO as the desktop file is refused at once (the probe inside
    // never blocks on it), and one too large is named where it is.
    let root_sh = |script: &str| {
        s.env.podman_ok(&["exec", "--user", "root", &arm, "/bin/busybox", "sh", "-c", script]);
    };
    root_sh("/bin/busybox mkfifo -m 644 /usr/share/applications/org.example.Fifo.desktop");
    root_sh("/bin/busybox head -c 1048577 /dev/zero > /usr/share/applications/org.example.Big.desktop");
    for (app, why) in [("org.example.Fifo", "FIFO"), ("org.example.Big", "larger than")] {
        let (code, err) =
            failed(&s.mtbx(&["export", "-c", &arm, "--app", app, "--dir", &bin_s]).output().unwrap());
        assert_eq!(code, Some(2), "{app}: {err}");
        assert!(
            err.contains(why) && err.contains(&format!("{app}.desktop in /usr/share/applications")),
            "{err}"
        );
    }
    // --sudo needs sudo in the container: busybox has none.
    let (code, err) = failed(
        &s.mtbx(&["export", "-c", &arm, "--bin", "/bin/id", "--sudo", "--as", "root-id", "--dir", &bin_s])
            .output()
            .unwrap(),
    );
    assert!(code == Some(2) && err.contains("--sudo needs sudo"), "{err}");
    assert!(!bin.join("root-id").exists());
    let (code, err) = failed(
        &s.mtbx(&["export", "-c", &arm, "--delete", "nothing-here", "--dir", &bin_s]).output().unwrap(),
    );
    assert!(code == Some(1) && err.contains("has no export named nothing-here"), "{err}");
    assert_eq!(common::host_binfmt_snapshot(), host_before, "the host's binfmt_misc is untouched");
}

#[test]
fn rootful_exported_programs_and_apps_run_in_their_container() {
    export_wrappers_and_desktop_entries(false);
}

#[test]
fn rootless_exported_programs_and_apps_run_in_their_container() {
    export_wrappers_and_desktop_entries(true);
}

/// A `mtbx run -c NAME cat` session, proven to be inside: a line written
/// to it came back.
struct Held {
    child: std::process::Child,
}

fn hold(s: &Setup, name: &str) -> Held {
    hold_with(s.mtbx(&["run", "-c", name, "cat"]))
}

fn hold_with(mut cmd: std::process::Command) -> Held {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.as_mut().unwrap().write_all(b"inside\n").unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "inside\n");
    Held { child }
}

impl Held {
    fn end(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }
}

fn stop_and_auto_stop(rootless: bool) {
    let test = if rootless {
        "rootless_stop_and_auto_stop_after_the_last_session"
    } else {
        "rootful_stop_and_auto_stop_after_the_last_session"
    };
    let Some(s) = Setup::new(test, rootless) else { return };
    let Some(native_platform) = s.native_platform() else {
        return common::skip(test, "no busybox for the host's own architecture");
    };
    let arm = s.create("arm64");
    let native = s.create(native_platform);
    let start = |n: &str| assert_eq!(s.ok(&["run", "-c", n, "true"]), "");
    start(&arm);
    start(&native);
    assert!(running(&s, &arm) && running(&s, &native));
    assert_eq!(s.ok(&["stop", &arm]), format!("{arm}\n"));
    assert!(!running(&s, &arm) && running(&s, &native));
    start(&arm);
    assert_eq!(s.ok(&["stop", "--all", "--arch", "arm64"]), format!("{arm}\n"));
    assert!(!running(&s, &arm) && running(&s, &native));
    assert_eq!(s.ok(&["stop", "--all"]), format!("{native}\n"));
    assert!(!running(&s, &native));
    // Unknown names, containers that are not toolboxes, nothing named.
    let (code, err) = failed(&s.mtbx(&["stop", "nonesuch-container"]).output().unwrap());
    assert!(code == Some(1) && err.contains("no mtbx container named nonesuch-container"), "{err}");
    let plain = format!("{}-plain", s.repo);
    s.env.podman_ok(&["create", "--network", "host", "--name", &plain, &s.image, "/bin/sleep", "1000"]);
    s.env.podman_ok(&["start", &plain]);
    let (code, err) = failed(&s.mtbx(&["stop", &plain]).output().unwrap());
    assert!(code == Some(2) && err.contains("not an mtbx toolbox container"), "{err}");
    assert!(running(&s, &plain), "left alone");
    s.env.podman_ok(&["rm", "--force", "--time", "0", &plain]);
    assert_eq!(failed(&s.mtbx(&["stop"]).output().unwrap()).0, Some(2));

    // --auto-stop: up while any session lives, stopped after the last,
    // started again by the next.
    let auto = format!("{}-auto", s.repo);
    s.ok(&[
        "create",
        "-y",
        "--tls-verify=false",
        "--auto-stop",
        "--image",
        &s.image,
        "--arch",
        "arm64",
        &auto,
    ]);
    let listed: serde_json::Value = serde_json::from_str(&s.ok(&["list", "--format", "json"])).unwrap();
    let flag = |n: &str| {
        listed["containers"].as_array().unwrap().iter().find(|c| c["name"] == n).unwrap()["auto_stop"].clone()
    };
    assert_eq!((flag(&auto), flag(&arm)), (serde_json::json!(true), serde_json::json!(false)));
    let first = hold(&s, &auto);
    let second = hold(&s, &auto);
    assert!(running(&s, &auto));
    first.end();
    assert!(running(&s, &auto), "the second session is still alive");
    second.end();
    assert!(!running(&s, &auto), "stopped after the last session");
    assert_eq!(s.ok(&["run", "-c", &auto, "uname", "-m"]), "aarch64\n");
    assert!(!running(&s, &auto), "and after the next one");
    // A session of toolbox mode counts too: an mtbx session ending
    // meanwhile leaves the container up for it.
    let links = mkdir(&s, &s.env.dir.path().join("toolbox-mode"));
    std::os::unix::fs::symlink(&s.mtbx, links.join("toolbox")).unwrap();
    let toolbx = hold_with(s.env.command(&links.join("toolbox"), &["run", "-c", &auto, "cat"]));
    assert_eq!(s.ok(&["run", "-c", &auto, "uname", "-m"]), "aarch64\n");
    assert!(running(&s, &auto), "the toolbox-mode session is alive");
    toolbx.end();
    assert!(!running(&s, &auto), "stopped after toolbox mode's session, the last");
    // A container without the option stays up.
    start(&arm);
    assert!(running(&s, &arm));
}

#[test]
fn rootful_stop_and_auto_stop_after_the_last_session() {
    stop_and_auto_stop(false);
}

#[test]
fn rootless_stop_and_auto_stop_after_the_last_session() {
    stop_and_auto_stop(true);
}

/// A PNG header of a square icon (what size placement reads).
fn png(side: u32) -> Vec<u8> {
    let mut d = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    d.extend(side.to_be_bytes());
    d.extend(side.to_be_bytes());
    d.extend([8, 6, 0, 0, 0]);
    d
}

const APP: &str = "org.example.Iconic";

/// A Debian toolbox image (the host's architecture) with an application:
/// its desktop file, its icon in two sizes of the hicolor theme and in
/// /usr/share/pixmaps, and icon files a hostile image could offer: one
/// linked out of the image's trees, one too large.
fn debian_app_image(test: &str) -> Option<common::images::Built> {
    use common::images::E;
    let arch = mtbx::emu::arch::Arch::host().short_name();
    let tar = common::debian::rootfs(test, &arch)?;
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let icon = |size: &str, ext: &str| leak(format!("usr/share/icons/hicolor/{size}/apps/{APP}.{ext}"));
    let desktop = format!(
        "[Desktop Entry]\nType=Application\nName=Iconic\nExec=/usr/bin/id -u\nIcon={APP}\nTerminal=true\n"
    );
    let mut extra = vec![E::Dir("usr/share/applications", 0o755)];
    for size in ["48x48", "scalable", "32x32", "64x64"] {
        extra.push(E::Dir(leak(format!("usr/share/icons/hicolor/{size}")), 0o755));
        extra.push(E::Dir(leak(format!("usr/share/icons/hicolor/{size}/apps")), 0o755));
    }
    extra.extend([
        E::File(leak(format!("usr/share/applications/{APP}.desktop")), 0o644, desktop.into_bytes()),
        E::File(icon("48x48", "png"), 0o644, png(48)),
        E::File(icon("scalable", "svg"), 0o644, b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n".to_vec()),
        E::Symlink(icon("32x32", "png"), "/etc/hostname"),
        E::File(icon("64x64", "png"), 0o644, vec![0; (1 << 20) + 1]),
        E::Dir("usr/share/pixmaps", 0o755),
        E::File(leak(format!("usr/share/pixmaps/{APP}.png")), 0o644, png(128)),
    ]);
    Some(common::debian::image(&tar, &arch, &extra))
}

fn icons_and_sudo(rootless: bool) {
    let test = if rootless {
        "rootless_exported_apps_bring_their_icons_and_sudo_runs_them_as_root"
    } else {
        "rootful_exported_apps_bring_their_icons_and_sudo_runs_them_as_root"
    };
    let Some(bin) = std::env::var_os("MTBX_STATIC_BIN").map(PathBuf::from).filter(|p| p.is_file()) else {
        return common::skip(
            test,
            "needs the static mtbx build in MTBX_STATIC_BIN (scripts/test.sh sets it)",
        );
    };
    let env = if rootless {
        common::podman::PodmanEnv::rootless(test)
    } else {
        common::podman::PodmanEnv::rootful(test)
    };
    let Some(env) = env else { return };
    let Some(built) = debian_app_image(test) else { return };
    let Some(reg) = common::real_registry::RealRegistry::start(test) else { return };
    let repo = if rootless { "iconic-rootless" } else { "iconic-rootful" };
    reg.push(repo, "12", &common::images::index(&[&built]));
    let image = format!("{}/{repo}:12", reg.addr);
    let mtbx = env.reachable(&bin, "mtbx-static");
    let home = match &env.user {
        Some(u) => u.home.clone(),
        None => mtbx::toolbox::HostUser::current().unwrap().home,
    };
    let run = |args: &[&str], data: &Path| {
        let mut c = env.command(&mtbx, args);
        c.current_dir(&home).env("XDG_DATA_HOME", data).env("XDG_BIN_HOME", data.join("bin"));
        c.output().unwrap()
    };
    let ok = |args: &[&str], data: &Path| {
        let out = run(args, data);
        assert!(out.status.success(), "mtbx {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    };
    let work = tempfile::Builder::new().prefix("mtbx-export-icons-").tempdir_in(&home).unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(data.join("icons/hicolor/48x48/apps")).unwrap();
    // The host's own icon of the container's name: never touched.
    let host_icon = data.join(format!("icons/hicolor/48x48/apps/{APP}.png"));
    std::fs::write(&host_icon, "the host's").unwrap();
    if let Some(u) = &env.user {
        for p in [
            "",
            "data",
            "data/icons",
            "data/icons/hicolor",
            "data/icons/hicolor/48x48",
            "data/icons/hicolor/48x48/apps",
        ] {
            std::os::unix::fs::chown(work.path().join(p), Some(u.uid), Some(u.gid)).unwrap();
        }
    }
    let name = ok(&["create", "-y", "--tls-verify=false", "--image", &image, &format!("{repo}-box")], &data)
        .trim()
        .to_string();
    struct Rm<'a>(&'a dyn Fn());
    impl Drop for Rm<'_> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _rm = Rm(&|| drop(run(&["rm", "--force", &name], &data)));

    // The entry names mtbx's copy of the icon; each size the container
    // has is copied, the pixmap by its own size; the linked-out and the
    // oversized files are not.
    let out = ok(&["export", "-c", &name, "--app", APP], &data);
    let entry = data.join(format!("applications/{APP}-{name}.desktop"));
    assert_eq!(out.trim(), entry.display().to_string());
    let got = std::fs::read_to_string(&entry).unwrap();
    let copy = format!("mtbx-{name}-{APP}");
    assert!(got.contains(&format!("\nIcon={copy}\n")), "{got}");
    let icons = data.join("icons/hicolor");
    let mut copied: Vec<String> = ["16x16", "32x32", "48x48", "64x64", "128x128", "scalable"]
        .iter()
        .flat_map(|s| ["png", "svg"].map(|e| format!("{s}/apps/{copy}.{e}")))
        .filter(|p| icons.join(p).exists())
        .collect();
    copied.sort();
    assert_eq!(
        copied,
        [
            format!("128x128/apps/{copy}.png"),
            format!("48x48/apps/{copy}.png"),
            format!("scalable/apps/{copy}.svg")
        ]
    );
    assert_eq!(std::fs::read(icons.join(format!("48x48/apps/{copy}.png"))).unwrap(), png(48));
    assert_eq!(std::fs::read(icons.join(format!("128x128/apps/{copy}.png"))).unwrap(), png(128));
    assert_eq!(std::fs::read_to_string(&host_icon).unwrap(), "the host's");
    // The entry runs as the user; exported again with --sudo, as root.
    let exec = |entry_text: &str| -> String {
        let line = entry_text.lines().find_map(|l| l.strip_prefix("Exec=")).unwrap().to_string();
        let words: Vec<&str> = line.split(' ').collect();
        let mut c = env.command(Path::new(words[0]), &words[1..]);
        c.current_dir(&home);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{line}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let uid = env.user.as_ref().map_or(0, |u| u.uid);
    assert_eq!(exec(&got), format!("{uid}\n"));
    ok(&["export", "-c", &name, "--app", APP, "--sudo"], &data);
    let got = std::fs::read_to_string(&entry).unwrap();
    assert!(got.contains("X-Mtbx-Sudo=true") && got.contains(" sudo -n "), "{got}");
    assert_eq!(exec(&got), "0\n");
    // A wrapper with --sudo: root in the container, by the user's hand.
    let bin_dir = data.join("bin");
    ok(&["export", "-c", &name, "--bin", "/usr/bin/id", "--sudo", "--as", "root-id"], &data);
    let out = env.command(&bin_dir.join("root-id"), &["-u"]).current_dir(&home).output().unwrap();
    assert_eq!(text(&out.stdout), "0\n", "{}", text(&out.stderr));
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["export", "--list", "-c", &name, "--format", "json"], &data)).unwrap();
    let flags: Vec<(bool, Option<&str>)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["sudo"].as_bool().unwrap(), e["icon"].as_str()))
        .collect();
    assert_eq!(flags, [(true, None), (true, Some(copy.as_str()))]);

    // A FIFO as an icon is passed over at once (the probe never blocks).
    env.podman_ok(&[
        "exec",
        "--user",
        "root",
        &name,
        "mkfifo",
        &format!("/usr/share/icons/hicolor/64x64/apps/{APP}.svg"),
    ]);
    ok(&["export", "-c", &name, "--app", APP], &data);
    assert!(!icons.join(format!("64x64/apps/{copy}.svg")).exists());

    // Removing the entry removes the icon copies, and only them.
    ok(&["export", "-c", &name, "--app", APP, "--delete"], &data);
    assert!(!entry.exists());
    for p in &copied {
        assert!(!icons.join(p).exists(), "{p} is left");
    }
    assert_eq!(std::fs::read_to_string(&host_icon).unwrap(), "the host's");
    ok(&["export", "-c", &name, "--delete", "root-id"], &data);
}

#[test]
fn rootful_exported_apps_bring_their_icons_and_sudo_runs_them_as_root() {
    icons_and_sudo(false);
}

#[test]
fn rootless_exported_apps_bring_their_icons_and_sudo_runs_them_as_root() {
    icons_and_sudo(true);
}
