//! Write mtbx's generated emulation check program for an architecture to a
//! file: `cargo run --example write_program -- arm64 /tmp/prog`. Used by the
//! benchmarks to time the manual way on the very same program.

use std::os::unix::fs::PermissionsExt;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(arch), Some(out)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: write_program ARCH FILE");
    };
    let arch = mtbx::emu::arch::Arch::parse(&arch)?;
    std::fs::write(&out, mtbx::emu::testprog::program(arch))?;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
