//! How long the prometheus probe takes to read a node_exporter body, and how many
//! allocations it makes: a timing to read, not a test that asserts. Run it alone, in
//! release, so nothing else allocates on its thread and the figures mean something:
//!
//! ```text
//! cargo test --release --lib probe::prometheus::timing -- --ignored --nocapture
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use super::*;

/// Bodies read per measurement: enough for the figure to settle to a tenth of a µs.
const ITERATIONS: usize = 10_000;

/// The two real node_exporter scrapes the probe's tests read too.
const BODIES: [&str; 2] = [
    include_str!("../../tests/fixtures/node_exporter_1.prom"),
    include_str!("../../tests/fixtures/node_exporter_2.prom"),
];

/// The system allocator, counting the allocations of the thread that asks
/// ([`allocations`]): counting per thread keeps other tests' allocations out.
struct Counting;

thread_local! {
    /// Allocations (`alloc`, `alloc_zeroed` and `realloc` calls) of this thread. A
    /// `const` initialiser: the counter must not itself allocate.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // While a thread exits its thread-locals may be gone: not counted then.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is passed on to `System` unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`): on a
/// machine shared with other work, wall time also counts the time others ran.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs `read` on each body in turn, `ITERATIONS` times in all, and prints µs (on the
/// clock and on the CPU) and allocations per body.
fn measure(what: &str, mut read: impl FnMut(&str) -> usize) {
    // One round first, so lazily built state and the caches are warm.
    for body in BODIES {
        black_box(read(body));
    }
    let allocations_before = allocations();
    let cpu_before = thread_cpu_ns();
    let start = Instant::now();
    let mut series = 0;
    for i in 0..ITERATIONS {
        series += black_box(read(BODIES[i % BODIES.len()]));
    }
    let elapsed: Duration = start.elapsed();
    let cpu_ns = thread_cpu_ns() - cpu_before;
    let allocated = allocations() - allocations_before;
    let per_body = ITERATIONS as f64;
    println!(
        "{what}: {:.1} µs per body ({:.1} µs on the CPU), {:.0} allocations per body, \
         {:.0} series per body",
        elapsed.as_secs_f64() * 1e6 / per_body,
        cpu_ns as f64 / 1e3 / per_body,
        allocated as f64 / per_body,
        series as f64 / per_body,
    );
}

#[test]
#[ignore = "a timing to read, not a test: run it alone, in release"]
fn timing_of_a_node_exporter_body() {
    let start = Instant::now();
    let previous = to_metrics(parse_exposition(BODIES[0]).unwrap(), None, start).counters;
    let later = start + Duration::from_secs(3);
    measure("parse", |body| {
        parse_exposition(body).unwrap().samples.len()
    });
    measure("parse + map", |body| {
        let parsed = parse_exposition(body).unwrap();
        let mapped = to_metrics(parsed, Some(&previous), later);
        mapped.metrics.len() + mapped.raw.len()
    });
}
