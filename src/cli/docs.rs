//! Manual pages and shell completions, generated from the same clap
//! definitions that parse the command line, so they never drift from it:
//! `mtbx(1)` and `mtbx-COMMAND(1)`, and for `toolbox` mode `toolbox(1)`
//! and `toolbox-COMMAND(1)`, which `toolbox help` opens as Toolbx does.

use std::io;
use std::path::{Path, PathBuf};

/// Write a page for `cmd` and one per visible subcommand (`NAME-SUB.1`)
/// into `dir`; the files written.
pub fn write_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let name = cmd.get_name().to_string();
    let version = cmd.get_version().map(str::to_string).unwrap_or_else(|| env!("CARGO_PKG_VERSION").into());
    let mut written = Vec::new();
    let mut page = |c: clap::Command, file: String| -> io::Result<()> {
        let path = dir.join(format!("{file}.1"));
        let mut out = Vec::new();
        // The version in every page's footer, as man(1) shows it; the
        // version flag only where the command has one.
        let c = if c.is_disable_version_flag_set() || c.get_version().is_some() {
            c.version(version.clone())
        } else {
            c.version(version.clone()).disable_version_flag(true)
        };
        clap_mangen::Man::new(c.name(file)).render(&mut out)?;
        crate::fsutil::write_atomic(&path, &out, 0o644)?;
        written.push(path);
        Ok(())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub.clone(), format!("{name}-{}", sub.get_name()))?;
    }
    page(cmd, name)?;
    Ok(written)
}
