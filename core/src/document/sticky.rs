//! A flag's `sticky` section: which context attribute names a conversation and how long its
//! pin lives. The pins themselves are runtime state ([`crate::runtime::sticky`]).

use crate::context::{Attr, Context};
use crate::time::Millis;

/// A flag's `sticky` section.
#[derive(Debug, Clone)]
pub struct Sticky {
    /// The context attribute that names the conversation.
    pub(crate) by: Box<str>,
    /// How long a pin lives after the first decision.
    pub ttl: Millis,
}

/// The conversation id of a context for a sticky flag (a non-empty string, or an integer in
/// decimal, like a bucketing unit); `None` when the context has none.
pub fn conversation_of<C: Context + ?Sized>(sticky: &Sticky, ctx: &C) -> Option<String> {
    match ctx.attr(&sticky.by) {
        Attr::Str(s) if !s.is_empty() => Some(s.to_string()),
        Attr::Int(i) => Some(i.to_string()),
        _ => None,
    }
}
