//! mtbx against QEMU's own binfmt_misc registrations on the same inputs.
//!
//! Debian's qemu-user-static installs /usr/lib/binfmt.d/qemu-*.conf, the
//! lines qemu-binfmt-conf.sh generates. These tests register the vendor's
//! lines, exactly as shipped, into a private binfmt_misc instance of a user
//! namespace and check that (1) `mtbx binfmt status` identifies every one
//! of them by its magic, and (2) mtbx's generated programs run through the
//! vendor's entries and report the right `uname -m`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::{in_userns, skip, text, userns_binfmt};
use mtbx::emu::arch::{Arch, ARCHES};

fn vendor_confs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/usr/lib/binfmt.d")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.file_name().unwrap().to_string_lossy().starts_with("qemu-"));
    v.sort();
    v
}

fn ready(test: &str) -> Option<Vec<PathBuf>> {
    if let Err(why) = userns_binfmt() {
        skip(test, &why);
        return None;
    }
    let confs = vendor_confs();
    if confs.is_empty() {
        skip(test, "no /usr/lib/binfmt.d/qemu-*.conf (install qemu-user-static)");
        return None;
    }
    Some(confs)
}

#[test]
fn status_identifies_every_vendor_entry_by_magic() {
    let Some(confs) = ready("status_identifies_every_vendor_entry_by_magic") else { return };
    let script = r#"D=$(mktemp -d -p "$W"); mount -t binfmt_misc binfmt_misc "$D"
        for f in /usr/lib/binfmt.d/qemu-*.conf; do grep '^:' "$f" > "$D/register"; done
        "$MTBX" binfmt status --binfmt-dir "$D" --format json"#;
    let out = in_userns(script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = status["entries"].as_array().unwrap();
    assert_eq!(entries.len(), confs.len());
    for e in entries {
        let name = e["name"].as_str().unwrap();
        let target = name.strip_prefix("qemu-").unwrap();
        // What the table says this QEMU target serves, by name...
        let expected: Vec<String> =
            ARCHES.iter().filter(|a| a.qemu.name == target).map(|a| a.platform()).collect();
        // ...must be what mtbx reads off the vendor's magic and mask.
        let found: Vec<String> =
            e["arches"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        assert_eq!(found, expected, "{name}");
        assert_eq!(e["flags"], "POF", "{name}: Debian registers with flags OPF");
    }
}

#[test]
fn mtbx_programs_run_through_vendor_entries() {
    let Some(_) = ready("mtbx_programs_run_through_vendor_entries") else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let host = Arch::host();
    let mut runs = String::new();
    let mut expected = Vec::new();
    for a in ARCHES.iter().filter(|a| !a.is_native_on(host)) {
        let conf = format!("/usr/lib/binfmt.d/{}.conf", a.binfmt_name());
        if !std::path::Path::new(&conf).exists() {
            continue;
        }
        let p = dir.path().join(a.short_name());
        std::fs::write(&p, mtbx::emu::testprog::program(a)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        runs.push_str(&format!("{0} > {0}.out\n", p.display()));
        expected.push(a);
    }
    let script = format!(
        r#"D=$(mktemp -d -p "$W"); mount -t binfmt_misc binfmt_misc "$D"
        for f in /usr/lib/binfmt.d/qemu-*.conf; do grep '^:' "$f" > "$D/register"; done
        {runs}"#
    );
    let out = in_userns(&script);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(expected.len() >= 10, "only {} architectures compared", expected.len());
    for a in expected {
        let raw = std::fs::read(dir.path().join(format!("{}.out", a.short_name()))).unwrap();
        let uname = mtbx::emu::testprog::parse_output(&raw);
        assert!(a.uname.contains(&uname.as_str()), "{a}: vendor entry ran it as '{uname}'");
    }
}
