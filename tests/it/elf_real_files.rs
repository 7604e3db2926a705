//! The static-ELF check on real files: programs compiled here as static,
//! static-pie and dynamic, Debian's qemu-*-static, a script, a truncated
//! copy, and (when CI names it) mtbx's own release binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use mtbx::emu::arch::Arch;
use mtbx::emu::elf::{check_static, ElfError, Linkage};

/// Compile a tiny C program with `cc FLAGS`; None when there is no compiler
/// or no static libc.
fn compile(dir: &Path, name: &str, flags: &[&str]) -> Option<PathBuf> {
    let src = dir.join("hello.c");
    std::fs::write(&src, "int main(void){return 0;}\n").unwrap();
    let out = dir.join(name);
    let ok = Command::new("cc").args(flags).arg("-o").arg(&out).arg(&src).status().ok()?.success();
    ok.then_some(out)
}

#[test]
fn compiled_static_static_pie_and_dynamic_programs() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arch::host();
    let Some(stat) = compile(dir.path(), "static", &["-static", "-no-pie"]) else {
        common::skip(
            "compiled_static_static_pie_and_dynamic_programs",
            "cc -static failed (install gcc, libc6-dev)",
        );
        return;
    };
    assert_eq!(check_static(&stat, host).unwrap().linkage, Linkage::Static);

    let pie = compile(dir.path(), "static-pie", &["-static-pie"]).expect("cc -static-pie");
    assert_eq!(check_static(&pie, host).unwrap().linkage, Linkage::StaticPie);

    let dynamic = compile(dir.path(), "dynamic", &[]).expect("cc");
    match check_static(&dynamic, host).unwrap_err() {
        ElfError::Dynamic { interpreter, needed, .. } => {
            assert!(interpreter.is_some());
            assert!(needed.iter().any(|n| n.starts_with("libc.so")), "{needed:?}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn debian_qemu_user_static_is_accepted_as_static_pie() {
    let path = Path::new("/usr/bin/qemu-aarch64-static");
    if !path.exists() {
        common::skip("debian_qemu_user_static_is_accepted_as_static_pie", "qemu-user-static not installed");
        return;
    }
    let info = check_static(path, Arch::host()).unwrap();
    assert_eq!(info.linkage, Linkage::StaticPie);
}

#[test]
fn scripts_and_truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("qemu-aarch64");
    std::fs::write(&script, "#!/bin/sh\nexec true\n").unwrap();
    assert!(matches!(check_static(&script, Arch::host()), Err(ElfError::NotElf { .. })));

    let real = std::fs::read("/bin/sh").unwrap();
    let cut = dir.path().join("cut");
    std::fs::write(&cut, &real[..100]).unwrap();
    let err = check_static(&cut, Arch::host()).unwrap_err();
    assert!(matches!(err, ElfError::Malformed { .. }), "{err}");
    assert!(!err.to_string().contains('\n'));

    let missing = check_static(&dir.path().join("nope"), Arch::host()).unwrap_err();
    assert!(matches!(missing, ElfError::Read { .. }));
}

/// CI builds `--target x86_64-unknown-linux-musl --release` and names the
/// result in MTBX_STATIC_BIN: mtbx must be static to run in any container.
#[test]
fn release_binary_is_static() {
    let Some(bin) = std::env::var_os("MTBX_STATIC_BIN") else {
        common::skip(
            "release_binary_is_static",
            "MTBX_STATIC_BIN not set (CI builds the musl release and sets it)",
        );
        return;
    };
    let info = check_static(Path::new(&bin), Arch::host()).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(info.linkage, Linkage::Static | Linkage::StaticPie));
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(common::text(&out.stdout).starts_with("mtbx "));
}
