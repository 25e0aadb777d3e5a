//! Evaluation allocates nothing it does not return: counted with a global allocator, on the
//! evaluating thread only. (Its own test binary, so no other test's allocations are counted.)
// A counting allocator needs `unsafe impl GlobalAlloc`; the workspace denies unsafe elsewhere.
#![allow(unsafe_code)]

use flagrail_core::EvalOptions;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use flagrail_core::{Attr, Flags};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the thread being measured: only its allocations count. The test harness's main
    /// thread allocates while the test runs (it records the running test after spawning it),
    /// which counted 4 allocations in about half the runs.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // A `const` thread-local without destructor: reading it never allocates.
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.with(|counting| counting.set(true));
    f();
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn evaluation_does_not_allocate() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/flags.json"
    ))
    .expect("example");
    let flags = Flags::from_json(&text).expect("valid");
    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let contexts: Vec<[(&str, Attr<'_>); 4]> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            [
                ("user_id", Attr::Str(u)),
                (
                    "plan",
                    Attr::Str(if i % 7 == 0 { "enterprise" } else { "pro" }),
                ),
                (
                    "email",
                    Attr::Str(if i % 5 == 0 { "a@acme.com" } else { "a@b.io" }),
                ),
                (
                    "app_version",
                    Attr::Str(if i % 3 == 0 { "2.9.0" } else { "3.1.0" }),
                ),
            ]
        })
        .collect();
    // Warm up thread-locals (arc-swap's debt list) outside the counted section.
    let _ = flags.evaluate("support-bot", &contexts[0], EvalOptions::default());

    let mut served = 0usize;
    let counted = allocations_during(|| {
        for context in &contexts {
            for flag in ["support-bot", "support-prompt", "support-temperature"] {
                // Borrowed decision through a snapshot, and the owned result the bindings use.
                let snapshot = flags.snapshot();
                served += usize::from(
                    snapshot
                        .evaluate(flag, context, EvalOptions::default())
                        .variant_id()
                        .is_some(),
                );
                served += usize::from(
                    flags
                        .evaluate(flag, context, EvalOptions::default())
                        .variant_id()
                        .is_some(),
                );
            }
        }
    });
    assert_eq!(served, 6000);
    assert_eq!(
        counted, 0,
        "evaluation allocated {counted} times over 6000 evaluations"
    );

    // Integer units are formatted on the stack.
    let counted = allocations_during(|| {
        for i in 0..1000i64 {
            let context = [("user_id", Attr::Int(i))];
            let _ = flags.evaluate("support-bot", &context, EvalOptions::default());
        }
    });
    assert_eq!(counted, 0);
}
