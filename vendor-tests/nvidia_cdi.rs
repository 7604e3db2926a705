//! NVIDIA through the Container Device Interface, as Toolbx applies it,
//! in mtbx's own containers on a real Debian image (amd64 and arm64 in
//! one index in the real registry), rootful and as the rootless test
//! user. No GPU here: the test writes the spec where `run` would save the
//! driver's (the user's Toolbx runtime directory), as Toolbx's own tests
//! do. At the start, the native container gets the spec's mount, its
//! link and its linker configuration; a broken spec stops the start with
//! Toolbx's words, and the arm64 container skips the spec with a warning
//! (rootless only: root's runtime directory is every rootful test's, so
//! there the spec is only a valid one, present for one native start).

use std::path::PathBuf;
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
    /// The user's Toolbx runtime directory on the host.
    runtime: PathBuf,
    /// What the test made of it, removed after.
    made: Vec<PathBuf>,
    /// A host directory the spec mounts.
    driver: tempfile::TempDir,
    /// The rootless user's XDG_RUNTIME_DIR.
    xdg: Option<tempfile::TempDir>,
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
        // The user's runtime directory: a private one as XDG_RUNTIME_DIR,
        // so no other test's containers (same user, none) read this spec;
        // root's is always /run/toolbox, so the rootful test gives only a
        // valid spec, which other rootful containers starting meanwhile
        // may apply harmlessly.
        let (home, runtime, xdg) = match &env.user {
            Some(u) => {
                let xdg = tempfile::Builder::new().prefix("mtbx-cdi-xdg-").tempdir_in("/var/tmp").unwrap();
                std::os::unix::fs::chown(xdg.path(), Some(u.uid), Some(u.gid)).unwrap();
                std::fs::set_permissions(xdg.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .unwrap();
                (u.home.clone(), xdg.path().join("toolbox"), Some(xdg))
            }
            None => (mtbx::toolbox::HostUser::current().unwrap().home, PathBuf::from("/run/toolbox"), None),
        };
        let mut made = Vec::new();
        if !runtime.exists() {
            std::fs::create_dir(&runtime).unwrap();
            std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
            if let Some(u) = &env.user {
                std::os::unix::fs::chown(&runtime, Some(u.uid), Some(u.gid)).unwrap();
            }
            made.push(runtime.clone());
        }
        let driver = tempfile::Builder::new().prefix("mtbx-cdi-driver-").tempdir_in("/var/tmp").unwrap();
        std::fs::set_permissions(driver.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(driver.path().join("libnvidia-test.so.1"), "not a library\n").unwrap();
        Some(Setup { env, _reg: reg, image, mtbx, home, runtime, made, driver, xdg })
    }

    fn mtbx(&self, args: &[&str]) -> Output {
        let xdg = self.xdg.as_ref().map(|d| format!("XDG_RUNTIME_DIR={}", d.path().display()));
        let mut all: Vec<&str> = xdg.iter().map(String::as_str).collect();
        all.push(self.mtbx.to_str().unwrap());
        all.extend_from_slice(args);
        let mut c = self.env.command(std::path::Path::new("env"), &all);
        c.current_dir(&self.home);
        c.output().unwrap()
    }

    fn spec(&self, text: &str) {
        let file = self.runtime.join("cdi-nvidia.json");
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // One at a time: rm refuses a list with a name it does not know
        // (the rootful test makes no cdi-arm), and removes none of it.
        for name in ["cdi-native", "cdi-arm"] {
            let _ = self.mtbx(&["rm", "--force", name]);
        }
        let _ = std::fs::remove_file(self.runtime.join("cdi-nvidia.json"));
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn cdi_spec_applied_at_each_start(test: &str, rootless: bool) {
    let Some(s) = Setup::new(test, rootless) else { return };
    for (name, arch) in [("cdi-native", None), ("cdi-arm", Some("arm64"))] {
        if arch.is_some() && !rootless {
            continue;
        }
        let mut args = vec!["create", "-y", "--tls-verify=false", "--image", &s.image, name];
        if let Some(a) = arch {
            args.extend(["--arch", a]);
        }
        let out = s.mtbx(&args);
        assert!(out.status.success(), "create {name}: {}", text(&out.stderr));
    }
    let driver = s.driver.path().display().to_string();
    s.spec(&format!(
        r#"{{"cdiVersion":"0.6.0","kind":"nvidia.com/gpu","containerEdits":{{
            "mounts":[{{"hostPath":"{driver}","containerPath":"/usr/lib/nvidia-test","options":["ro","nosuid","nodev","bind"]}}],
            "hooks":[
              {{"hookName":"createContainer","path":"/usr/bin/nvidia-cdi-hook","args":["nvidia-cdi-hook","create-symlinks","--link","libnvidia-test.so.1::/usr/lib/nvidia-test-link/libnvidia-test.so"]}},
              {{"hookName":"createContainer","path":"/usr/bin/nvidia-cdi-hook","args":["nvidia-cdi-hook","update-ldcache","--folder","/usr/lib/nvidia-test"]}}]}}}}"#
    ));
    let out = s.mtbx(&[
        "run",
        "-c",
        "cdi-native",
        "sh",
        "-c",
        "cat /usr/lib/nvidia-test/libnvidia-test.so.1; readlink /usr/lib/nvidia-test-link/libnvidia-test.so; \
         tail -n 1 /etc/ld.so.conf.d/toolbx-nvidia.conf; touch /usr/lib/nvidia-test/x 2>/dev/null || echo read-only",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "not a library\nlibnvidia-test.so.1\n/usr/lib/nvidia-test\nread-only\n");
    if !rootless {
        // Root's runtime directory is every rootful test's: the spec goes
        // as soon as it was seen applied.
        let _ = std::fs::remove_file(s.runtime.join("cdi-nvidia.json"));
        return;
    }
    // A foreign container: the driver is the host's architecture.
    let out = s.mtbx(&["run", "-c", "cdi-arm", "sh", "-c", "test -e /usr/lib/nvidia-test || echo none"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "none\n");
    assert!(
        text(&out.stderr).contains("NVIDIA's driver is of the host's architecture"),
        "{}",
        text(&out.stderr)
    );
    // A broken spec stops the next start, in Toolbx's words.
    assert!(s.mtbx(&["stop", "cdi-native"]).status.success());
    s.spec("This is not JSON\n");
    let out = s.mtbx(&["run", "-c", "cdi-native", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("failed to load Container Device Interface for NVIDIA"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn rootful_nvidia_cdi_spec_is_applied_as_toolbx_applies_it() {
    cdi_spec_applied_at_each_start("rootful_nvidia_cdi_spec_is_applied_as_toolbx_applies_it", false);
}

#[test]
fn rootless_nvidia_cdi_spec_is_applied_as_toolbx_applies_it() {
    cdi_spec_applied_at_each_start("rootless_nvidia_cdi_spec_is_applied_as_toolbx_applies_it", true);
}
