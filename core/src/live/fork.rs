//! `fork()`: what a process that forks with live handles needs, so that the child never starts
//! with a lock held by a thread that only exists in the parent.
//!
//! Threads do not survive `fork()`; memory does. A mutex that another thread held at the
//! instant of the fork is copied locked, and nothing in the child will ever unlock it: the
//! first `call`, metrics read or budgeted evaluation there waits for ever. A fleet's
//! background thread takes these locks too (it reads metrics and lays the fleet's trips over
//! the process), so this is not only about the application's threads. The remedy is the
//! usual `pthread_atfork` protocol: take every lock just before the fork, release it right
//! after, in the parent and in the child. Python's binding does it for every handle from
//! `os.register_at_fork` (docs/runtime.md, "fork()").

use crate::live::handle::Flags;
use crate::runtime::ForkHold;

impl Flags {
    /// Every lock of this handle's runtime (aggregates and guardrail windows, budgets, sticky
    /// pins, the read-exposure log), if no other thread holds any of them; `None` otherwise.
    /// All or nothing, and it never waits: the caller retries, so two threads taking several
    /// handles' locks in different orders cannot deadlock.
    ///
    /// Take it just before `fork()` and drop it just after, in the parent and in the child:
    /// the child then starts with every lock free and no update half-done. The document, the
    /// overrides and the watcher state are lock-free and need nothing.
    pub fn hold_for_fork(&self) -> Option<ForkHold<'_>> {
        self.shared.runtime.try_hold()
    }

    /// In a child process after `fork()` (once the hold is dropped): this process's counts
    /// start from zero. Metrics and read-exposure counts describe the process that served
    /// them — a fleet adds up every process's, a scrape reads each worker's — so a child that
    /// kept its parent's copies would count those requests twice. What decides keeps its
    /// state: guardrail windows and trips, budgets, sticky pins, the exposure window (the
    /// child does not send again an exposure its parent sent).
    pub fn forget_parent_counts(&self) {
        let runtime = &self.shared.runtime;
        runtime.lock().metrics = Default::default();
        if let Some(log) = runtime.exposures.get() {
            log.reset_counts();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::live::overrides::for_tests;
    use crate::Flags;

    fn flags() -> Flags {
        let document =
            for_tests::document(&serde_json::json!({"bot": "v1"})).expect("a for-tests document");
        Flags::from_value(document).expect("a valid document")
    }

    #[test]
    fn a_hold_is_all_or_nothing_and_frees_every_lock_when_dropped() {
        let flags = flags();
        let first = flags.hold_for_fork();
        assert!(first.is_some());
        // Another thread cannot take it while it is held, and gets it once it is dropped.
        std::thread::scope(|scope| {
            assert!(scope
                .spawn(|| flags.hold_for_fork().is_none())
                .join()
                .expect("no panic"));
        });
        drop(first);
        std::thread::scope(|scope| {
            assert!(scope
                .spawn(|| flags.hold_for_fork().is_some())
                .join()
                .expect("no panic"));
        });
        // Each lock of the hold is one that evaluation and metrics take: after the hold they
        // work again (a lock left held would make these wait for ever).
        let _ = flags.metrics();
        assert!(flags.hold_for_fork().is_some());
    }

    #[test]
    fn a_forked_child_starts_its_counts_from_zero_and_keeps_what_decides() {
        let document = serde_json::json!({"revision": "r1", "flags": {"bot": {
            "variants": {"a": {"model": "a"}, "b": {"model": "b"}},
            "default": "a",
            "sticky": {"by": "conversation_id", "ttl": "1h"}
        }}});
        let flags = Flags::from_value(document).expect("a valid document");
        flags
            .enable_exposures(crate::runtime::exposures::ExposureOptions::default())
            .expect("exposures on");
        let ctx = serde_json::json!({"user_id": "u1", "conversation_id": "c1"});
        let mut run = flags.start_run("bot", &ctx).expect("a run");
        if let crate::live::Step::Call { .. } = run.next_step() {
            run.succeed(crate::live::Usage::default());
        }
        drop(run);
        let read = flags.evaluate("bot", &ctx, crate::EvalOptions::default());
        assert_eq!(read.reason, crate::Reason::Sticky, "the run pinned c1");
        assert_eq!(flags.metrics()["bot"]["a"]["requests"], 1);
        assert_eq!(flags.metrics()["$exposures"]["reads"], 1);

        flags.forget_parent_counts();
        let metrics = flags.metrics();
        assert!(metrics.get("bot").is_none(), "{metrics}");
        assert_eq!(metrics["$exposures"]["reads"], 0);
        assert_eq!(metrics["$exposures"]["flags"], serde_json::json!({}));
        // The pin (what decides) is kept, and the exposure window too: a read of the same
        // unit is a duplicate, not a new event.
        let read = flags.evaluate("bot", &ctx, crate::EvalOptions::default());
        assert_eq!(read.reason, crate::Reason::Sticky);
        let exposures = &flags.metrics()["$exposures"];
        assert_eq!(
            (exposures["reads"].as_u64(), exposures["events"].as_u64()),
            (Some(1), Some(0))
        );
    }

    #[test]
    fn one_lock_held_elsewhere_makes_the_hold_fail_and_releases_the_others() {
        let flags = flags();
        let budgets = flags.shared.runtime.budgets();
        assert!(flags.hold_for_fork().is_none());
        // The hold released what it had taken before it met the busy lock: metrics (the
        // aggregates' lock, taken first) are readable while `budgets` is still held.
        let _ = flags.metrics();
        drop(budgets);
        assert!(flags.hold_for_fork().is_some());
    }
}
