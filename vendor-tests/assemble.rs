//! `mtbx assemble`: a file of boxes made real, kept as described and
//! removed, on real Debian images (amd64 and arm64 in one index in the
//! real registry), real podman and QEMU, as root and as the rootless test
//! user. A native and an arm64 box are created; a second run leaves them
//! alone; a changed key is named and, without a terminal and without -y,
//! left as it is (exit 1); with -y the box is recreated with the new
//! value; --rm removes both.

use std::path::{Path, PathBuf};
use std::process::Output;

use common::images::index;
use common::podman::PodmanEnv;
use common::real_registry::RealRegistry;
use common::{skip, text};

struct Setup {
    env: PodmanEnv,
    _reg: RealRegistry,
    image: String,
    mtbx: PathBuf,
    home: PathBuf,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(test: &str, rootless: bool) -> Option<Setup> {
        let Some(mtbx) = std::env::var_os("MTBX_STATIC_BIN").map(PathBuf::from).filter(|p| p.is_file())
        else {
            skip(test, "needs the static mtbx build in MTBX_STATIC_BIN (scripts/test.sh sets it)");
            return None;
        };
        if !common::have_qemu(mtbx::emu::arch::Arch::parse("arm64").unwrap()) {
            skip(test, "no static QEMU for arm64 (apt-get install qemu-user-static)");
            return None;
        }
        let env = if rootless { PodmanEnv::rootless(test)? } else { PodmanEnv::rootful(test)? };
        let mut built = Vec::new();
        for a in ["amd64", "arm64"] {
            let tar = common::debian::rootfs(test, a)?;
            built.push(common::debian::image(&tar, a, &[]));
        }
        let reg = RealRegistry::start(test)?;
        reg.push("debian-toolbox", "12", &index(&built.iter().collect::<Vec<_>>()));
        let image = format!("{}/debian-toolbox:12", reg.addr);
        let mtbx = env.reachable(&mtbx, "mtbx-static");
        let home = match &env.user {
            Some(u) => u.home.clone(),
            None => mtbx::toolbox::HostUser::current().unwrap().home,
        };
        let dir = tempfile::Builder::new().prefix("mtbx-assemble-").tempdir_in("/var/tmp").unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Some(Setup { env, _reg: reg, image, mtbx, home, dir })
    }

    /// The file of boxes, with `value` for the arm64 box's variable.
    fn write(&self, value: &str) -> PathBuf {
        let shared = self.dir.path().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("seen"), "from the host\n").unwrap();
        let file = self.dir.path().join("boxes.toml");
        let text = format!(
            "[asm-native]\nimage = \"{image}\"\nenv = [\"ASSEMBLED=native\"]\n\n\
             [asm-arm]\nimage = \"{image}\"\narch = \"arm64\"\nenv = [\"ASSEMBLED={value}\"]\n\
             volumes = [\"{shared}:/srv/shared:ro\"]\n",
            image = self.image,
            shared = shared.display()
        );
        std::fs::write(&file, text).unwrap();
        file
    }

    fn mtbx(&self, args: &[&str]) -> Output {
        let mut c = self.env.command(&self.mtbx, args);
        c.current_dir(&self.home).stdin(std::process::Stdio::null());
        c.output().unwrap()
    }

    fn assemble(&self, file: &Path, extra: &[&str]) -> Output {
        let f = file.to_str().unwrap();
        let mut args = vec!["assemble", f, "--tls-verify=false"];
        args.extend_from_slice(extra);
        self.mtbx(&args)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // One at a time: rm refuses a list with a name it does not know,
        // and removes none of it.
        for name in ["asm-native", "asm-arm"] {
            let _ = self.mtbx(&["rm", "--force", name]);
        }
    }
}

fn lines(out: &Output) -> Vec<String> {
    let mut l: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    l.sort();
    l
}

fn assemble_keeps_boxes_as_described(test: &str, rootless: bool) {
    let Some(s) = Setup::new(test, rootless) else { return };
    let file = s.write("one");
    let out = s.assemble(&file, &["-y"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(lines(&out), ["asm-arm: created", "asm-native: created"]);

    let run = |name: &str, cmd: &str| {
        let out = s.mtbx(&["run", "-c", name, "sh", "-c", cmd]);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(run("asm-native", "echo $ASSEMBLED; uname -m"), "native\nx86_64\n");
    assert_eq!(
        run("asm-arm", "echo $ASSEMBLED; uname -m; cat /srv/shared/seen"),
        "one\naarch64\nfrom the host\n"
    );

    let again = s.assemble(&file, &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(lines(&again), ["asm-arm: as described", "asm-native: as described"]);

    // A changed key: no terminal and no -y, so it is named and left.
    let file = s.write("two");
    let asked = s.assemble(&file, &[]);
    assert_eq!(asked.status.code(), Some(1), "{}", text(&asked.stderr));
    assert_eq!(
        lines(&asked),
        ["asm-arm: differs (env), left as it is: pass -y to recreate", "asm-native: as described"]
    );
    assert_eq!(run("asm-arm", "echo $ASSEMBLED"), "one\n");
    let recreated = s.assemble(&file, &["-y"]);
    assert!(recreated.status.success(), "{}", text(&recreated.stderr));
    assert_eq!(lines(&recreated), ["asm-arm: recreated (env)", "asm-native: as described"]);
    assert_eq!(run("asm-arm", "echo $ASSEMBLED; uname -m"), "two\naarch64\n");

    let removed = s.assemble(&file, &["--rm"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert_eq!(lines(&removed), ["asm-arm: removed", "asm-native: removed"]);
    for name in ["asm-native", "asm-arm"] {
        let exists = s.env.podman(&["container", "exists", name]).output().unwrap();
        assert_eq!(exists.status.code(), Some(1), "{name} removed");
    }
}

#[test]
fn rootful_assemble_creates_keeps_recreates_and_removes_boxes() {
    assemble_keeps_boxes_as_described("rootful_assemble_creates_keeps_recreates_and_removes_boxes", false);
}

#[test]
fn rootless_assemble_creates_keeps_recreates_and_removes_boxes() {
    assemble_keeps_boxes_as_described("rootless_assemble_creates_keeps_recreates_and_removes_boxes", true);
}
