//! Toolbox containers end to end: real podman, real qemu-user-static, the
//! real distribution registry on 127.0.0.1 holding a multi-arch image made
//! of Debian's busybox-static for each architecture, and the static mtbx
//! (containers run it inside; scripts/test.sh names it in MTBX_STATIC_BIN).
//! Rootful tests need root; the rootless one runs as the user
//! scripts/setup.sh creates. Every container registers QEMU in its own
//! binfmt_misc: the host's stays as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::images::{image, index, Built, Comp, E};
use common::podman::PodmanEnv;
use common::real_registry::RealRegistry;
use common::{skip, text};

/// (OCI platform, Debian architecture, what `uname -m` says inside).
const PLATFORMS: &[(&str, &str, &str)] = &[
    ("amd64", "amd64", "x86_64"),
    ("arm64", "arm64", "aarch64"),
    ("ppc64le", "ppc64el", "ppc64le"),
    ("s390x", "s390x", "s390x"),
    ("arm/v7", "armhf", "armv7l"),
    ("386", "i386", "i686"),
];

pub(crate) fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-assets/busybox")
}

fn static_mtbx(test: &str) -> Option<PathBuf> {
    match std::env::var_os("MTBX_STATIC_BIN").map(PathBuf::from).filter(|p| p.is_file()) {
        Some(p) => Some(p),
        None => {
            skip(test, "needs the static mtbx build in MTBX_STATIC_BIN (scripts/test.sh sets it)");
            None
        }
    }
}

/// The platforms whose busybox (scripts/setup.sh downloads them) and QEMU
/// are here.
fn available(test: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut out = Vec::new();
    for &(p, deb, uname) in PLATFORMS {
        let arch = mtbx::emu::arch::Arch::parse(p).unwrap();
        let native = std::ptr::eq(arch, mtbx::emu::arch::Arch::host());
        if !assets().join(deb).join("busybox").is_file() {
            skip(
                test,
                &format!("no busybox for {p} in {} (scripts/setup.sh downloads it)", assets().display()),
            );
        } else if !native && !common::have_qemu(arch) {
            skip(test, &format!("no static QEMU for {p} (apt-get install qemu-user-static)"));
        } else {
            out.push((p, deb, uname));
        }
    }
    out
}

/// A toolbox-like image for one platform: busybox setuid root (so `su`
/// works where the C flag is set), its applets, a root account without
/// password, the toolbox label.
fn busybox_image(platform: &str, deb: &str) -> Built {
    let bb = std::fs::read(assets().join(deb).join("busybox")).unwrap();
    let mut entries = vec![E::Dir("bin", 0o755), E::File("bin/busybox", 0o4755, bb)];
    for applet in [
        "sh", "uname", "id", "cat", "ls", "pwd", "su", "env", "true", "false", "whoami", "echo", "stat",
        "sleep",
    ] {
        entries.push(E::Symlink(Box::leak(format!("bin/{applet}").into_boxed_str()), "busybox"));
    }
    entries.extend([
        E::Dir("etc", 0o755),
        E::File("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n".to_vec()),
        E::File(
            "etc/group",
            0o644,
            format!("root:x:0:\nwheel:x:10:root,{}\n", common::podman::TEST_USER).into_bytes(),
        ),
        E::File("etc/shadow", 0o600, b"root::19000:0:99999:7:::\n".to_vec()),
        E::Dir("tmp", 0o1777),
        E::Dir("root", 0o700),
    ]);
    let (oci, variant) = platform.split_once('/').map_or((platform, None), |(a, v)| (a, Some(v)));
    image(oci, variant, &[(entries, Comp::Gzip)])
}

pub(crate) struct Setup {
    pub(crate) env: PodmanEnv,
    reg: Option<RealRegistry>,
    /// The repository, one per test: the default container names it
    /// gives (`REPO-1-arm64`) name the readiness stamps too, which rootful
    /// containers of every store share in /run/mtbx, and tests run at once.
    pub(crate) repo: String,
    pub(crate) image: String,
    pub(crate) mtbx: PathBuf,
    pub(crate) platforms: Vec<(&'static str, &'static str, &'static str)>,
}

impl Setup {
    pub(crate) fn new(test: &str, rootless: bool) -> Option<Setup> {
        Self::with_env(test, if rootless { PodmanEnv::rootless(test) } else { PodmanEnv::rootful(test) })
    }

    /// A setup in `env` (None: its skip reason was printed).
    pub(crate) fn with_env(test: &str, env: Option<PodmanEnv>) -> Option<Setup> {
        let mtbx = static_mtbx(test)?;
        let env = env?;
        let platforms = available(test);
        if platforms.is_empty() {
            return None;
        }
        let reg = RealRegistry::start(test)?;
        let built: Vec<Built> = platforms.iter().map(|(p, deb, _)| busybox_image(p, deb)).collect();
        let repo = format!(
            "tb{:08x}",
            test.bytes().fold(0x811c9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x01000193))
        );
        reg.push(&repo, "1", &index(&built.iter().collect::<Vec<_>>()));
        let image = format!("{}/{repo}:1", reg.addr);
        let mtbx = env.reachable(&mtbx, "mtbx-static");
        Some(Setup { env, reg: Some(reg), repo, image, mtbx, platforms })
    }

    pub(crate) fn mtbx(&self, args: &[&str]) -> Command {
        let mut c = self.env.command(&self.mtbx, args);
        // From the home directory, which the container has too.
        match &self.env.user {
            Some(u) => c.current_dir(&u.home),
            None => c.current_dir(mtbx::toolbox::HostUser::current().unwrap().home),
        };
        c
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.mtbx(args).output().unwrap();
        assert!(out.status.success(), "mtbx {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// The platform of the test images that is the host's own, if any.
    pub(crate) fn native_platform(&self) -> Option<&'static str> {
        let host = mtbx::emu::arch::Arch::host();
        self.platforms
            .iter()
            .map(|p| p.0)
            .find(|p| std::ptr::eq(mtbx::emu::arch::Arch::parse(p).unwrap(), host))
    }

    pub(crate) fn create(&self, arch: &str) -> String {
        self.ok(&["create", "-y", "--tls-verify=false", "--image", &self.image, "--arch", arch])
            .trim()
            .to_string()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.mtbx(&["rm", "--all", "--force"]).output();
    }
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn rootful_containers_of_six_architectures_run_as_the_user() {
    let test = "rootful_containers_of_six_architectures_run_as_the_user";
    let Some(s) = Setup::new(test, false) else { return };
    let host_before = common::host_binfmt_snapshot();
    let user = mtbx::toolbox::HostUser::current().unwrap();
    for &(platform, _, uname) in &s.platforms {
        let name = s.create(platform);
        let out = s.ok(&["run", "-c", &name, "uname", "-m"]);
        assert_eq!(out.trim(), uname, "{platform}: uname -m in {name}");
        // The user inside is the host user, in the host user's home.
        let who = s.ok(&["run", "-c", &name, "sh", "-c", "id -un; id -u; echo $HOME; pwd"]);
        let home = user.home.display().to_string();
        assert_eq!(who, format!("{}\n{}\n{home}\n{home}\n", user.name, user.uid), "{platform}");
    }
    let (arm, _, _) = *s.platforms.iter().find(|p| p.0 == "arm64").expect("arm64 is available");
    let name = format!("{}-1-{arm}", s.repo);
    // The host's name resolution and time zone, Toolbx's host name.
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(s.ok(&["run", "-c", &name, "cat", "/etc/resolv.conf"]), host_resolv);
    assert_eq!(s.ok(&["run", "-c", &name, "cat", "/proc/sys/kernel/hostname"]).trim(), "toolbx");
    // Exit codes, stdin and stdout pass through.
    let out = s.mtbx(&["run", "-c", &name, "sh", "-c", "exit 7"]).output().unwrap();
    assert_eq!(code(&out), Some(7));
    let mut child =
        s.mtbx(&["run", "-c", &name, "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"through qemu\n").unwrap();
    assert_eq!(text(&child.wait_with_output().unwrap().stdout), "through qemu\n");
    // A setuid program (su needs its setuid bit honoured: binfmt flag C).
    assert_eq!(s.ok(&["run", "-c", &name, "su", "-c", "id -u", "root"]).trim(), "0");
    // argv[0] reaches the program as given (binfmt flag P): busybox's
    // shell re-executes itself for a pipeline's applet, `exec -a` names a
    // program, and an applet runs by the name it was called.
    assert_argv0_preserved(&s, &name);
    // list shows the architecture; --arch finds the container by itself.
    let listed: serde_json::Value = serde_json::from_str(&s.ok(&["list", "--format", "json"])).unwrap();
    let row =
        listed["containers"].as_array().unwrap().iter().find(|c| c["name"] == name.as_str()).unwrap().clone();
    assert_eq!(row["arch"], "arm64/v8");
    assert!(
        listed["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["arch"] == "arm64" && i["name"] == format!("{}-arm64", s.image)),
        "{listed}"
    );
    assert_eq!(s.ok(&["run", "--image", &s.image, "--arch", "arm64", "uname", "-m"]).trim(), "aarch64");
    // rm, then it is gone.
    s.ok(&["rm", "--force", &name]);
    assert!(!s.env.podman(&["container", "exists", &name]).status().unwrap().success());
    // With the image in the store, create needs no registry (as Toolbx).
    let mut s = s;
    drop(s.reg.take());
    let out = s.mtbx(&["create", "--image", &s.image, "--arch", "arm64"]).output().unwrap();
    assert!(
        out.status.success() && text(&out.stderr).contains("already in the image store"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(s.ok(&["run", "-c", &name, "uname", "-m"]).trim(), "aarch64");
    assert_eq!(common::host_binfmt_snapshot(), host_before, "the host's binfmt_misc is untouched");
}

#[test]
fn bad_input_is_refused_and_leaves_nothing_behind() {
    let test = "bad_input_is_refused_and_leaves_nothing_behind";
    let Some(s) = Setup::new(test, false) else { return };
    let before = s.env.podman_ok(&["images", "-q"]);
    let attempt = |args: &[&str]| {
        let mut all = vec!["create", "-y", "--tls-verify=false"];
        all.extend_from_slice(args);
        let out = s.mtbx(&all).output().unwrap();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.lines().filter(|l| l.contains("error")).count() == 1, "{args:?}: one error line: {err}");
        assert_eq!(s.env.podman_ok(&["ps", "-aq"]), "", "{args:?}: no container left");
        assert_eq!(s.env.podman_ok(&["images", "-q"]), before, "{args:?}: no image left");
        (code(&out), err)
    };
    let (c, e) = attempt(&["--image", &s.image, "--arch", "vax"]);
    assert_eq!(c, Some(2), "{e}");
    let toolbox_tag = format!("{}/fedora-toolbox:42-aarch64", s.reg.as_ref().unwrap().addr);
    let (c, e) = attempt(&["--image", &toolbox_tag, "--arch", "ppc64le"]);
    assert!(c == Some(2) && e.contains("selects"), "contradicting --arch and tag: {e}");
    let (c, e) = attempt(&["--image", &s.image, "--arch", "riscv64"]);
    assert!(c == Some(3) || e.contains("riscv64"), "image without the platform: {e}");
    let (_, e) =
        attempt(&["--image", &s.image, "--arch", "arm64", "--qemu", "/nonexistent/qemu-aarch64-static"]);
    assert!(e.contains("/nonexistent/qemu-aarch64-static"), "missing qemu: {e}");
    let (_, e) = attempt(&["--image", &s.image, "--arch", "arm64", "--qemu", "/bin/ls"]);
    assert!(e.contains("static"), "dynamic qemu: {e}");
    // A name already taken.
    let name = s.create("arm64");
    let out = s
        .mtbx(&["create", "-y", "--tls-verify=false", "--image", &s.image, "--arch", "arm64", &name])
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(1));
    assert!(text(&out.stderr).contains("already exists"), "{}", text(&out.stderr));
}

/// Two creates of one name at once: one wins, the other fails, and the
/// winner's container works. (The loser used to remove the readiness stamp
/// directory the winner had bind-mounted, so the winner never started.)
fn concurrent_creates_leave_the_winner_working(rootless: bool) {
    let test = if rootless {
        "rootless_concurrent_creates_of_one_name_leave_the_winner_working"
    } else {
        "rootful_concurrent_creates_of_one_name_leave_the_winner_working"
    };
    let Some(s) = Setup::new(test, rootless) else { return };
    // The image in the store first, so both creates race to podman create.
    let first = s.create("arm64");
    s.ok(&["rm", "--force", &first]);
    for round in 0..3 {
        let name = format!("race-{round}");
        let args = ["create", "-y", "--tls-verify=false", "--image", &s.image, "--arch", "arm64", &name];
        let children: Vec<_> = (0..2)
            .map(|_| s.mtbx(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
            .collect();
        let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let won = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(
            won,
            1,
            "round {round}: exactly one create wins: {:?}",
            outs.iter().map(|o| text(&o.stderr)).collect::<Vec<_>>()
        );
        assert_eq!(
            s.ok(&["run", "-c", &name, "uname", "-m"]).trim(),
            "aarch64",
            "round {round}: the winner runs"
        );
    }
}

#[test]
fn rootful_concurrent_creates_of_one_name_leave_the_winner_working() {
    concurrent_creates_leave_the_winner_working(false);
}

#[test]
fn rootless_concurrent_creates_of_one_name_leave_the_winner_working() {
    concurrent_creates_leave_the_winner_working(true);
}

/// Without binfmt_misc's P flag QEMU hands a foreign program its file's
/// path as argv[0]: busybox then runs the wrong applet (a pipeline into
/// `cat` executed the piped text), and `exec -a` is lost.
fn assert_argv0_preserved(s: &Setup, name: &str) {
    let piped = s.ok(&["run", "-c", name, "sh", "-c", "echo 'echo INJECTED' | cat"]);
    assert_eq!(piped, "echo INJECTED\n", "{name}: a pipeline into cat");
    let renamed =
        s.mtbx(&["run", "-c", name, "sh", "-c", "exec -a echo /bin/busybox argv0-kept"]).output().unwrap();
    assert_eq!(text(&renamed.stdout), "argv0-kept\n", "{name}: exec -a; stderr {}", text(&renamed.stderr));
    assert_eq!(s.ok(&["run", "-c", name, "sh", "-c", "sleep 0 && echo slept"]), "slept\n", "{name}");
}

#[test]
fn rootless_containers_of_six_architectures_run_as_the_user_with_setuid_working() {
    let test = "rootless_containers_of_six_architectures_run_as_the_user_with_setuid_working";
    let Some(s) = Setup::new(test, true) else { return };
    let user = s.env.user.clone().unwrap();
    let host_before = common::host_binfmt_snapshot();
    for &(platform, _, uname) in &s.platforms {
        let name = s.create(platform);
        assert_eq!(s.ok(&["run", "-c", &name, "uname", "-m"]).trim(), uname, "{platform}");
    }
    let name = &format!("{}-1-arm64", s.repo);
    let who = s.ok(&["run", "-c", name, "sh", "-c", "id -un; id -u; echo $HOME"]);
    assert_eq!(who, format!("{}\n{}\n{}\n", user.name, user.uid, user.home.display()));
    assert_eq!(s.ok(&["run", "-c", name, "su", "-c", "id -u", "root"]).trim(), "0", "setuid su under qemu");
    assert_argv0_preserved(&s, name);
    assert!(
        s.ok(&["run", "-c", name, "id", "-Gn"]).split_whitespace().any(|g| g == "wheel"),
        "the user's groups"
    );
    let out = s.mtbx(&["run", "-c", name, "sh", "-c", "exit 3"]).output().unwrap();
    assert_eq!(code(&out), Some(3));
    // rm takes the readiness stamp with it, though the container wrote it.
    s.ok(&["rm", "--force", name]);
    let stamps = PathBuf::from(format!("/tmp/mtbx-{}/{name}", user.uid));
    assert!(!stamps.exists(), "{} left behind", stamps.display());
    assert_eq!(common::host_binfmt_snapshot(), host_before);
}

#[test]
fn enter_gives_a_shell_on_a_terminal_and_init_failures_are_shown() {
    let test = "enter_gives_a_shell_on_a_terminal_and_init_failures_are_shown";
    if Command::new("script").arg("--version").output().is_err() {
        return skip(test, "script(1) not installed (bsdutils): it gives enter a terminal");
    }
    let Some(s) = Setup::new(test, false) else { return };
    let name = s.create("arm64");
    // An interactive shell on a terminal: commands in, output and the
    // shell's exit status out.
    let cmd = format!("{} enter {name}", s.mtbx.display());
    let mut child = s
        .env
        .command(Path::new("script"), &["-qec", &cmd, "/dev/null"])
        .current_dir(mtbx::toolbox::HostUser::current().unwrap().home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"echo inside-$(uname -m)-$((40+2)); exit 5\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(text(&out.stdout).contains("inside-aarch64-42"), "{}", text(&out.stdout));
    assert_eq!(code(&out), Some(5));

    // An interpreter for the wrong architecture is static, so create takes
    // it; init-container's check then fails, and run says why.
    let ppc = mtbx::emu::host::find_interpreter(mtbx::emu::arch::Arch::parse("ppc64le").unwrap(), None);
    let Some(wrong) = ppc.usable() else { return skip(test, "no qemu-ppc64le-static") };
    let q = wrong.path.display().to_string();
    let bad = s.ok(&[
        "create",
        "-y",
        "--tls-verify=false",
        "--image",
        &s.image,
        "--arch",
        "arm64",
        "--qemu",
        &q,
        "wrongqemu",
    ]);
    assert_eq!(bad.trim(), "wrongqemu");
    let out = s.mtbx(&["run", "-c", "wrongqemu", "true"]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(code(&out), Some(1), "{err}");
    assert!(
        err.contains("did not start") && err.contains("a program for arm64/v8"),
        "init-container's own words: {err}"
    );

    // rmi of an image a container uses needs --force, then both are gone.
    let img = format!("{}-arm64", s.image);
    let out = s.mtbx(&["rmi", &img]).output().unwrap();
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    s.ok(&["rmi", "--force", &img]);
    assert!(!s.env.podman(&["image", "exists", &img]).status().unwrap().success());
    // The containers went with it, their readiness stamps too.
    assert!(!mtbx::toolbox::stamp_dir("wrongqemu").exists(), "wrongqemu's stamp directory is left");
}

/// Without the tests' containers.conf (which empties podman's default
/// ulimits), podman applies its own defaults: where root cannot raise the
/// open-files limit to them (no CAP_SYS_RESOURCE, as on this project's CI
/// machines), every start failed with "error setting rlimits". The
/// container must start, with the caller's limits where mtbx gives them.
#[test]
fn a_rootful_toolbox_starts_under_podmans_own_default_limits() {
    let test = "a_rootful_toolbox_starts_under_podmans_own_default_limits";
    let Some(s) = Setup::new(test, false) else { return };
    std::fs::write(&s.env.containers_conf, "[engine]\nruntime = \"runc\"\n").unwrap();
    let name = s.create(&mtbx::emu::arch::Arch::host().short_name());
    let out = s.mtbx(&["run", "-c", &name, "sh", "-c", "ulimit -Sn; ulimit -Hn"]).output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let inside: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    let limits = mtbx::toolbox::Ulimits::for_this_process(false);
    if let mtbx::toolbox::Ulimits::Caller { nofile: (soft, hard), .. } = limits {
        let unlimited = |v: u64| if v == u64::MAX { "unlimited".to_string() } else { v.to_string() };
        assert_eq!(inside, vec![unlimited(soft), unlimited(hard)], "the caller's open-files limits");
    }
}
