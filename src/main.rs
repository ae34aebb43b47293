/// mimalloc: the request path allocates small, short-lived buffers all the
/// time; glibc malloc was ~12% of the proxy's CPU in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often freed memory is handed back to the system.
const MEMORY_RETURN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> std::process::ExitCode {
    return_freed_memory_periodically();
    keygate::cli::main()
}

/// Memory freed after a burst (thousands of connections closing) goes back
/// to mimalloc's arenas, which give it to the system only when some thread
/// next asks the allocator to collect, after a short delay: a gateway that
/// goes quiet after a flood never asks, and kept the flood's peak RSS. A
/// small thread asks every [`MEMORY_RETURN_INTERVAL`]; under load the
/// workers' own allocations do it first and this finds nothing to do.
fn return_freed_memory_periodically() {
    let spawned = std::thread::Builder::new().name("memory-return".into()).spawn(|| loop {
        std::thread::sleep(MEMORY_RETURN_INTERVAL);
        // SAFETY: `mi_collect` only works on mimalloc's own state and may
        // be called from any thread at any time.
        unsafe { libmimalloc_sys::mi_collect(false) };
    });
    if let Err(e) = spawned {
        eprintln!("keygate: memory is not returned to the system after load peaks: {e}");
    }
}
