// mimalloc keeps freed large blocks for reuse. With the system allocator every (tokens × 50257)
// logits-sized buffer is a fresh mmap whose pages are faulted in and zeroed by the kernel on each
// micro-batch: measured 2.5× slower steps on the shakespeare-tiny preset (docs/perf.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(speedrun::cli::main());
}
