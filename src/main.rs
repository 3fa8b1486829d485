// mimalloc keeps freed large blocks for reuse. With the system allocator every (tokens × 50257)
// logits-sized buffer is a fresh mmap whose pages are faulted in and zeroed by the kernel on each
// micro-batch: measured 2.5× slower steps on the shakespeare-tiny preset (docs/perf.md).
#[global_allocator]
static GLOBAL: speedrun::alloc::Counting<mimalloc::MiMalloc> =
    speedrun::alloc::Counting(mimalloc::MiMalloc);

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3 option enums).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // mimalloc still returns freed memory to the OS after a short delay (10 ms × 10 for its
    // arenas), and a training step frees and reallocates its large buffers at a longer period
    // than that: each one came back as fresh pages, which the kernel faulted in and zeroed
    // (20% of a shakespeare-tiny AdamW step was the kernel's clear_page, `perf record`,
    // docs/perf.md). A trainer's working set is the same every step, so it is kept.
    // SAFETY: sets a process-wide allocator option before any thread is started.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    std::process::exit(speedrun::cli::main());
}
