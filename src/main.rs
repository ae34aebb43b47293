use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};

/// mimalloc: the request path allocates small, short-lived buffers all the
/// time; glibc malloc was ~12% of the proxy's CPU in profiles.
#[global_allocator]
static ALLOCATOR: Mimalloc = Mimalloc;

/// Every block mimalloc hands out is aligned to a machine word.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc, asked for a plain block whenever the alignment Rust needs is
/// one every block has. The `mimalloc` crate's allocator asks for an
/// aligned block every time, and mimalloc's aligned path misses its
/// thread-local fast path on most small requests (about 90 instructions
/// per allocation instead of about 20 in `scripts/bench-instructions.sh`).
struct Mimalloc;

/// A block for `layout` from `plain` when its alignment is at most a word
/// (every mimalloc block is), else from `aligned`.
#[inline(always)]
unsafe fn block(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    if layout.align() <= WORD {
        plain(layout.size()).cast()
    } else {
        aligned(layout.size(), layout.align()).cast()
    }
}

// SAFETY: each method forwards to the mimalloc function with the same
// contract; a plain block is only used when it is aligned to at least
// `layout.align()` (every mimalloc block is word-aligned), and `mi_free`
// frees blocks from either path.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        block(layout, mi_malloc, mi_malloc_aligned)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        block(layout, mi_zalloc, mi_zalloc_aligned)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every alignment Rust may ask for is honoured, on both paths and
    /// across a reallocation that moves the block.
    #[test]
    fn blocks_have_the_alignment_asked_for_and_keep_their_bytes() {
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 100, 4_000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the layout is non-zero-sized; the block is only
                // used within its size and freed once, with its layout.
                unsafe {
                    let block = ALLOCATOR.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size}, align {align}");
                    block.write_bytes(0xa5, size);
                    let grown = ALLOCATOR.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "realloc: size {size}, align {align}");
                    assert!(std::slice::from_raw_parts(grown, size).iter().all(|b| *b == 0xa5));
                    ALLOCATOR.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                    let zeroed = ALLOCATOR.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0);
                    assert!(std::slice::from_raw_parts(zeroed, size).iter().all(|b| *b == 0));
                    ALLOCATOR.dealloc(zeroed, layout);
                }
            }
        }
    }
}
