//! The `mtbx` binary: everything is in the library; this only hands over
//! the exit code.

/// musl's allocator is slow enough to double the time of a registry
/// request in the static build; mimalloc is the usual remedy.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Before the first allocation: mimalloc reads these options when it
    // reserves its first arena (the shim's check below allocates already).
    mtbx::sys::tune_allocator();
    // binfmt_misc started mtbx as the CPU-model shim of a container:
    // become QEMU at once (see mtbx::emu::cpu).
    if let Some(code) = mtbx::emu::cpu::shim_main() {
        std::process::exit(code);
    }
    // A rootless pull's second half starts here, before any thread exists.
    match mtbx::sys::userns::child_handshake() {
        Ok(()) => {}
        Err(mtbx::sys::userns::HandshakeError::ParentGaveUp) => std::process::exit(1),
        Err(e) => {
            eprintln!("mtbx: error: {e}");
            std::process::exit(1);
        }
    }
    std::process::exit(mtbx::cli::run());
}
