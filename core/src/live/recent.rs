//! The live documents this thread evaluated on last, by document id: [`crate::Flags::snapshot`]
//! takes its document from here with a plain atomic read (the id) and a non-atomic count,
//! instead of loading the handle's shared pointer. That load takes and returns a slot with an
//! atomic read-modify-write each; on x86 each is a full barrier, about a quarter of a Rust
//! evaluation's time.
//!
//! Sound because a document id is never reused ([`crate::Flags::document_id`]): an entry whose
//! id is the handle's live id holds the handle's live document. The cost is memory: a replaced
//! document stays alive in a thread's entries until that thread's next snapshots push it out
//! (at most [`RECENT`] per thread).

// `Rc<Arc<Document>>` on purpose: the `Rc` is counted without atomics on this thread, where
// cloning the `Arc` would be one more atomic read-modify-write per snapshot.
#![allow(clippy::redundant_allocation)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::document::Document;

/// Entries per thread: two handles used in turn on one thread both hit.
const RECENT: usize = 2;

type Entry = Option<(u64, Rc<Arc<Document>>)>;

thread_local! {
    static ENTRIES: RefCell<[Entry; RECENT]> = const { RefCell::new([None, None]) };
}

/// This thread's entry of document `id`, if it has one.
#[inline]
pub(crate) fn find(id: u64) -> Option<Rc<Arc<Document>>> {
    ENTRIES
        .try_with(|entries| {
            // Never borrowed across other code (see `remember`); a failed borrow is a miss.
            let entries = entries.try_borrow().ok()?;
            entries
                .iter()
                .flatten()
                .find(|(kept, _)| *kept == id)
                .map(|(_, document)| Rc::clone(document))
        })
        .ok()
        .flatten()
}

/// Keeps `document` (whose id is `id`) as this thread's most recent entry, and returns it.
#[cold]
pub(crate) fn remember(id: u64, document: Arc<Document>) -> Rc<Arc<Document>> {
    let document = Rc::new(document);
    let evicted = ENTRIES
        .try_with(|entries| {
            let mut entries = entries.try_borrow_mut().ok()?;
            let evicted = entries[RECENT - 1].take();
            entries.rotate_right(1);
            entries[0] = Some((id, Rc::clone(&document)));
            evicted
        })
        .ok()
        .flatten();
    // Dropped after the borrow ends: freeing a document runs its destructors.
    drop(evicted);
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(revision: &str) -> Arc<Document> {
        let text = format!(r#"{{"revision": "{revision}", "flags": {{}}}}"#);
        Arc::new(Document::from_slice(text.as_bytes()).unwrap())
    }

    #[test]
    fn the_two_most_recent_documents_are_found_by_id_and_older_ones_released() {
        let (a, b, c) = (document("a"), document("b"), document("c"));
        remember(u64::MAX - 1, Arc::clone(&a));
        remember(u64::MAX - 2, Arc::clone(&b));
        assert_eq!(find(u64::MAX - 1).unwrap().revision(), "a");
        assert_eq!(find(u64::MAX - 2).unwrap().revision(), "b");
        remember(u64::MAX - 3, Arc::clone(&c));
        assert!(
            find(u64::MAX - 1).is_none(),
            "the oldest entry is pushed out"
        );
        // The pushed-out document is no longer kept by this thread.
        assert_eq!(Arc::strong_count(&a), 1);
        assert_eq!(find(u64::MAX - 3).unwrap().revision(), "c");
        assert!(find(7).is_none());
    }
}
