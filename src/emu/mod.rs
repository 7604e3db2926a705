//! Emulation: what it takes to run a program of one architecture on
//! another, and the proof that it runs.
//!
//! - [`arch`]: the one table of platforms, names, ELF identities and
//!   binfmt_misc magic. A new architecture is one row there.
//! - [`elf`]: is an interpreter a static ELF for this machine?
//! - [`binfmt`]: read and change a binfmt_misc instance with system calls.
//! - [`host`]: what the host offers: interpreters, kernel, registrations.
//! - [`sandbox`]: run a program in a user namespace with its own
//!   binfmt_misc instance.
//! - [`testprog`]: tiny generated programs, one per architecture.
//! - [`check`]: prove that an architecture runs.
//! - [`cpu`]: QEMU CPU models, and the shim that runs every program of
//!   a binfmt_misc instance under one.
//! - [`register`]: the policy of registering interpreters in an instance.
//! - [`rootfs`]: a root file system directory run in the sandbox (`run
//!   --rootfs`).
//! - [`leftovers`]: what a `--rootfs` run made in the tree, journaled, and
//!   removed safely after it, or at the next run when it was killed.

pub mod arch;
pub mod binfmt;
pub mod check;
pub mod cpu;
pub mod elf;
pub mod host;
pub mod leftovers;
pub mod register;
pub mod rootfs;
pub mod sandbox;
pub mod testprog;
