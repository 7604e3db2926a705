//! mtbx held against the vendors' own tools on the same inputs: QEMU's
//! registrations as Debian ships them, the real distribution registry and
//! skopeo, podman reading what mtbx pulled, and toolbox containers run by
//! real podman. One binary, a module per vendor.

mod assemble;
mod box_options;
mod cpu_model;
mod export;
mod host_exec;
mod local_images;
mod nvidia_cdi;
mod package;
mod provision;
mod pull;
mod qemu;
mod registry;
mod rootfs;
mod toolbox;
mod toolbx_made;
mod toolbx_parity;
mod user_hosts;
