//! mtbx: Toolbx-style containers of foreign CPU architectures through QEMU
//! user-mode emulation and the kernel's binfmt_misc.
//!
//! The library holds everything; the `mtbx` binary is a thin front end
//! (module [`cli`]) and the tests use the same modules directly.
//!
//! - [`arch`]: the one table of platforms, names, ELF identities and
//!   binfmt_misc magic.
//! - [`elf`]: is an interpreter a static ELF for this machine?
//! - [`binfmt`]: read and change a binfmt_misc instance with system calls.
//! - [`host`]: what the host offers: interpreters, kernel, registrations.
//! - [`sandbox`]: run a program in a user namespace with its own
//!   binfmt_misc instance.
//! - [`testprog`]: tiny generated programs, one per architecture.
//! - [`emucheck`]: prove that an architecture runs.
//! - [`inspect`], [`registry`]: what an image is, from its registry.
//! - [`storage`]: podman's containers-storage, written natively.
//! - [`pull`]: an image of any platform, streamed into that storage;
//!   [`proxy`]: skopeo's image proxy as a second source;
//!   [`userns`]: the user namespace rootless pulls run in.
//! - [`toolbox`]: what a toolbox container is made of (names, images,
//!   podman arguments, readiness); [`engine`]: podman as a subprocess;
//!   [`initc`]: what runs inside the containers.

#![warn(missing_docs)]

pub mod arch;
pub mod auth;
pub mod binfmt;
pub mod cli;
pub mod elf;
pub mod emucheck;
pub mod engine;
pub mod fsutil;
pub mod host;
pub mod initc;
pub mod inspect;
pub mod manifest;
pub mod platform;
pub mod proxy;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod registry;
pub mod sandbox;
pub mod storage;
pub mod testprog;
pub mod toolbox;
pub mod userns;
