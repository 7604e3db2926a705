//! The process and the kernel: the system calls that need `unsafe` live
//! here, each behind a safe function where one can be sound (the one
//! exception, [`child::clone_fork`], is fork itself); and [`userns`], the
//! user namespace rootless pulls run in. Outside this module only
//! `emu::sandbox`'s `fork` module may use `unsafe`, to make its children
//! (tests/it/architecture.rs checks both).

pub mod child;
pub mod files;
pub mod process;
pub mod shim;
pub mod userns;

/// The real user id of this process.
pub fn getuid() -> u32 {
    nix::unistd::getuid().as_raw()
}

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// mimalloc option numbers (mi_option_e in the bundled mimalloc.h, the
/// same in its v2 and v3).
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// A pull's memory must stay flat whatever the image size: commit arena
/// memory as it is touched and give freed pages back at once. With
/// mimalloc's defaults (eager arena commit, delayed purge) a pull's peak
/// RSS was 87 MiB; with these, 35 MiB, at the same speed. Call first in
/// `main` (the binary installs mimalloc as its global allocator).
pub fn tune_allocator() {
    // SAFETY: plain option setters, called before any other thread exists.
    unsafe {
        mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// Empty this process's capability sets (effective, permitted,
/// inheritable) and its ambient set. container-exec calls it after
/// becoming the user: setuid already clears effective, permitted and
/// ambient, but podman hands a privileged container's processes a full
/// inheritable set, which Toolbx empties with `capsh --caps=`. The
/// bounding set stays, so setuid programs such as sudo keep working.
pub fn drop_capabilities() -> std::io::Result<()> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    let none = CapabilitySet::empty();
    rustix::thread::set_capabilities(
        None,
        CapabilitySets { effective: none, permitted: none, inheritable: none },
    )?;
    rustix::thread::clear_ambient_capability_set()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Capabilities belong to a thread: dropping them on a thread of its
    /// own leaves the test process as it was.
    #[test]
    fn capabilities_are_dropped_and_the_bounding_set_kept() {
        std::thread::spawn(|| {
            let before = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            super::drop_capabilities().unwrap();
            let after = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            let field = |text: &str, name: &str| {
                let line = text.lines().find(|l| l.starts_with(name)).unwrap();
                u64::from_str_radix(line[name.len()..].trim(), 16).unwrap()
            };
            for name in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
                assert_eq!(field(&after, name), 0, "{name} after the drop");
            }
            assert_eq!(field(&after, "CapBnd:"), field(&before, "CapBnd:"));
        })
        .join()
        .unwrap();
    }
}
