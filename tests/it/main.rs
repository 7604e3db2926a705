//! mtbx's integration tests: one binary, a module per topic, run against
//! the library and the built `mtbx` binary. The vendor tests (real
//! registry, podman, skopeo) are the other binary, `vendor-tests/`; both
//! share the helpers of `tests/common` (the `common` crate).

mod architecture;
mod binfmt_entries;
mod binfmt_userns;
mod cpu_model;
mod elf_real_files;
mod emulation;
mod fixtures_valid;
mod host_agent;
mod hostile_files;
mod init_container;
mod inspect;
mod local_images;
mod pull;
mod registry_faults;
mod rootfs_cli;
mod storage_apply;
mod table_vs_qemu;
mod toolbox_cli;
mod toolbx_mode;
