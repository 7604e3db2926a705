//! The emulation half of init-container: QEMU registered in a
//! binfmt_misc instance of the container's own, and proof that a program
//! of the container's architecture runs through it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{say, InitError, RUN_DIR, WARNING_PREFIX};
use crate::emu::arch::Arch;
use crate::emu::binfmt::{BinfmtFs, Flags, Registration};
use crate::toolbox;

/// The container's own binfmt_misc instance, with the interpreter
/// registered with [`Flags::CONTAINER`] (P, O, C, F). On a
/// kernel without per-namespace instances, an entry the host already has
/// is used, with a warning. With a CPU model, the entry's interpreter is
/// the model's shim ([`crate::emu::cpu`]): a link under /run/mtbx to the
/// bind-mounted mtbx, whose path names the model and the interpreter; a
/// host entry cannot carry a model, so then there is no fallback.
pub(super) fn register(arch: &Arch, qemu: &Path, cpu: Option<&str>) -> Result<(), InitError> {
    let fs = BinfmtFs::default();
    match fs.mount() {
        Ok(()) => {
            let reg = match cpu {
                None => Registration::for_arch(arch, qemu, Flags::CONTAINER),
                Some(model) => crate::emu::cpu::shim_registration(
                    arch,
                    qemu,
                    model,
                    &Path::new(toolbox::HOST_DIR).join("mtbx"),
                    Path::new(RUN_DIR),
                    Flags::CONTAINER,
                )
                .map_err(|e| InitError(format!("cannot register CPU model {model}: {e}")))?,
            };
            match fs.register(&reg) {
                Ok(()) => Ok(()),
                Err(e) if fs.entry(&reg.name).is_ok() => {
                    say(WARNING_PREFIX, &format!("{} already registered ({e}); using it", reg.name));
                    Ok(())
                }
                Err(e) => Err(InitError(format!(
                    "cannot register {} in the container's binfmt_misc: {e}",
                    reg.name
                ))),
            }
        }
        Err(mount_err) if cpu.is_some() => Err(InitError(format!(
            "cannot mount a binfmt_misc instance ({mount_err}); a CPU model needs one of the container's own (Linux >= 6.7)"
        ))),
        Err(mount_err) => {
            let host = crate::emu::host::HostBinfmt::read(&fs);
            match host.entry_for(arch) {
                Some(e) => {
                    say(
                        WARNING_PREFIX,
                        &format!(
                            "no binfmt_misc of the container's own (Linux >= 6.7 gives one; {mount_err}); using the host's entry {}, whose interpreter must exist inside the container",
                            e.name
                        ),
                    );
                    Ok(())
                }
                None => Err(InitError(format!(
                    "cannot mount a binfmt_misc instance ({mount_err}) and the host has no entry for {}: use Linux >= 6.7, or run `sudo mtbx binfmt register --arch {}` on the host",
                    arch.platform(),
                    arch.short_name()
                ))),
            }
        }
    }
}

/// Run the project's test program of this architecture and check what its
/// uname says.
pub(super) fn verify(arch: &Arch) -> Result<(), InitError> {
    let path = PathBuf::from(format!("/tmp/.mtbx-check-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&path, crate::emu::testprog::program(arch))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
    };
    write().map_err(|e| InitError(format!("cannot write the check program: {e}")))?;
    let out = std::process::Command::new(&path).output();
    let _ = std::fs::remove_file(&path);
    let out =
        out.map_err(|e| InitError(format!("a program for {} does not run here: {e}", arch.platform())))?;
    let got = crate::emu::testprog::parse_output(&out.stdout);
    if !out.status.success() || !arch.uname.contains(&got.as_str()) {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.lines().next().unwrap_or("").trim();
        return Err(InitError(format!(
            "a program for {} printed {got:?} and exited with {}{}: is the interpreter really for {}?",
            arch.platform(),
            out.status.code().map_or("a signal".to_string(), |c| c.to_string()),
            if said.is_empty() { String::new() } else { format!(" ({said})") },
            arch.platform()
        )));
    }
    Ok(())
}
