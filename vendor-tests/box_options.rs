//! What create adds to a toolbox, and what copies one, on a real
//! distribution: Debian bookworm for arm64 (mmdebstrap,
//! tests/common/src/debian.rs) in the real registry, run through QEMU by
//! real podman, as root and as the rootless test user. A home of the
//! container's own (HOME and passwd inside, files landing there on the
//! host, the user's own home still at its path), a volume, a variable
//! seen by `run env`, a device at another path; `clone` keeping the
//! architecture and all of those; `snapshot -o` to an OCI archive that
//! `create --image oci-archive:FILE --arch arm64` makes a container of,
//! with the commit's files and without the first container's options.

use std::path::{Path, PathBuf};
use std::process::Command;

use common::images::index;
use common::podman::PodmanEnv;
use common::real_registry::RealRegistry;
use common::{skip, text};

struct Boxes {
    env: PodmanEnv,
    _reg: RealRegistry,
    image: String,
    mtbx: PathBuf,
    /// The user's own home (where mtbx runs from).
    home: PathBuf,
    /// The user's uid on the host.
    uid: u32,
    /// A host directory the user owns, for the container's home and more.
    base: tempfile::TempDir,
}

impl Boxes {
    fn new(test: &str, rootless: bool) -> Option<Boxes> {
        let Some(mtbx) = std::env::var_os("MTBX_STATIC_BIN").map(PathBuf::from).filter(|p| p.is_file())
        else {
            skip(test, "needs the static mtbx build in MTBX_STATIC_BIN (scripts/test.sh sets it)");
            return None;
        };
        let env = if rootless { PodmanEnv::rootless(test)? } else { PodmanEnv::rootful(test)? };
        if env.user.is_some() {
            // podman 4.3's commit opens a store of its own from storage.conf
            // and fails ("runroot must be set", then "graphroot must be
            // set") with rootless_storage_path alone, which the other
            // tests' environments give: the same store named by all three
            // keys commits (tried by hand with `podman commit` itself;
            // podman still runs with the run root it picks).
            std::fs::write(
                &env.storage_conf,
                format!(
                    "[storage]\nrootless_storage_path = \"{g}\"\ngraphroot = \"{g}\"\nrunroot = \"{}\"\ndriver = \"{}\"\n",
                    env.run.display(),
                    common::podman::rootless_driver(),
                    g = env.graph.display(),
                ),
            )
            .unwrap();
        }
        if !common::have_qemu(mtbx::emu::arch::Arch::parse("arm64").unwrap()) {
            skip(test, "no static QEMU for arm64 (apt-get install qemu-user-static)");
            return None;
        }
        if !Path::new("/dev/fuse").exists() {
            skip(test, "no /dev/fuse on this host to hand to a container");
            return None;
        }
        let tar = common::debian::rootfs(test, "arm64")?;
        let built = common::debian::image(&tar, "arm64", &[]);
        let reg = RealRegistry::start(test)?;
        reg.push("debian-toolbox", "12", &index(&[&built]));
        let image = format!("{}/debian-toolbox:12", reg.addr);
        let mtbx = env.reachable(&mtbx, "mtbx-static");
        let (home, uid) = match &env.user {
            Some(u) => (u.home.clone(), u.uid),
            None => (mtbx::toolbox::HostUser::current().unwrap().home, 0),
        };
        let base = tempfile::Builder::new().prefix("mtbx-box-options-").tempdir_in("/var/tmp").unwrap();
        if let Some(u) = &env.user {
            std::os::unix::fs::chown(base.path(), Some(u.uid), Some(u.gid)).unwrap();
        }
        Some(Boxes { env, _reg: reg, image, mtbx, home, uid, base })
    }

    fn mtbx(&self, args: &[&str]) -> Command {
        let mut c = self.env.command(&self.mtbx, args);
        c.current_dir(&self.home);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.mtbx(args).output().unwrap();
        assert!(out.status.success(), "mtbx {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    fn label(&self, name: &str, label: &str) -> String {
        let format = format!("{{{{index .Config.Labels \"{label}\"}}}}");
        self.env.podman_ok(&["inspect", "--format", &format, name]).trim().to_string()
    }

    /// `list --format json`'s row of container `name`.
    fn row(&self, name: &str) -> serde_json::Value {
        let list: serde_json::Value = serde_json::from_str(&self.ok(&["list", "--format", "json"])).unwrap();
        list["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
    }
}

impl Drop for Boxes {
    fn drop(&mut self) {
        let _ = self.mtbx(&["rm", "--all", "--force"]).output();
    }
}

/// What a shell in the container says about the options.
const REPORT: &str = r#"echo "home=$HOME"
echo "passwd_home=$(getent passwd "$(id -un)" | cut -d: -f6)"
echo "pwd=$(pwd)"
echo "uname=$(uname -m)"
echo "volume=$(cat /srv/vol/hello)"
echo "greeting=$GREETING"
echo "fuse=$(stat -c '%F %t:%T' /run/fuse-dev)"
echo "written" > "$HOME/made-inside"
"#;

fn report(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn options_clone_and_snapshot(test: &str, rootless: bool) {
    let Some(b) = Boxes::new(test, rootless) else { return };
    let own_home = b.base.path().join("homes/dev");
    let vol = b.base.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("hello"), "from the host\n").unwrap();
    let volume = format!("{}:/srv/vol:ro", vol.display());
    let home_arg = own_home.display().to_string();
    let made = b.ok(&[
        "create",
        "-y",
        "--tls-verify=false",
        "--image",
        &b.image,
        "--arch",
        "arm64",
        "--home",
        &home_arg,
        "--volume",
        &volume,
        "--env",
        "GREETING=hello there",
        "--device",
        "/dev/fuse",
        "--device",
        "/dev/fuse:/run/fuse-dev",
        "dev",
    ]);
    assert_eq!(made.trim(), "dev");
    let meta = std::fs::metadata(&own_home).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (b.uid, 0o700), "the home mtbx made");
    let r = report(&b.ok(&["run", "-c", "dev", "sh", "-c", REPORT]));
    let home = own_home.display().to_string();
    assert_eq!(r["home"], home, "{r:?}");
    assert_eq!(r["passwd_home"], home, "{r:?}");
    assert_eq!(
        r["pwd"],
        std::fs::canonicalize(&b.home).unwrap().display().to_string(),
        "the user's home is there"
    );
    assert_eq!(r["uname"], "aarch64");
    assert_eq!(r["volume"], "from the host");
    assert_eq!(r["greeting"], "hello there");
    assert_eq!(r["fuse"], "character special file a:e5", "{r:?}");
    let written = own_home.join("made-inside");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "written\n");
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), b.uid, "files are the user's on the host");
    let env = b.ok(&["run", "-c", "dev", "env"]);
    assert!(env.lines().any(|l| l == "GREETING=hello there"), "{env}");
    assert!(env.lines().any(|l| l == format!("HOME={home}")), "{env}");
    // A volume is read only when asked.
    let out = b.mtbx(&["run", "-c", "dev", "sh", "-c", "echo x > /srv/vol/new"]).output().unwrap();
    assert!(!out.status.success() && !vol.join("new").exists(), "{}", text(&out.stderr));
    let row = b.row("dev");
    assert_eq!(row["home"], home.as_str());
    assert_eq!(row["volumes"], serde_json::json!([volume]));
    assert_eq!(row["env"], serde_json::json!(["GREETING=hello there"]));
    assert_eq!(row["devices"], serde_json::json!(["/dev/fuse", "/dev/fuse:/run/fuse-dev"]));

    // A file of the container's own, which clone and snapshot carry.
    b.env.podman_ok(&["exec", "--user", "root", "dev", "sh", "-c", "echo committed > /opt/mtbx-mark"]);
    assert_eq!(b.ok(&["clone", "dev", "dev2"]).trim(), "dev2");
    let r = report(&b.ok(&["run", "-c", "dev2", "sh", "-c", REPORT]));
    assert_eq!((r["uname"].as_str(), r["home"].as_str()), ("aarch64", home.as_str()), "{r:?}");
    assert_eq!((r["volume"].as_str(), r["greeting"].as_str()), ("from the host", "hello there"));
    assert_eq!(r["fuse"], "character special file a:e5");
    assert_eq!(b.ok(&["run", "-c", "dev2", "cat", "/opt/mtbx-mark"]), "committed\n");
    assert_eq!(b.label("dev2", "io.github.mtbx.arch"), "arm64/v8");
    for l in ["io.github.mtbx.home", "io.github.mtbx.volumes", "io.github.mtbx.env", "io.github.mtbx.devices"]
    {
        assert_eq!(b.label("dev2", l), b.label("dev", l), "{l}");
    }

    // A snapshot, as an OCI archive, made a container again.
    let archive = b.base.path().join("dev.tar");
    let archive_arg = archive.display().to_string();
    let image = b.ok(&["snapshot", "dev", "t1", "-o", &archive_arg]);
    assert_eq!(image.trim(), "localhost/dev-snapshot:t1");
    assert!(b.env.podman(&["image", "exists", "localhost/dev-snapshot:t1"]).status().unwrap().success());
    let from = format!("oci-archive:{archive_arg}");
    b.ok(&["create", "-y", "--image", &from, "--arch", "arm64", "restored"]);
    assert_eq!(b.ok(&["run", "-c", "restored", "cat", "/opt/mtbx-mark"]), "committed\n");
    assert_eq!(b.ok(&["run", "-c", "restored", "uname", "-m"]), "aarch64\n");
    assert_eq!(b.label("restored", "io.github.mtbx.arch"), "arm64/v8");
    // Not the first container's options: its own home is the user's.
    let env = b.ok(&["run", "-c", "restored", "env"]);
    assert!(env.lines().any(|l| l == format!("HOME={}", b.home.display())), "{env}");
    let row = b.row("restored");
    assert!(row["home"].is_null() && row["volumes"] == serde_json::json!([]), "{row}");
    assert!(row["cpu"].is_null(), "{row}");
}

#[test]
fn rootful_own_home_volume_env_device_clone_and_snapshot_arm64() {
    options_clone_and_snapshot("rootful_own_home_volume_env_device_clone_and_snapshot_arm64", false);
}

#[test]
fn rootless_own_home_volume_env_device_clone_and_snapshot_arm64() {
    options_clone_and_snapshot("rootless_own_home_volume_env_device_clone_and_snapshot_arm64", true);
}
