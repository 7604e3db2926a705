//! The architecture table against QEMU's own: Debian generates
//! /usr/lib/binfmt.d/qemu-*.conf from qemu-binfmt-conf.sh, so every row
//! whose file is installed must carry exactly those magic and mask bytes.

use mtbx::emu::arch::qemu_targets;

/// Decode the `\xHH` escapes of a binfmt.d field; other bytes are literal.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
            i += 4;
        } else if b[i] == b'\\' {
            out.push(b[i + 1]);
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn magic_and_mask_match_qemu_binfmt_conf() {
    let dir = std::path::Path::new("/usr/lib/binfmt.d");
    let mut compared = 0;
    for a in qemu_targets() {
        let file = dir.join(format!("{}.conf", a.binfmt_name()));
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let line = text.lines().find(|l| l.starts_with(':')).expect("a register line");
        let fields: Vec<&str> = line.split(':').collect();
        assert_eq!(fields[1], a.binfmt_name());
        assert_eq!(fields[2], "M");
        assert_eq!(unescape(fields[4]), a.qemu.magic, "{a}: magic differs from {}", file.display());
        assert_eq!(unescape(fields[5]), a.qemu.mask, "{a}: mask differs from {}", file.display());
        compared += 1;
    }
    if compared == 0 {
        common::skip(
            "magic_and_mask_match_qemu_binfmt_conf",
            "no /usr/lib/binfmt.d/qemu-*.conf (install qemu-user-static)",
        );
        return;
    }
    // Debian ships every foreign target of the table; the host's own family
    // (x86 on amd64) is left out by qemu-binfmt-conf.sh itself.
    assert!(compared >= qemu_targets().count() - 2, "only {compared} targets compared");
}
