//! `create --cpu` in real podman containers, rootful and rootless: a
//! Debian arm64 toolbox (mmdebstrap, tests/common/src/debian.rs) created
//! with `--cpu cortex-a53` runs every program under that model, so the
//! SVE probe (`mtbx::emu::testprog::probe`) dies of SIGILL there, run
//! directly, through `env -i`, through sudo (env_reset) and as a
//! grandchild; in a twin created without --cpu (QEMU's default, `max`)
//! the same file runs. `list` shows the model; the host's binfmt_misc is
//! untouched.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::images::index;
use common::podman::PodmanEnv;
use common::real_registry::RealRegistry;
use common::{skip, text};

const MODEL: &str = "cortex-a53";

/// The exit codes a shell inside reports for the probe started each way,
/// `key=code` per line, then the check program's output and the model
/// file init-container wrote; last, sudo made unreadable as Fedora, RHEL
/// and UBI ship it (mode 4111): QEMU, started by the shim, must still
/// open it (it runs as sudo's owner).
const SCRIPT: &str = r#"
P=DIR/probe
"$P" >/dev/null 2>&1; echo "direct=$?"
env -i "$P" >/dev/null 2>&1; echo "env_i=$?"
sh -c 'sh -c "\"$0\" >/dev/null 2>&1; echo grandchild=\$?"' "$P"
sudo "$P" >/dev/null 2>&1; echo "sudo=$?"
sudo env -i "$P" >/dev/null 2>&1; echo "sudo_env_i=$?"
echo "check=$(DIR/check)"
echo "sudo_check=$(sudo DIR/check)"
echo "cpu_file=$(cat /run/mtbx/cpu 2>/dev/null || echo none)"
sudo chmod 4111 /usr/bin/sudo && echo "sudo_4111=$(sudo DIR/check)"
"#;

fn static_mtbx(test: &str) -> Option<PathBuf> {
    let p = std::env::var_os("MTBX_STATIC_BIN").map(PathBuf::from).filter(|p| p.is_file());
    if p.is_none() {
        skip(test, "needs the static mtbx build in MTBX_STATIC_BIN (scripts/test.sh sets it)");
    }
    p
}

fn report(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn cpu_model_in_containers(rootless: bool) {
    let test = if rootless {
        "rootless_container_runs_everything_under_its_cpu_model"
    } else {
        "rootful_container_runs_everything_under_its_cpu_model"
    };
    let arm64 = mtbx::emu::arch::Arch::parse("arm64").unwrap();
    let Some(static_bin) = static_mtbx(test) else { return };
    if !common::have_qemu(arm64) {
        return skip(test, "no static QEMU for arm64 (apt-get install qemu-user-static)");
    }
    let binfmt_before = common::host_binfmt_snapshot();
    let Some(env) = (if rootless { PodmanEnv::rootless(test) } else { PodmanEnv::rootful(test) }) else {
        return;
    };
    let Some(tar) = common::debian::rootfs(test, "arm64") else { return };
    let built = common::debian::image(&tar, "arm64", &[]);
    let Some(reg) = RealRegistry::start(test) else { return };
    reg.push("debian-cpu", "12", &index(&[&built]));
    let image = format!("{}/debian-cpu:12", reg.addr);
    let mtbx_bin = env.reachable(&static_bin, "mtbx-static");
    let mtbx = |args: &[&str]| {
        let out = env.command(&mtbx_bin, args).output().unwrap();
        assert!(out.status.success(), "mtbx {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    };

    // The programs, where the containers see them: the host's / is
    // /run/host inside.
    let scratch = tempfile::Builder::new().prefix("mtbx-cpu-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, bytes) in [
        ("probe", mtbx::emu::testprog::probe(arm64).unwrap().program),
        ("check", mtbx::emu::testprog::program(arm64)),
    ] {
        let p = scratch.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let inside = format!("/run/host{}", scratch.path().display());
    let script = SCRIPT.replace("DIR", &inside);

    let (with, without) = ("deb-arm64-a53", "deb-arm64-default");
    let common_args = ["create", "-y", "--tls-verify=false", "--arch", "arm64", "--image", &image];
    mtbx(&[&common_args[..], &["--cpu", MODEL, with]].concat());
    mtbx(&[&common_args[..], &[without]].concat());
    let cleanup = Cleanup(|| {
        let _ = env.command(&mtbx_bin, &["rm", "--force", with, without]).output();
    });

    let r = report(&mtbx(&["run", "-c", with, "sh", "-c", &script]));
    let get = |k: &str| r.get(k).cloned().unwrap_or_else(|| panic!("{with}: no {k} in {r:?}"));
    // 128 + SIGILL: the shell saw the probe die of an illegal instruction.
    for way in ["direct", "env_i", "grandchild", "sudo", "sudo_env_i"] {
        assert_eq!(get(way), "132", "{with}: the probe started {way} runs under {MODEL}: {r:?}");
    }
    assert_eq!(get("check"), "aarch64", "{with}: programs without the feature run: {r:?}");
    assert_eq!(get("sudo_check"), "aarch64", "{with}: {r:?}");
    assert_eq!(get("cpu_file"), MODEL, "{with}: /run/mtbx/cpu");
    assert_eq!(get("sudo_4111"), "aarch64", "{with}: an unreadable setuid sudo: {r:?}");

    let r = report(&mtbx(&["run", "-c", without, "sh", "-c", &script]));
    let get = |k: &str| r.get(k).cloned().unwrap_or_else(|| panic!("{without}: no {k} in {r:?}"));
    for way in ["direct", "env_i", "grandchild", "sudo", "sudo_env_i"] {
        assert_eq!(get(way), "0", "{without}: QEMU's default model has SVE ({way}): {r:?}");
    }
    assert_eq!(get("cpu_file"), "none", "{without}");
    assert_eq!(get("sudo_4111"), "aarch64", "{without}: {r:?}");

    // list: the model in the table and in JSON, none for the twin.
    let rows: serde_json::Value = serde_json::from_str(&mtbx(&["list", "-c", "--format", "json"])).unwrap();
    let row =
        |n: &str| rows["containers"].as_array().unwrap().iter().find(|c| c["name"] == n).cloned().unwrap();
    assert_eq!(row(with)["cpu"], MODEL, "{rows}");
    assert_eq!(row(without)["cpu"], serde_json::Value::Null, "{rows}");
    let table = mtbx(&["list", "-c"]);
    assert!(table.lines().next().unwrap().contains(" CPU "), "{table}");
    let line = table.lines().find(|l| l.starts_with(with)).unwrap();
    assert!(line.contains(MODEL), "{table}");
    // podman's own inspect shows the label.
    let out = env
        .podman(&[
            "container",
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.github.mtbx.cpu\"}}",
            with,
        ])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), MODEL);

    drop(cleanup);
    assert_eq!(common::host_binfmt_snapshot(), binfmt_before, "the host's binfmt_misc is untouched");
}

/// Runs its closure on drop, so containers go even when an assertion fails.
struct Cleanup<F: FnMut()>(F);

impl<F: FnMut()> Drop for Cleanup<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

#[test]
fn rootful_container_runs_everything_under_its_cpu_model() {
    cpu_model_in_containers(false);
}

#[test]
fn rootless_container_runs_everything_under_its_cpu_model() {
    cpu_model_in_containers(true);
}
