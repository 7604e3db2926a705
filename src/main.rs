//! The `mtbx` binary: everything is in the library; this only hands over
//! the exit code.

/// musl's allocator is slow enough to double the time of a registry
/// request in the static build; mimalloc is the usual remedy.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// mimalloc option numbers (mi_option_e in the bundled mimalloc.h, the
/// same in its v2 and v3).
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() {
    // A pull's memory must stay flat whatever the image size: commit arena
    // memory as it is touched and give freed pages back at once. With
    // mimalloc's defaults (eager arena commit, delayed purge) a pull's
    // peak RSS was 87 MiB; with these, 35 MiB, at the same speed.
    // SAFETY: plain option setters, called before any other thread exists.
    unsafe {
        mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
    // A rootless pull's second half starts here, before any thread exists.
    mtbx::sys::userns::child_handshake();
    std::process::exit(mtbx::cli::run());
}
