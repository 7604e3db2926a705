//! Parsing of real binfmt_misc entry files, captured from a private
//! instance in a user namespace (fixtures/binfmt/*.entry).

use std::path::Path;

use mtbx::emu::binfmt::{Entry, Matcher};

fn load(name: &str) -> Entry {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/binfmt").join(format!("{name}.entry"));
    let text = std::fs::read_to_string(&path).unwrap();
    Entry::parse(name, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn platforms(e: &Entry) -> Vec<String> {
    e.arches().iter().map(|a| a.platform()).collect()
}

#[test]
fn qemu_entries_parse_with_flags_and_arches() {
    let e = load("qemu-aarch64");
    assert!(e.enabled);
    assert_eq!(e.interpreter, "/usr/bin/qemu-aarch64-static");
    assert_eq!(e.flags.to_string(), "OCF");
    assert!(e.flags.credentials && e.flags.fix_binary && e.flags.open_binary && !e.flags.preserve_argv0);
    assert_eq!(platforms(&e), ["arm64/v8"]);

    let e = load("qemu-arm");
    assert_eq!(e.flags.to_string(), "POF");
    assert_eq!(platforms(&e), ["arm/v7", "arm/v6", "arm/v5"]);

    let e = load("qemu-riscv64");
    assert_eq!(e.flags.to_string(), "PF");
    assert_eq!(platforms(&e), ["riscv64"]);
}

#[test]
fn a_long_mips_mask_matches_mipsle_only() {
    let e = load("qemu-mipsel");
    match &e.matcher {
        Matcher::Magic { offset, magic, mask } => {
            assert_eq!(*offset, 0);
            assert_eq!(magic.len(), 37);
            assert_eq!(mask.as_ref().unwrap().len(), 37);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(platforms(&e), ["mipsle"]);
}

#[test]
fn an_entry_under_another_name_is_found_by_magic() {
    let e = load("zarch-emu");
    assert_eq!(e.flags.to_string(), "POCF");
    assert_eq!(platforms(&e), ["s390x"]);
}

#[test]
fn extension_entries_serve_no_architecture() {
    let e = load("python3.11");
    assert!(!e.enabled);
    assert_eq!(e.matcher, Matcher::Extension("pyc".into()));
    assert!(e.arches().is_empty());
}
