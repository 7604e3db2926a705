//! Provisioning (`create --packages/--init-hook`) and `upgrade` on a real
//! Debian bookworm toolbox (mmdebstrap at test time), with Debian's own
//! apt-get reaching deb.debian.org: packages installed at the first
//! start and there afterwards, init hooks run once, a package that does
//! not exist reported with apt's last lines (exit 6) and tried again at
//! the next start, and `upgrade NAME` / `upgrade --all` with one line per
//! container. Rootful, rootless (the test user), and one arm64 container
//! under QEMU (emulated apt takes minutes: one test).

use std::path::PathBuf;
use std::process::{Command, Output};

use common::images::index;
use common::podman::PodmanEnv;
use common::real_registry::RealRegistry;
use common::{skip, text};

/// A package small enough for every run: one program, no dependencies.
const PACKAGE: &str = "hello";
/// What it prints.
const HELLO: &str = "Hello, world!";

struct Boxes {
    env: PodmanEnv,
    _reg: RealRegistry,
    image: String,
    mtbx: PathBuf,
    home: PathBuf,
}

impl Boxes {
    /// A Debian toolbox image of `deb_arch` in the real registry, and an
    /// environment (rootful or the rootless test user) to run mtbx in.
    fn new(test: &str, rootless: bool, deb_arch: &str) -> Option<Boxes> {
        let Some(mtbx) = std::env::var_os("MTBX_STATIC_BIN").map(PathBuf::from).filter(|p| p.is_file())
        else {
            skip(test, "needs the static mtbx build in MTBX_STATIC_BIN (scripts/test.sh sets it)");
            return None;
        };
        if deb_arch != "amd64" && !common::have_qemu(mtbx::emu::arch::Arch::parse(deb_arch).unwrap()) {
            skip(test, &format!("no static QEMU for {deb_arch} (apt-get install qemu-user-static)"));
            return None;
        }
        let env = if rootless { PodmanEnv::rootless(test)? } else { PodmanEnv::rootful(test)? };
        let tar = common::debian::rootfs(test, deb_arch)?;
        let built = common::debian::image(&tar, deb_arch, &[]);
        let reg = RealRegistry::start(test)?;
        reg.push("debian-toolbox", "12", &index(&[&built]));
        let image = format!("{}/debian-toolbox:12", reg.addr);
        let mtbx = env.reachable(&mtbx, "mtbx-static");
        let home = match &env.user {
            Some(u) => u.home.clone(),
            None => mtbx::toolbox::HostUser::current().unwrap().home,
        };
        Some(Boxes { env, _reg: reg, image, mtbx, home })
    }

    fn cmd(&self, program: &std::path::Path, args: &[&str]) -> Command {
        let mut c = self.env.command(program, args);
        c.current_dir(&self.home);
        c
    }

    fn mtbx(&self, args: &[&str]) -> Output {
        self.cmd(&self.mtbx, args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.mtbx(args);
        assert!(out.status.success(), "mtbx {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    }

    /// `toolbox ARGS`: the static mtbx through a link named toolbox.
    fn toolbox(&self, args: &[&str]) -> Output {
        let link = self.env.dir.path().join("bin/toolbox");
        if !link.exists() {
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(&self.mtbx, &link).unwrap();
        }
        self.cmd(&link, args).output().unwrap()
    }

    /// `create` of `name` from the Debian image with extra arguments.
    fn create(&self, name: &str, arch: &str, extra: &[&str]) -> String {
        let mut args = vec!["create", "-y", "--tls-verify=false", "--image", &self.image, "--arch", arch];
        args.extend_from_slice(extra);
        args.push(name);
        let (stdout, stderr) = self.ok(&args);
        assert_eq!(stdout.trim(), name);
        stderr
    }

    fn running(&self, name: &str) -> bool {
        self.env.podman_ok(&["inspect", "--format", "{{.State.Running}}", name]).trim() == "true"
    }
}

impl Drop for Boxes {
    fn drop(&mut self) {
        let _ = self.mtbx(&["rm", "--all", "--force"]);
    }
}

/// The packages and hooks of a first start, as `mtbx run` shows and
/// leaves them: installed, hooks run once, never again at later starts.
fn first_start_provisions_once(b: &Boxes, name: &str, arch: &str) {
    let said = b.create(
        name,
        arch,
        &[
            "--packages",
            PACKAGE,
            "--init-hook",
            "echo hooked-$(dpkg --print-architecture) > /etc/mtbx-hooked",
            "--init-hook",
            "echo once >> /var/tmp/mtbx-hook-runs",
        ],
    );
    assert!(
        said.contains(&format!("At its first start it installs {PACKAGE} and runs 2 init hooks")),
        "{said}"
    );
    let labels = b.env.podman_ok(&["inspect", "--format", "{{json .Config.Labels}}", name]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["io.github.mtbx.packages"], format!("[\"{PACKAGE}\"]"));
    assert!(labels["io.github.mtbx.init-hooks"].as_str().unwrap().contains("mtbx-hooked"), "{labels}");
    let (stdout, stderr) = b.ok(&["run", "-c", name, PACKAGE]);
    assert_eq!(stdout.trim(), HELLO, "{stderr}");
    // Progress without a terminal: one line per step.
    assert!(stderr.contains(&format!("{name}: apt-get update")), "{stderr}");
    assert!(stderr.contains(&format!("{name}: apt-get install -y")), "{stderr}");
    let deb_arch = if arch == "arm64" { "arm64" } else { "amd64" };
    let (hooked, _) = b.ok(&["run", "-c", name, "cat", "/etc/mtbx-hooked"]);
    assert_eq!(hooked.trim(), format!("hooked-{deb_arch}"));
    // Stopped and started again: nothing is repeated.
    b.ok(&["stop", name]);
    let (runs, stderr) = b.ok(&["run", "-c", name, "cat", "/var/tmp/mtbx-hook-runs"]);
    assert_eq!(runs, "once\n", "the hooks ran once: {stderr}");
    assert!(!stderr.contains("apt-get"), "no second provisioning: {stderr}");
    let (stdout, _) = b.ok(&["run", "-c", name, PACKAGE]);
    assert_eq!(stdout.trim(), HELLO);
}

/// `upgrade NAME` of a stopped container: ok, and stopped again; of a
/// running one: ok, and left running.
fn upgrade_one(b: &Boxes, name: &str) {
    b.ok(&["stop", name]);
    let (stdout, stderr) = b.ok(&["upgrade", name]);
    assert_eq!(stdout, format!("{name}: ok\n"), "{stderr}");
    assert!(stderr.contains(&format!("{name}: apt-get upgrade -y")), "{stderr}");
    assert!(!b.running(name), "a container upgrade started is stopped again");
    b.ok(&["run", "-c", name, "true"]);
    let (stdout, _) = b.ok(&["upgrade", name]);
    assert_eq!(stdout, format!("{name}: ok\n"));
    assert!(b.running(name), "a running container stays running");
}

#[test]
fn rootful_packages_hooks_failure_retry_and_upgrade() {
    let test = "rootful_packages_hooks_failure_retry_and_upgrade";
    let Some(b) = Boxes::new(test, false, "amd64") else { return };
    first_start_provisions_once(&b, "prov", "amd64");
    upgrade_one(&b, "prov");
    // A package that does not exist: apt's own words, exit 6, the
    // command not run; and tried again (apt again) at the next start.
    let missing = "mtbx-no-such-package";
    b.create("broken", "amd64", &["--packages", &format!("{PACKAGE},{missing}")]);
    for attempt in ["first", "second"] {
        let out = b.mtbx(&["run", "-c", "broken", "echo", "ran"]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(6), "{attempt}: {stdout}{stderr}");
        assert!(!stdout.contains("ran"), "{attempt}: the command does not run: {stdout}");
        assert!(stderr.contains("broken: apt-get install -y"), "{attempt}: {stderr}");
        assert!(stderr.contains("the last lines of apt-get install"), "{attempt}: {stderr}");
        assert!(stderr.contains(&format!("E: Unable to locate package {missing}")), "{attempt}: {stderr}");
        let error = stderr.lines().last().unwrap();
        assert!(
            error.starts_with("mtbx: error: cannot provision container broken: apt-get install"),
            "{error}"
        );
        assert!(error.contains("exited with status 100"), "{error}");
    }
    // Toolbx's voice: the same provisioning tried again, its words.
    let out = b.toolbox(&["run", "-c", "broken", "true"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("E: Unable to locate package {missing}")), "{stderr}");
    assert!(stderr.contains("Error: failed to provision container broken: apt-get install"), "{stderr}");
    // upgrade --all: one line each, in the listing's order; the broken
    // one's provisioning is tried first and fails again.
    let out = b.mtbx(&["upgrade", "--all"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(6), "{stdout}{stderr}");
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("broken: failed: apt-get install -y"), "{stdout}");
    assert!(lines[0].ends_with("exited with status 100"), "{stdout}");
    assert_eq!(lines[1], "prov: ok", "{stdout}");
    // Bad input is refused before anything is made.
    for bad in [&["--packages=-oAPT::Get::x=1"][..], &["--init-hook", ""][..]] {
        let mut args = vec!["create", "--image", &b.image];
        args.extend_from_slice(bad);
        args.push("refused");
        let out = b.mtbx(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert!(!b.env.podman(&["container", "exists", "refused"]).status().unwrap().success());
    }
}

#[test]
fn rootless_first_start_through_toolbox_and_upgrade() {
    let test = "rootless_first_start_through_toolbox_and_upgrade";
    let Some(b) = Boxes::new(test, true, "amd64") else { return };
    b.create("prov-tb", "amd64", &["--packages", PACKAGE, "--init-hook", "touch /etc/mtbx-hooked"]);
    // The first start through Toolbx's front end provisions too.
    let out = b.toolbox(&["run", "-c", "prov-tb", PACKAGE]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), HELLO);
    assert!(text(&out.stderr).contains("prov-tb: apt-get install -y"), "{}", text(&out.stderr));
    let (stdout, stderr) = b.ok(&["run", "-c", "prov-tb", "sh", "-c", "test -f /etc/mtbx-hooked && hello"]);
    assert_eq!(stdout.trim(), HELLO);
    assert!(!stderr.contains("apt-get"), "done once: {stderr}");
    first_start_provisions_once(&b, "prov", "amd64");
    upgrade_one(&b, "prov");
    let (stdout, _) = b.ok(&["upgrade", "--all"]);
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["prov-tb: ok", "prov: ok"], "one line each, sorted here");
}

#[test]
fn arm64_packages_and_hooks_under_qemu_and_upgrade() {
    let test = "arm64_packages_and_hooks_under_qemu_and_upgrade";
    let Some(b) = Boxes::new(test, false, "arm64") else { return };
    first_start_provisions_once(&b, "prov-arm64", "arm64");
    let (arch, _) = b.ok(&["run", "-c", "prov-arm64", "dpkg-query", "-W", "-f=${Architecture}", PACKAGE]);
    assert_eq!(arch, "arm64", "the container's own architecture's package");
    let (stdout, stderr) = b.ok(&["upgrade", "prov-arm64"]);
    assert_eq!(stdout, "prov-arm64: ok\n", "{stderr}");
}
