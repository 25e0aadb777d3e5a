//! Reloads reported to JS as they happen: the core's watcher or poller thread pushes each one
//! through a thread-safe function to the JS thread that owns the handle, where index.js logs it
//! (the core's level and text, as Python logs them) and hands the queued `reload` /
//! `reload_rejected` events to `onEvent` listeners, without waiting for the next call.
//!
//! The function is weak (it never keeps the event loop alive) and registered once per JS
//! thread (each worker thread has its own); every file- or URL-backed handle of that thread
//! shares it.

use std::cell::RefCell;
use std::sync::Arc;

use flagrail_core::{Flags, ReloadEvent};
use napi::bindgen_prelude::{Function, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

/// One reload, as index.js receives it.
#[napi(object)]
pub struct ReloadNotice {
    /// The handle it happened to.
    pub slot: u32,
    /// `info` (a new document went live), `warning` (unreadable source), `error` (a document
    /// refused), or `events` (queued events to hand to listeners; nothing to log).
    pub level: String,
    pub message: String,
    /// The error code of a rejection.
    pub code: Option<String>,
}

type Notify =
    ThreadsafeFunction<ReloadNotice, Unknown<'static>, ReloadNotice, napi::Status, false, true>;

thread_local! {
    /// This JS thread's receiver (set by index.js when it loads).
    static NOTIFY: RefCell<Option<Arc<Notify>>> = const { RefCell::new(None) };
}

/// Registers `callback(notice)` as this JS thread's receiver of reload notices.
#[napi(catch_unwind)]
pub fn on_reload_notice(
    callback: Function<'_, ReloadNotice, Unknown<'static>>,
) -> napi::Result<()> {
    let notify = callback
        .build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .build()?;
    NOTIFY.with(|slot| *slot.borrow_mut() = Some(Arc::new(notify)));
    Ok(())
}

/// Asks this JS thread's receiver to hand the queued events of `slot` to its `onEvent`
/// listeners soon (a notice of level `events`, no message), without waiting for the next
/// call: the exposures of plain reads are queued during `variant()`, which never drains.
/// `None` when no receiver is registered.
pub fn events_notifier(slot: u32) -> Option<impl Fn() + Send + Sync + 'static> {
    let notify = NOTIFY.with(|n| n.borrow().clone())?;
    Some(move || {
        // Non-blocking, like reloads: the JS thread takes the notice after the current call.
        let _ = notify.call(
            ReloadNotice {
                slot,
                level: "events".to_string(),
                message: String::new(),
                code: None,
            },
            ThreadsafeFunctionCallMode::NonBlocking,
        );
    })
}

/// Stores a file- or URL-backed handle whose reloads are pushed to JS as they happen; its slot.
pub fn insert_watched(flags: Flags) -> u32 {
    let listener = flags.clone();
    let slot = crate::handle::insert(flags);
    attach(&listener, slot);
    slot
}

/// Sends every reload of `flags` (in `slot`) to this JS thread's receiver, if one is set.
fn attach(flags: &Flags, slot: u32) {
    let Some(notify) = NOTIFY.with(|n| n.borrow().clone()) else {
        return;
    };
    let source = flags.status().source;
    flags.on_reload(move |event| {
        let (level, message) = event.log_line(&source);
        let code = match event {
            ReloadEvent::Rejected { error } => Some(error.code().to_string()),
            ReloadEvent::Applied { .. } => None,
        };
        // Non-blocking: a watcher thread never waits for JS. A closing environment (a worker
        // ending) refuses the call; there is nobody left to tell.
        let _ = notify.call(
            ReloadNotice {
                slot,
                level: level.as_str().to_string(),
                message,
                code,
            },
            ThreadsafeFunctionCallMode::NonBlocking,
        );
    });
}
