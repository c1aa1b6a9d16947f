fn main() {
    tune_allocator();
    std::process::exit(pgproof::cli::main());
}

/// Multi-megabyte buffers (upload parts, compressed frames) are allocated on
/// one thread and freed on another. glibc's dynamic mmap threshold would keep
/// them in per-thread arenas after their first free, so resident memory would
/// grow with the number of threads instead of staying at what is in use.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters, before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
