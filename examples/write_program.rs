//! Write mtbx's generated emulation check program for an architecture to a
//! file: `cargo run --example write_program -- arm64 /tmp/prog`. Used by the
//! benchmarks to time the manual way on the very same program. With
//! `--probe`, the feature probe instead (`mtbx::emu::testprog::probe`).

use std::os::unix::fs::PermissionsExt;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let probe = args.iter().position(|a| a == "--probe").map(|i| args.remove(i)).is_some();
    let [arch, out] = args.as_slice() else {
        anyhow::bail!("usage: write_program [--probe] ARCH FILE");
    };
    let arch = mtbx::emu::arch::Arch::parse(arch)?;
    let bytes = if probe {
        match mtbx::emu::testprog::probe(arch) {
            Some(p) => p.program,
            None => anyhow::bail!("{arch} has no feature probe"),
        }
    } else {
        mtbx::emu::testprog::program(arch)
    };
    std::fs::write(out, bytes)?;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
