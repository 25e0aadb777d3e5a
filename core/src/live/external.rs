//! The poller threads of sources implemented outside the core ([`ExternalSource`], the HTTP
//! source of `flagrail-sources`), so that no network code links into the evaluation path.
//! [`Flags::start_watching`] spawns one that calls [`ExternalSource::run`], and
//! [`Flags::stop_watching`] (a binding's `close()`), dropping the last handle, or a restart
//! after `fork()` ends it within [`POLLER_STOP_CHECK`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::document::Document;
use crate::error::Result;
use crate::live::clock::Clock;
use crate::live::handle::{Flags, Shared};
use crate::live::source::{ExternalSource, Poll, SourceKind};

/// What a poller thread holds ([`Poll`]): a weak reference to the handle (the thread never keeps it
/// alive) and the generation it was started for.
pub(super) struct Poller {
    shared: Weak<Shared>,
    generation: u64,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("generation", &self.generation)
            .finish()
    }
}

/// How often a sleeping poller checks whether it was stopped: the bound on how long a closed
/// or dropped handle's poller thread outlives it.
pub(crate) const POLLER_STOP_CHECK: Duration = Duration::from_millis(50);

impl Poller {
    /// The handle, or `None` once it was dropped, closed or restarted: then stop.
    fn flags(&self) -> Option<Flags> {
        let shared = self.shared.upgrade()?;
        (shared.watcher_generation.load(Ordering::SeqCst) == self.generation)
            .then_some(Flags { shared })
    }
}

impl Poll for Poller {
    fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        loop {
            if self.flags().is_none() {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            thread::sleep(left.min(POLLER_STOP_CHECK));
        }
    }

    fn offer(&self, loaded: Result<Document>) -> Option<Result<String>> {
        Some(self.flags()?.apply(loaded))
    }
}

impl Flags {
    /// Live flags over `document` (the first one an external source fetched, or its cached
    /// copy) that `source` keeps current once [`Flags::start_watching`] starts its poller.
    pub fn from_external(
        document: Document,
        source: Arc<dyn ExternalSource>,
        clock: Arc<dyn Clock>,
    ) -> Flags {
        let mut flags = Flags::new(
            document,
            SourceKind::External(source.describe()),
            clock,
            None,
        );
        // Just created: this is the only reference.
        if let Some(shared) = Arc::get_mut(&mut flags.shared) {
            shared.external = Some(source);
        }
        flags
    }

    /// Starts the poller thread of an external source (stopping a previous one).
    pub(super) fn start_polling(&self, external: Arc<dyn ExternalSource>) {
        let generation = self
            .shared
            .watcher_generation
            .fetch_add(1, Ordering::SeqCst)
            + 1;
        self.shared.watching.store(true, Ordering::SeqCst);
        let poller = Poller {
            shared: Arc::downgrade(&self.shared),
            generation,
        };
        let spawned = thread::Builder::new()
            .name("flagrail-poll".to_string())
            .spawn(move || external.run(&poller));
        if spawned.is_err() {
            self.shared.watching.store(false, Ordering::SeqCst);
        }
    }
}
