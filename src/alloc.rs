//! Allocation counting for `speedrun bench`: [`Counting`] wraps the binary's global allocator
//! (mimalloc, `src/main.rs`) and counts every allocation and the bytes asked for, so that a bench
//! can report what one training step allocates. Two relaxed atomic adds per allocation; frees
//! are passed through uncounted. In builds that do not install it (the library's tests) the
//! counts stay zero.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// A global allocator that counts the allocations of the one it wraps.
pub struct Counting<A>(pub A);

fn count(size: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(size as u64, Ordering::Relaxed);
}

// SAFETY: every method forwards to the wrapped allocator with the same arguments.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        self.0.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        self.0.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        self.0.realloc(ptr, layout, new_size)
    }
}

/// (allocations, bytes requested) since the process started.
pub fn counts() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

/// The process's peak resident set (VmHWM of /proc/self/status), where the OS reports one.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wrapper counts what passes through it (here called directly, as the global
    /// allocator of the library's tests is the system's).
    #[test]
    fn counts_allocations_and_bytes() {
        let a = Counting(std::alloc::System);
        let (n0, b0) = counts();
        let layout = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: a valid layout; the block is freed with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            let p = a.realloc(p, layout, 3000);
            a.dealloc(p, Layout::from_size_align(3000, 8).unwrap());
        }
        let (n1, b1) = counts();
        assert!(n1 - n0 >= 2 && b1 - b0 >= 4000);
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
