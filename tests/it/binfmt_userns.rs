//! `mtbx binfmt` against a real binfmt_misc: each test runs the mtbx binary
//! as root of a new user namespace (util-linux `unshare -Urm`), where the
//! kernel (>= 6.7) gives it an instance of its own. The host's instance is
//! compared before and after every test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{host_binfmt_snapshot, in_userns, skip, text, userns_binfmt};
use mtbx::emu::arch::Arch;
use mtbx::emu::binfmt::{Flags, Registration};

/// Preconditions of every test here; the reason when one is missing.
fn ready() -> Result<(), String> {
    userns_binfmt()?;
    if !common::have_qemu(Arch::parse("arm64").unwrap()) {
        return Err("no static qemu-aarch64 (install qemu-user-static)".into());
    }
    Ok(())
}

/// The generated arm64 program, written executable into `dir`.
fn arm64_program(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("hello-arm64");
    std::fs::write(&p, mtbx::emu::testprog::program(Arch::parse("arm64").unwrap())).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn register_run_disable_enable_unregister() {
    if let Err(why) = ready() {
        return skip("register_run_disable_enable_unregister", &why);
    }
    let before = host_binfmt_snapshot();
    let dir = tempfile::tempdir().unwrap();
    let prog = arm64_program(dir.path());
    let out_dir = dir.path();
    let script = format!(
        r#"
        D=$(mktemp -d -p "$W"); P={prog}; O={out}
        # mtbx mounts the namespace's own instance itself.
        "$MTBX" binfmt register --arch arm64 --persistent --binfmt-dir "$D" > "$O/register.txt"
        "$P" > "$O/run1"
        "$MTBX" binfmt status --binfmt-dir "$D" --format json > "$O/status.json"
        "$MTBX" binfmt disable --arch aarch64 --binfmt-dir "$D" > /dev/null
        if "$P" 2>/dev/null; then echo "ran while disabled"; exit 10; fi
        "$MTBX" binfmt enable --arch arm64 --binfmt-dir "$D" > /dev/null
        "$P" > "$O/run2"
        "$MTBX" binfmt unregister --arch arm64 --binfmt-dir "$D" --format json > "$O/unregister.json"
        if "$P" 2>/dev/null; then echo "ran after unregister"; exit 11; fi
        "$MTBX" binfmt status --binfmt-dir "$D" --format json > "$O/status-after.json"
        "#,
        prog = prog.display(),
        out = out_dir.display()
    );
    let out = in_userns(&script);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let read = |n: &str| std::fs::read(out_dir.join(n)).unwrap();
    assert_eq!(mtbx::emu::testprog::parse_output(&read("run1")), "aarch64");
    assert_eq!(mtbx::emu::testprog::parse_output(&read("run2")), "aarch64");
    assert!(text(&read("register.txt")).contains("qemu-aarch64  arm64/v8  F      registered"));

    let status: serde_json::Value = serde_json::from_slice(&read("status.json")).unwrap();
    assert_eq!(status["mounted"], true);
    let entries = status["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{status}");
    assert_eq!(entries[0]["name"], "qemu-aarch64");
    assert_eq!(entries[0]["flags"], "F");
    assert_eq!(entries[0]["enabled"], true);
    assert_eq!(entries[0]["arches"], serde_json::json!(["arm64/v8"]));

    let unreg: serde_json::Value = serde_json::from_slice(&read("unregister.json")).unwrap();
    assert_eq!(unreg[0]["outcome"], "removed");
    let after: serde_json::Value = serde_json::from_slice(&read("status-after.json")).unwrap();
    assert_eq!(after["entries"], serde_json::json!([]));
    assert_eq!(host_binfmt_snapshot(), before);
}

#[test]
fn flags_reach_the_kernel_as_asked() {
    if let Err(why) = ready() {
        return skip("flags_reach_the_kernel_as_asked", &why);
    }
    let before = host_binfmt_snapshot();
    let out = in_userns(
        r#"D=$(mktemp -d -p "$W")
        "$MTBX" binfmt register --arch arm64 --persistent --credential --preserve-argv0 --binfmt-dir "$D" >/dev/null
        "$MTBX" binfmt register --arch s390x --binfmt-dir "$D" >/dev/null
        cat "$D/qemu-aarch64"; echo ---; cat "$D/qemu-s390x""#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let (arm, s390) = stdout.split_once("---\n").unwrap();
    assert!(arm.contains("flags: POCF"), "{arm}");
    assert!(s390.contains("flags: \n"), "{s390}");
    assert_eq!(host_binfmt_snapshot(), before);
}

#[test]
fn a_conflicting_registration_is_refused_and_the_entry_kept() {
    if let Err(why) = ready() {
        return skip("a_conflicting_registration_is_refused_and_the_entry_kept", &why);
    }
    let out = in_userns(
        r#"D=$(mktemp -d -p "$W")
        "$MTBX" binfmt register --arch arm64 --persistent --credential --binfmt-dir "$D" >/dev/null
        "$MTBX" binfmt register --arch arm64 --persistent --credential --binfmt-dir "$D" --format json > "$W/again.json" || exit 20
        cat "$W/again.json"; echo ---
        if "$MTBX" binfmt register --arch arm64 --persistent --binfmt-dir "$D"; then exit 21; fi
        echo ---; cat "$D/qemu-aarch64""#,
    );
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    let parts: Vec<&str> = stdout.split("---\n").collect();
    let again: serde_json::Value = serde_json::from_str(parts[0]).unwrap();
    assert_eq!(again[0]["outcome"], "already-registered");
    assert!(parts[1].contains("failed") && parts[1].contains("already exists"), "{}", parts[1]);
    assert!(parts[2].contains("flags: OCF"), "{}", parts[2]);
}

#[test]
fn bad_interpreters_register_nothing() {
    if let Err(why) = ready() {
        return skip("bad_interpreters_register_nothing", &why);
    }
    let out = in_userns(
        r#"D=$(mktemp -d -p "$W")
        for q in /bin/sh /nonexistent /etc/hostname; do
          if "$MTBX" binfmt register --arch arm64 --persistent --qemu $q --binfmt-dir "$D" 2>>"$W/err.txt"; then exit 30; fi
        done
        cat "$W/err.txt"; echo ---; ls "$D""#,
    );
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    let (errs, listing) = stdout.split_once("---\n").unwrap();
    assert_eq!(errs.lines().count(), 3, "{errs}");
    assert!(errs.contains("dynamically linked"), "{errs}");
    assert!(errs.contains("not an ELF"), "{errs}");
    let names: Vec<&str> = listing.split_whitespace().collect();
    assert_eq!(names, ["register", "status"], "an entry was left behind");
}

#[test]
fn dry_run_and_export_change_nothing() {
    if let Err(why) = ready() {
        return skip("dry_run_and_export_change_nothing", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("binfmt.d");
    let script = format!(
        r#"D=$(mktemp -d -p "$W"); mount -t binfmt_misc binfmt_misc "$D"
        "$MTBX" binfmt register --arch all --persistent --dry-run --binfmt-dir "$D"
        echo ---
        "$MTBX" binfmt register --arch all --persistent --export systemd {export} --binfmt-dir "$D" >/dev/null
        ls "$D""#,
        export = export.display()
    );
    let out = in_userns(&script);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    let (dry, listing) = stdout.split_once("---\n").unwrap();
    assert_eq!(listing.split_whitespace().collect::<Vec<_>>(), ["register", "status"]);

    let arm64 = Arch::parse("arm64").unwrap();
    let interp = mtbx::emu::host::find_interpreter(arm64, None).usable().unwrap().path.clone();
    let line = Registration::for_arch(arm64, &interp, Flags::parse("F").unwrap()).line().unwrap();
    assert!(dry.lines().any(|l| l == line), "dry run does not print {line}:\n{dry}");
    let file = std::fs::read_to_string(export.join("qemu-aarch64.conf")).unwrap();
    assert_eq!(file, format!("{line}\n"));
    // Every exported file is one register line the kernel would take.
    for f in std::fs::read_dir(&export).unwrap() {
        let f = f.unwrap().path();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.starts_with(":qemu-") && text.ends_with(":F\n"), "{}: {text}", f.display());
    }
}

/// Exported files register for real: what binfmt.d would do at boot.
#[test]
fn exported_files_are_accepted_by_the_kernel() {
    if let Err(why) = ready() {
        return skip("exported_files_are_accepted_by_the_kernel", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let prog = arm64_program(dir.path());
    let export = dir.path().join("binfmt.d");
    let script = format!(
        r#"D=$(mktemp -d -p "$W"); mount -t binfmt_misc binfmt_misc "$D"
        "$MTBX" binfmt register --arch all --persistent --export systemd {export} >/dev/null
        for f in {export}/*.conf; do cat "$f" > "$D/register"; done
        {prog}"#,
        export = export.display(),
        prog = prog.display()
    );
    let out = in_userns(&script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mtbx::emu::testprog::parse_output(&out.stdout), "aarch64");
}

/// Without root, the host's instance is out of bounds, and nothing changes.
#[test]
fn the_host_instance_needs_root() {
    let before = host_binfmt_snapshot();
    let mut cmd;
    let dir = tempfile::tempdir().unwrap();
    if nix::unistd::geteuid().is_root() {
        let bin = dir.path().join("mtbx");
        std::fs::copy(common::mtbx_bin(), &bin).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(bin);
    } else {
        cmd = Command::new(common::mtbx_bin());
    }
    for args in [
        &["binfmt", "register", "--arch", "arm64", "--persistent"][..],
        &["binfmt", "unregister", "--arch", "all"][..],
        &["binfmt", "disable", "--arch", "arm64"][..],
    ] {
        let mut c = Command::new(cmd.get_program());
        c.args(cmd.get_args()).args(args);
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("needs root"), "{args:?}: {err}");
    }
    assert_eq!(host_binfmt_snapshot(), before);
}
