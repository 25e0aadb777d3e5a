//! A file source kept live: loading a file into a handle, and the background thread that polls
//! it and reloads it when it changes.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use crate::document::Document;
use crate::error::Result;
use crate::live::handle::{Flags, LoadState, Shared};
use crate::live::source::{fingerprint, read_file, FileOptions, SourceKind};

impl Flags {
    /// Loads a file, watching it for changes.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Flags> {
        Self::from_file_with(path, FileOptions::default())
    }

    pub fn from_file_with(path: impl AsRef<Path>, options: FileOptions) -> Result<Flags> {
        let path = path.as_ref().to_path_buf();
        let before = fingerprint(&path);
        let document = Document::from_slice(&read_file(&path)?)?;
        let flags = Flags::new(document, SourceKind::File(path), options.clock, before);
        if options.reload {
            flags.start_watching(options.poll_interval);
        }
        Ok(flags)
    }

    /// Checks a file source now and reloads it when it changed. Returns whether a new document
    /// went live. Static sources return `Ok(false)`.
    pub fn reload_if_changed(&self) -> Result<bool> {
        reload_if_changed(&self.shared)
    }

    /// Starts (or restarts) the background watcher of a file source. A restart stops the
    /// previous watcher first. After `fork()` the child has no watcher thread: call this in the
    /// child to resume reloading there (the bindings do it automatically).
    pub fn start_watching(&self, interval: Duration) {
        if let Some(external) = &self.shared.external {
            self.start_polling(Arc::clone(external));
            return;
        }
        let SourceKind::File(_) = &self.shared.source else {
            return;
        };
        let generation = self
            .shared
            .watcher_generation
            .fetch_add(1, Ordering::SeqCst)
            + 1;
        self.shared.watching.store(true, Ordering::SeqCst);
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let spawned = thread::Builder::new()
            .name("flagrail-reload".to_string())
            .spawn(move || watch(weak, generation, interval));
        if spawned.is_err() {
            self.shared.watching.store(false, Ordering::SeqCst);
        }
    }

    /// Stops the background watcher or poller, if any.
    pub fn stop_watching(&self) {
        self.shared
            .watcher_generation
            .fetch_add(1, Ordering::SeqCst);
        self.shared.watching.store(false, Ordering::SeqCst);
    }

    /// Whether a watcher was started for this handle (in this process).
    pub fn is_watching(&self) -> bool {
        self.shared.watching.load(Ordering::SeqCst)
    }
}

fn reload_if_changed(shared: &Arc<Shared>) -> Result<bool> {
    let SourceKind::File(path) = &shared.source else {
        return Ok(false);
    };
    let current = fingerprint(path);
    if current.is_some() && current == shared.state.load().fingerprint {
        let now = shared.clock.now_millis();
        shared.state.rcu(|state| LoadState {
            last_check: Some(now),
            ..LoadState::clone(state)
        });
        return Ok(false);
    }
    shared.state.rcu(|state| LoadState {
        fingerprint: current,
        ..LoadState::clone(state)
    });
    let flags = Flags {
        shared: Arc::clone(shared),
    };
    let loaded = read_file(path).and_then(|bytes| Document::from_slice(&bytes));
    flags.apply(loaded).map(|_| true)
}

fn watch(shared: Weak<Shared>, generation: u64, interval: Duration) {
    loop {
        thread::sleep(interval);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.watcher_generation.load(Ordering::SeqCst) != generation {
            return;
        }
        // Errors are recorded in the status and sent to listeners by `apply`.
        let _ = reload_if_changed(&shared);
    }
}
