//! mtbx: Toolbx-style containers of foreign CPU architectures through QEMU
//! user-mode emulation and the kernel's binfmt_misc.
//!
//! The library holds everything; the `mtbx` binary is a thin front end
//! (module [`cli`]) and the tests use the same modules directly.
//! `docs/ARCHITECTURE.md` is the map: start there.
//!
//! - [`emu`]: emulation: the architecture table, static-ELF checks,
//!   binfmt_misc, the host's interpreters, the sandbox and the check.
//! - [`image`]: images in registries (and through skopeo's proxy):
//!   references, registries.conf, credentials, manifests, inspect.
//! - [`pull`]: an image of any platform, streamed into [`storage`],
//!   podman's containers-storage written natively.
//! - [`toolbox`]: toolbox containers: names, podman as the engine, and the
//!   half that runs inside them.
//! - [`error`]: what kind of failure an error is, and its exit code.
//! - [`sys`]: the system calls that need `unsafe`, and mtbx's own user
//!   namespace for rootless pulls.
//! - [`userdb`]: a root file system's passwd, group and shadow, read and
//!   edited under one set of rules (`init-container`, `run --rootfs`).
//! - [`text`]: text from outside (names, paths, files' fields) made safe to
//!   show on a terminal: escaped, one line, cut short.

pub mod cli;
pub mod emu;
pub mod error;
pub mod fsutil;
pub mod image;
pub mod pull;
pub mod storage;
#[allow(unsafe_code)]
pub mod sys;
pub mod text;
pub mod toolbox;
pub mod userdb;
