//! The process and the kernel: the system calls that need `unsafe` live
//! here (the sandbox's fork-to-exec code aside, which must stay
//! async-signal-safe next to its caller), each behind a safe function;
//! and [`userns`], the user namespace rootless pulls run in.

pub mod files;
pub mod process;
pub mod userns;
