//! The emulation check for real: each architecture's generated program runs
//! under the installed qemu-user-static through a private binfmt_misc
//! instance of a new user namespace, and the host's registrations are the
//! same afterwards.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{host_binfmt_snapshot, mtbx, skip, text, userns_binfmt};
use mtbx::emu::arch::{Arch, ARCHES};
use std::time::Duration;

use mtbx::emu::binfmt::{BinfmtFs, Flags};
use mtbx::emu::check::{self, Context, Method};
use mtbx::emu::host::{Capabilities, HostBinfmt};

#[test]
fn every_installed_arch_runs_in_a_private_binfmt_misc() {
    let name = "every_installed_arch_runs_in_a_private_binfmt_misc";
    if let Err(why) = userns_binfmt() {
        return skip(name, &why);
    }
    let before = host_binfmt_snapshot();
    let ctx = Context { host_binfmt: HostBinfmt::read(&BinfmtFs::default()), interpreter: None };
    assert!(Capabilities::probe().sandbox.is_ok());
    let host = Arch::host();
    let mut ran = 0;
    for a in ARCHES.iter().filter(|a| !a.is_native_on(host)) {
        if !common::have_qemu(a) {
            skip(name, &format!("no static qemu-{} for {}", a.qemu.name, a.platform()));
            continue;
        }
        let passed = check::check(a, &ctx).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(passed.method, Method::Sandbox, "{a}");
        assert!(a.uname.contains(&passed.uname.as_str()), "{a}: uname {}", passed.uname);
        ran += 1;
    }
    assert!(ran > 0, "no architecture was checked");
    assert_eq!(host_binfmt_snapshot(), before, "the host's binfmt_misc changed");
}

#[test]
fn the_host_arch_runs_natively() {
    let ctx = Context { host_binfmt: HostBinfmt::read(&BinfmtFs::default()), interpreter: None };
    let passed = check::check(Arch::host(), &ctx).unwrap();
    assert_eq!(passed.method, Method::Native);
    assert_eq!(passed.uname, std::env::consts::ARCH);
}

#[test]
fn cli_check_of_arm64_ppc64le_s390x_riscv64_passes() {
    let name = "cli_check_of_arm64_ppc64le_s390x_riscv64_passes";
    if let Err(why) = userns_binfmt() {
        return skip(name, &why);
    }
    let arches = ["arm64", "ppc64le", "s390x", "riscv64"];
    if let Some(a) = arches.iter().map(|n| Arch::parse(n).unwrap()).find(|a| !common::have_qemu(a)) {
        return skip(name, &format!("no static qemu for {a}"));
    }
    let before = host_binfmt_snapshot();
    let out = mtbx(&["arch", "check", "--format", "json"]).args(arches).output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let expect = ["aarch64", "ppc64le", "s390x", "riscv64"];
    for (row, uname) in rows.iter().zip(expect) {
        assert_eq!(row["passed"], true, "{row}");
        assert_eq!(row["uname"], uname, "{row}");
        assert_eq!(row["method"]["kind"], "sandbox", "{row}");
    }
    // The readable form says the same.
    let out = mtbx(&["arch", "check"]).args(arches).output().unwrap();
    assert!(out.status.success());
    let table = text(&out.stdout);
    assert!(table.starts_with("PLATFORM"), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains(" ok ")).count(), 4, "{table}");
    assert_eq!(host_binfmt_snapshot(), before);
}

#[test]
fn a_wrong_interpreter_fails_the_check() {
    let name = "a_wrong_interpreter_fails_the_check";
    if let Err(why) = userns_binfmt() {
        return skip(name, &why);
    }
    let ppc = Arch::parse("ppc64").unwrap();
    let Some(wrong) = mtbx::emu::host::find_interpreter(ppc, None).usable().map(|s| s.path.clone()) else {
        return skip(name, "no qemu-ppc64-static");
    };
    // qemu-ppc64 cannot run an arm64 program: the check must see that.
    let out = mtbx(&["arch", "check", "arm64", "--qemu"]).arg(&wrong).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("arm64/v8: the test program ended with"), "{err}");
}

#[test]
fn cli_errors_are_one_line_with_a_nonzero_exit() {
    // An unknown architecture is bad input (2, as README's exit codes
    // say for every command); a check that cannot run is a failure (1).
    let cases: &[(&[&str], &str, i32)] = &[
        (&["arch", "check", "vax"], "unknown architecture 'vax'; valid names: amd64", 2),
        (&["arch", "check", "arm64", "--qemu", "/bin/sh"], "is dynamically linked", 1),
        (&["arch", "check", "arm64", "--qemu", "/nonexistent/qemu"], "cannot read /nonexistent/qemu", 1),
        (&["arch", "check", "arm64", "--qemu", "/etc/hostname"], "is not an ELF executable", 1),
        // Usage: 2, as README's exit codes say for bad input.
        (&["arch", "check", "arm64", "s390x", "--qemu", "/bin/true"], "give exactly one ARCH", 2),
        (&["binfmt", "register", "--arch", "amd64", "--dry-run"], "runs natively", 2),
        (&["binfmt", "register", "--arch", "arm64", "--export", "rc\x1b[2J", "/tmp"], "'rc\\u{1b}[2J'", 2),
    ];
    for (args, needle, code) in cases {
        let out = mtbx(args).output().unwrap();
        assert_eq!(out.status.code(), Some(*code), "{args:?}");
        let err = text(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(lines[0].starts_with("mtbx: error: "), "{err}");
        assert!(lines[0].contains(needle), "{args:?}: {err}");
    }
}

/// The check needs no root: run it as nobody.
#[test]
fn an_unprivileged_user_can_check() {
    let name = "an_unprivileged_user_can_check";
    if let Err(why) = userns_binfmt() {
        return skip(name, &why);
    }
    if !common::have_qemu(Arch::parse("arm64").unwrap()) {
        return skip(name, "no qemu-aarch64-static");
    }
    if !nix::unistd::geteuid().is_root() {
        // Already unprivileged.
        let out = mtbx(&["arch", "check", "arm64", "--format", "json"]).output().unwrap();
        return assert_user_check(out);
    }
    // As root, drop to nobody with a copy of the binary nobody can
    // execute (the build tree may be private).
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("mtbx");
    std::fs::copy(common::mtbx_bin(), &bin).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(["arch", "check", "arm64", "--format", "json"])
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    assert_user_check(out);
}

fn assert_user_check(out: std::process::Output) {
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["uname"], "aarch64");
    assert_eq!(rows[0]["method"]["kind"], "sandbox");
}

#[test]
fn arch_list_tells_the_truth_about_the_host() {
    let out = mtbx(&["arch", "list", "--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["host"], Arch::host().platform());
    assert_eq!(report["sandbox_available"], userns_binfmt().is_ok());
    let host = BinfmtFs::default();
    assert_eq!(report["host_binfmt_mounted"], host.is_mounted());
    let hb = HostBinfmt::read(&host);
    let rows = report["arches"].as_array().unwrap();
    assert_eq!(rows.len(), ARCHES.len());
    for (row, a) in rows.iter().zip(ARCHES) {
        assert_eq!(row["platform"], a.platform());
        let native = a.is_native_on(Arch::host());
        assert_eq!(row["native"], native);
        if !native {
            assert_eq!(row["interpreter"].is_object(), common::have_qemu(a), "{row}");
            assert_eq!(row["interpreter_problem"].is_string(), !common::have_qemu(a), "{row}");
        }
        let entry = hb.entries.iter().find(|e| e.serves(a)).map(|e| e.name.clone());
        assert_eq!(row["host_entry"]["name"].as_str().map(String::from), entry, "{row}");
        let sandbox = !native && common::have_qemu(a) && userns_binfmt().is_ok();
        assert_eq!(row["sandbox"], sandbox, "{row}");
    }
    let table = mtbx(&["arch", "list"]).output().unwrap();
    let table = text(&table.stdout);
    assert!(table.lines().next().unwrap().starts_with("PLATFORM  UNAME"), "{table}");
    assert!(table.contains("\namd64 "), "{table}");
}

/// Where no user namespace can be made (here: a namespace whose
/// user.max_user_namespaces is 0), the check falls back to an existing
/// registration of the namespace mtbx runs in, says so, and otherwise says
/// what to run. `arch list` reports the sandbox as unavailable.
#[test]
fn without_a_sandbox_the_check_uses_an_existing_entry_or_says_what_to_run() {
    let name = "without_a_sandbox_the_check_uses_an_existing_entry_or_says_what_to_run";
    if let Err(why) = userns_binfmt() {
        return skip(name, &why);
    }
    for a in ["arm64", "riscv64"] {
        if !common::have_qemu(Arch::parse(a).unwrap()) {
            return skip(name, &format!("no static qemu for {a}"));
        }
    }
    let out = common::in_userns(
        r#"echo 0 > /proc/sys/user/max_user_namespaces
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        "$MTBX" arch list --format json > "$W/list.json"
        "$MTBX" binfmt register --arch arm64 --persistent > /dev/null
        if "$MTBX" arch check arm64 riscv64 --format json > "$W/check.json" 2> "$W/err.txt"; then exit 40; fi
        cat "$W/list.json"; echo ---; cat "$W/check.json"; echo ---; cat "$W/err.txt""#,
    );
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    let parts: Vec<&str> = stdout.split("---\n").collect();
    let list: serde_json::Value = serde_json::from_str(parts[0]).unwrap();
    assert_eq!(list["sandbox_available"], false);
    assert!(list["sandbox_problem"].as_str().unwrap().contains("creating a user namespace failed"));
    let rows: serde_json::Value = serde_json::from_str(parts[1]).unwrap();
    assert_eq!(rows[0]["passed"], true, "{rows}");
    assert_eq!(rows[0]["uname"], "aarch64");
    assert_eq!(rows[0]["method"], serde_json::json!({"kind": "host-entry", "entry": "qemu-aarch64"}));
    assert_eq!(rows[1]["passed"], false);
    let err = parts[2];
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("riscv64: cannot emulate") && err.contains("mtbx binfmt register --arch riscv64"),
        "{err}"
    );
}

/// The sandbox registers with P: a foreign program sees the argv[0] it was
/// started with. Debian's arm64 busybox (setup.sh fetches it) runs the
/// applet its argv[0] names; without P it would see its own path and print
/// its usage instead. The same program through an entry without P shows
/// the difference, so the test cannot pass by accident.
#[test]
fn the_sandbox_preserves_argv0() {
    let name = "the_sandbox_preserves_argv0";
    if let Err(why) = userns_binfmt() {
        return skip(name, &why);
    }
    let arm64 = Arch::parse("arm64").unwrap();
    if arm64.is_native_on(Arch::host()) {
        return skip(name, "arm64 is this host's own architecture");
    }
    let busybox =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-assets/busybox/arm64/busybox");
    if !common::have_qemu(arm64) || !busybox.exists() {
        return skip(name, "needs qemu-aarch64-static and target/test-assets (scripts/setup.sh as root)");
    }
    let qemu = mtbx::emu::host::find_interpreter(arm64, None).usable().unwrap().path.clone();
    let wd = mtbx::emu::sandbox::Workdir::new().unwrap();
    let run = |flags| {
        let reg = mtbx::emu::binfmt::Registration::for_arch(arm64, &qemu, flags);
        let out = mtbx::emu::sandbox::run(
            &wd,
            &[reg],
            &busybox,
            Some("echo"),
            &["argv0", "kept"],
            Duration::from_secs(60),
        )
        .unwrap();
        text(&out.stdout)
    };
    assert_eq!(run(Flags::SANDBOX), "argv0 kept\n");
    assert_ne!(run(Flags::parse("F").unwrap()), "argv0 kept\n", "without P argv[0] is the path");
}
