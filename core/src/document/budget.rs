//! `budgets` of a flag or of the document, as written: what each counts, its limit and window,
//! and what evaluation serves once it is exhausted. The books that count spending are runtime
//! state ([`crate::runtime::budget`]).

use std::sync::Arc;

use crate::time::Millis;

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Calls (runs), whatever they cost; counted when a call starts.
    Requests,
    /// Money, in the unit of the variants' prices.
    Cost,
}

impl Measure {
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Requests => "requests",
            Measure::Cost => "cost",
        }
    }
}

/// What evaluation serves while a budget is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetAction {
    /// Kill the flag (a document-wide budget: every flag with an AI variant): reason `KILLED`.
    Kill,
    /// Serve this variant of the flag (a cheaper model, a cached or static answer): `BUDGET`.
    Serve(usize),
    /// The shadow's hourly cap: stop drawing shadow calls (served traffic is untouched).
    SkipShadow,
}

/// One budget, as written in a flag's or the document's `budgets`.
#[derive(Debug, Clone)]
pub struct Budget {
    pub id: Arc<str>,
    /// Identity of the budget's state: `<flag>/<id>`, or `*/<id>` for a document-wide budget.
    pub key: Arc<str>,
    /// The flag that owns it (`None`: document-wide).
    pub flag: Option<Arc<str>>,
    /// The context attribute whose value is the scope (`per`); `None`: one scope, the flag
    /// (or, document-wide, everything).
    pub per: Option<Box<str>>,
    pub measure: Measure,
    pub limit: f64,
    pub window: Millis,
    pub action: BudgetAction,
}

impl Budget {
    pub(crate) fn action_str(&self) -> &'static str {
        match self.action {
            BudgetAction::Kill => "kill",
            BudgetAction::Serve(_) => "serve",
            BudgetAction::SkipShadow => "skip_shadow",
        }
    }
}

/// Which budget decided: one of the flag's, or one of the document's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetRef {
    // u32, not usize: this rides in every `Decision`, whose size shows in evaluation time (a
    // document of at most 16 MiB cannot hold 2^32 budgets).
    Flag(u32),
    Document(u32),
}
