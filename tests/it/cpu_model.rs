//! QEMU CPU models (`--cpu`): a program that needs a feature runs or dies
//! of SIGILL according to the model, in the sandbox `arch check` uses,
//! through the shim that mtbx registers in place of QEMU; and a model the
//! installed QEMU does not list, or a model for the host's own
//! architecture, is bad input. (The containers are in the vendor tests.)

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{host_binfmt_snapshot, mtbx, skip, text, userns_binfmt};
use mtbx::emu::arch::Arch;
use mtbx::emu::binfmt::{Flags, Registration};
use mtbx::emu::sandbox::{self, Workdir};

/// The feature probe of `arch` run in a sandbox with QEMU itself
/// registered, as the default model runs it.
fn probe_under_default_model(arch: &Arch) -> std::process::Output {
    let wd = Workdir::new().unwrap();
    let qemu = mtbx::emu::host::find_interpreter(arch, None).usable().unwrap().path.clone();
    let reg = Registration::for_arch(arch, &qemu, Flags::SANDBOX);
    let path = wd.path().join("probe");
    mtbx::emu::check::write_file(&path, &mtbx::emu::testprog::probe(arch).unwrap().program).unwrap();
    sandbox::run(&wd, &[reg], &path, None, &[], Duration::from_secs(60)).unwrap()
}

/// `arch check ARCH --cpu MODEL --format json`: its one row.
fn check_row(arch: &str, model: &str) -> serde_json::Value {
    let out = mtbx(&["arch", "check", arch, "--cpu", model, "--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{arch} {model}: {}{}", text(&out.stdout), text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows[0].clone()
}

#[test]
fn arch_check_cpu_runs_the_sandbox_under_the_model() {
    let name = "arch_check_cpu_runs_the_sandbox_under_the_model";
    if let Err(why) = userns_binfmt() {
        return skip(name, &why);
    }
    let (ppc, arm64) = (Arch::parse("ppc64le").unwrap(), Arch::parse("arm64").unwrap());
    if let Some(a) = [ppc, arm64].into_iter().find(|a| !common::have_qemu(a)) {
        return skip(name, &format!("no static qemu for {a}"));
    }
    let before = host_binfmt_snapshot();

    // ppc64le: qemu's default model (POWER9) lacks ISA 3.1; power10 has it.
    let out = probe_under_default_model(ppc);
    assert_eq!(out.status.signal(), Some(libc::SIGILL), "default model: {out:?}");
    let row = check_row("ppc64le", "power10");
    assert_eq!(row["passed"], true, "{row}");
    assert_eq!(row["uname"], "ppc64le", "{row}");
    assert_eq!(row["method"]["kind"], "sandbox", "{row}");
    assert_eq!(row["cpu"], "power10", "{row}");
    assert_eq!(row["probe"]["available"], true, "power10 runs brh: {row}");
    let row = check_row("ppc64le", "power9");
    assert_eq!(row["probe"]["available"], false, "power9 does not: {row}");
    // QEMU's spelling wins over the user's case.
    assert_eq!(check_row("ppc64le", "POWER10")["cpu"], "power10");

    // arm64: the default (max) has SVE; cortex-a53 does not.
    let out = probe_under_default_model(arm64);
    assert!(out.status.success(), "default model: {out:?}");
    assert_eq!(mtbx::emu::testprog::parse_output(&out.stdout), "aarch64");
    let row = check_row("arm64", "cortex-a53");
    assert_eq!((row["passed"].clone(), row["cpu"].clone()), (true.into(), "cortex-a53".into()), "{row}");
    assert_eq!(row["probe"]["available"], false, "cortex-a53 has no SVE: {row}");

    // The table says the model and the probe too.
    let out = mtbx(&["arch", "check", "ppc64le", "--cpu", "power10"]).output().unwrap();
    let table = text(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("CPU MODEL") && table.contains("power10") && table.contains("ISA 3.1 (brh): yes"),
        "{table}"
    );
    assert_eq!(host_binfmt_snapshot(), before, "the host's binfmt_misc changed");
}

#[test]
fn a_model_qemu_does_not_list_is_bad_input_that_lists_the_valid_ones() {
    let name = "a_model_qemu_does_not_list_is_bad_input_that_lists_the_valid_ones";
    let ppc = Arch::parse("ppc64le").unwrap();
    if !common::have_qemu(ppc) {
        return skip(name, "no static qemu for ppc64le");
    }
    let out = mtbx(&["arch", "check", "ppc64le", "--cpu", "power11"]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("unknown CPU model 'power11' for ppc64le"), "{err}");
    // Near names first, and the list shortened with a count.
    assert!(err.contains("power10,") && err.contains("power9,"), "{err}");
    assert!(err.contains("more (`qemu-ppc64le") && err.contains("-cpu help` lists them)"), "{err}");
    // The host's own architecture never goes through QEMU.
    let host = Arch::host().short_name();
    let out = mtbx(&["arch", "check", &host, "--cpu", "max"]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("runs natively here, without QEMU, so --cpu cannot apply"), "{err}");
    // One model, one architecture.
    let out = mtbx(&["arch", "check", "ppc64le", "arm64", "--cpu", "max"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn create_refuses_a_bad_model_before_anything_is_downloaded() {
    let name = "create_refuses_a_bad_model_before_anything_is_downloaded";
    if std::process::Command::new("podman").arg("--version").output().is_err() {
        return skip(name, "podman not installed");
    }
    let ppc = Arch::parse("ppc64le").unwrap();
    if !common::have_qemu(ppc) {
        return skip(name, "no static qemu for ppc64le");
    }
    // The image is on no registry: the model is refused before any pull.
    let image = "127.0.0.1:9/mtbx-cpu-none:1";
    let out =
        mtbx(&["create", "-y", "--arch", "ppc64le", "--cpu", "power11", "--image", image]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown CPU model 'power11'") && err.lines().count() == 1, "{err}");
    let host = Arch::host().short_name();
    let out = mtbx(&["create", "-y", "--arch", &host, "--cpu", "max", "--image", image]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("runs natively here"), "{err}");
}

#[test]
fn toolbox_conf_cpu_applies_to_containers_of_its_arch_in_both_modes() {
    let name = "toolbox_conf_cpu_applies_to_containers_of_its_arch_in_both_modes";
    if std::process::Command::new("podman").arg("--version").output().is_err() {
        return skip(name, "podman not installed");
    }
    if !common::have_qemu(Arch::parse("ppc64le").unwrap()) {
        return skip(name, "no static qemu for ppc64le");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("containers")).unwrap();
    let conf = dir.path().join("containers/toolbox.conf");
    std::fs::write(&conf, "[general]\narch = \"ppc64le\"\ncpu = \"power11\"\n").unwrap();
    let image = "127.0.0.1:9/mtbx-cpu-none:1";
    let run = |args: &[&str]| mtbx(args).env("XDG_CONFIG_HOME", dir.path()).output().unwrap();
    // mtbx create: the file's model, for the file's architecture.
    let out = run(&["create", "-y", "--arch", "ppc64le", "--image", image]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown CPU model 'power11' for ppc64le"), "{err}");
    // Another architecture does not get it.
    let out = run(&["create", "-y", "--arch", "arm64", "--image", image]);
    assert!(!text(&out.stderr).contains("CPU model"), "{}", text(&out.stderr));
    // toolbox mode reads the same key (its --arch comes from the file too).
    let link = dir.path().join("toolbox");
    std::os::unix::fs::symlink(common::mtbx_bin(), &link).unwrap();
    let out = std::process::Command::new(&link)
        .args(["create", "-y", "--image", image])
        .env("XDG_CONFIG_HOME", dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "Toolbx's exit code: {err}");
    assert!(err.starts_with("Error: ") && err.contains("unknown CPU model 'power11' for ppc64le"), "{err}");
    // A model without its architecture is the file's error.
    std::fs::write(&conf, "[general]\ncpu = \"power10\"\n").unwrap();
    let out = run(&["create", "-y", "--arch", "ppc64le", "--image", image]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`cpu` needs `arch` beside it"), "{err}");
}

/// Each installed QEMU's `-cpu help`, in its own format, read into a list
/// that has the models known to be there; and the probes against QEMU run
/// directly (no binfmt_misc), for x86-64 too, which runs natively here
/// and so never through the sandbox: `qemu64` lacks x86-64-v2, the reason
/// RHEL 9 and UBI images fail on arm64 hosts, and `Nehalem` has it.
#[test]
fn every_installed_qemu_lists_its_models_and_the_probes_hold() {
    let name = "every_installed_qemu_lists_its_models_and_the_probes_hold";
    let expect: &[(&str, &[&str])] = &[
        ("ppc64le", &["power9", "power10", "POWER10"]),
        ("arm64", &["max", "cortex-a53", "a64fx"]),
        ("s390x", &["qemu", "max", "z900-base"]),
        ("arm", &["cortex-a7", "any"]),
        ("riscv64", &["rv64", "sifive-u54"]),
        ("amd64", &["qemu64", "Nehalem", "max", "nehalem"]),
        ("mips64le", &["I6400"]),
    ];
    let mut seen = 0;
    for (arch, models) in expect {
        let a = Arch::parse(arch).unwrap();
        let Some(found) = mtbx::emu::host::find_interpreter(a, None).usable().map(|i| i.path.clone()) else {
            skip(name, &format!("no static qemu-{} for {a}", a.qemu.name));
            continue;
        };
        let listed = mtbx::emu::cpu::models(&found).unwrap_or_else(|e| panic!("{a}: {e}"));
        for m in *models {
            assert!(listed.iter().any(|l| l.eq_ignore_ascii_case(m)), "{a}: {m} not in {listed:?}");
        }
        assert!(listed.iter().all(|l| !l.contains(' ') && !l.contains('\'')), "{a}: {listed:?}");
        seen += 1;
    }
    assert!(seen > 0, "no QEMU installed at all");
    let run = |arch: &str, model: &str| {
        let a = Arch::parse(arch).unwrap();
        let qemu = mtbx::emu::host::find_interpreter(a, None).usable()?.path.clone();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe");
        mtbx::emu::check::write_file(&path, &mtbx::emu::testprog::probe(a).unwrap().program).unwrap();
        Some(std::process::Command::new(qemu).args(["-cpu", model]).arg(&path).output().unwrap())
    };
    for (arch, without, with, uname) in [
        ("amd64", "qemu64", "Nehalem", "x86_64"),
        ("ppc64le", "power9", "power10", "ppc64le"),
        ("arm64", "cortex-a53", "max", "aarch64"),
    ] {
        let (Some(no), Some(yes)) = (run(arch, without), run(arch, with)) else {
            skip(name, &format!("no static qemu for {arch}"));
            continue;
        };
        assert_eq!(no.status.signal(), Some(libc::SIGILL), "{arch} under {without}: {no:?}");
        assert!(yes.status.success(), "{arch} under {with}: {yes:?}");
        assert_eq!(mtbx::emu::testprog::parse_output(&yes.stdout), uname);
    }
}
