//! mtbx held against the vendors' own tools on the same inputs: QEMU's
//! registrations as Debian ships them, the real distribution registry and
//! skopeo, podman reading what mtbx pulled, and toolbox containers run by
//! real podman. One binary, a module per vendor.

mod local_images;
mod pull;
mod qemu;
mod registry;
mod toolbox;
mod toolbx_parity;
