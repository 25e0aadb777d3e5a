//! The sections that keep runtime state: `sticky` (conversation pins), `budgets` (cost
//! circuit breakers, a flag's or the document's) and `shadow` (sampled candidate calls).

use std::sync::Arc;

use serde_json::Value;

use super::flag::VariantNames;
use super::read::{index, Field};
use super::{Loader, MAX_STATE_WINDOW_MS};
use crate::document::budget::{Budget, BudgetAction, Measure};
use crate::document::sticky::Sticky;
use crate::document::{Shadow, Variant};
use crate::error::ProblemKind;
use crate::hash::SaltedHasher;
use crate::time::Millis;

const BUDGET_FIELDS: &[&str] = &[
    "id",
    "description",
    "per",
    "max_requests",
    "max_cost",
    "window",
    "action",
];

/// Most requests a budget may count in one window.
const MAX_BUDGET_REQUESTS: u64 = 1_000_000_000_000;

impl Loader {
    /// A duration of at least a second and at most [`MAX_STATE_WINDOW_MS`].
    fn state_window(&mut self, path: &str, value: &Value) -> Option<Millis> {
        let ms = self.duration_of_a_second_or_more(path, value)?;
        if ms > MAX_STATE_WINDOW_MS {
            self.report(path, ProblemKind::InvalidValue, "must be at most 31d");
            return None;
        }
        Some(ms)
    }

    pub(super) fn sticky(&mut self, path: &str, value: &Value) -> Option<Sticky> {
        let sticky = self.open(path, value, &["by", "ttl"])?;
        let by: Box<str> = self
            .field(&sticky, "by", Self::non_empty_string)
            .or("conversation_id")?
            .into();
        let ttl = self.required(&sticky, "ttl", Self::state_window)?;
        Some(Sticky { by, ttl })
    }

    /// `budgets` of a flag (`variants` and `flag` given) or of the document.
    pub(super) fn budgets(
        &mut self,
        path: &str,
        value: &Value,
        variants: Option<&VariantNames<'_>>,
        flag: Option<&str>,
    ) -> Vec<Budget> {
        let Some(items) = self.array(path, value, "budgets") else {
            return Vec::new();
        };
        let mut out: Vec<Budget> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = index(path, i);
            let Some(budget) = self.budget(&item_path, item, variants, flag) else {
                continue;
            };
            if let Some(first) = out.iter().position(|other| other.id == budget.id) {
                self.report(
                    &item_path,
                    ProblemKind::DuplicateBudgetId,
                    format!(
                        "budget id \"{}\" is already used by budgets[{first}] (give each an \"id\")",
                        budget.id
                    ),
                );
                continue;
            }
            out.push(budget);
        }
        out
    }

    fn budget(
        &mut self,
        path: &str,
        value: &Value,
        variants: Option<&VariantNames<'_>>,
        flag: Option<&str>,
    ) -> Option<Budget> {
        let budget = self.open(path, value, BUDGET_FIELDS)?;
        self.field(&budget, "description", Self::string);
        let per: Option<Box<str>> = self
            .field(&budget, "per", Self::non_empty_string)
            .optional()?
            .map(Box::from);
        let measure_limit = match (budget.has("max_requests"), budget.has("max_cost")) {
            (true, true) => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    "give either \"max_requests\" or \"max_cost\", not both",
                );
                None
            }
            (false, false) => {
                self.report(
                    &budget.path_of("max_requests"),
                    ProblemKind::MissingField,
                    "a budget needs \"max_requests\" or \"max_cost\"",
                );
                None
            }
            (true, false) => self
                .field(&budget, "max_requests", |l, path, v| {
                    l.positive_integer(path, v, MAX_BUDGET_REQUESTS)
                })
                .ok()
                .map(|n| (Measure::Requests, n as f64)),
            (false, true) => self
                .field(&budget, "max_cost", Self::positive_number)
                .ok()
                .map(|n| (Measure::Cost, n)),
        };
        let window = self.required(&budget, "window", Self::state_window);
        let action = self.required(&budget, "action", |l, path, v| {
            l.budget_action(path, v, variants, flag)
        });
        let (measure, limit) = measure_limit?;
        let window = window?;
        let id: Arc<str> = match self.field(&budget, "id", Self::non_empty_string) {
            Field::Valid(id) => Arc::from(id),
            Field::Invalid => return None,
            Field::Absent => Arc::from(format!(
                "{}{}-{}",
                per.as_deref().map(|p| format!("{p}-")).unwrap_or_default(),
                measure.as_str(),
                crate::time::format_duration(window)
            )),
        };
        Some(Budget {
            key: Arc::from(format!("{}\u{1f}{id}", flag.unwrap_or(""))),
            id,
            flag: flag.map(Arc::from),
            per,
            measure,
            limit,
            window,
            action: action?,
        })
    }

    /// `"kill"`, or `{"serve": variant}` for a flag's budget.
    fn budget_action(
        &mut self,
        path: &str,
        value: &Value,
        variants: Option<&VariantNames<'_>>,
        flag: Option<&str>,
    ) -> Option<BudgetAction> {
        match (value, variants) {
            (Value::String(text), _) if text == "kill" => Some(BudgetAction::Kill),
            (Value::Object(_), Some(names)) => {
                let action = self.open(path, value, &["serve"])?;
                self.required(&action, "serve", |l, path, v| {
                    l.variant_ref(path, v, names, flag.unwrap_or(""))
                })
                .map(BudgetAction::Serve)
            }
            (_, Some(_)) => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    "expected \"kill\" or {\"serve\": \"<variant>\"} (a cheaper, cached or static variant)",
                );
                None
            }
            (_, None) => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    "a document-wide budget's action is \"kill\" (variants belong to flags: give a flag its own budget to serve one)",
                );
                None
            }
        }
    }

    pub(super) fn shadow(
        &mut self,
        path: &str,
        value: &Value,
        variants: &[Variant],
        names: &VariantNames<'_>,
        flag: &str,
        flag_salt: &str,
    ) -> Option<Shadow> {
        let shadow = self.open(
            path,
            value,
            &["variant", "percent", "max_cost_per_hour", "salt"],
        )?;
        let variant = self.required(&shadow, "variant", |l, path, v| {
            let variant = l.variant_ref(path, v, names, flag)?;
            if !variants[variant].ai {
                l.report(
                    path,
                    ProblemKind::InvalidValue,
                    format!(
                        "variant \"{}\" calls no model (\"ai\": false): there is nothing to shadow",
                        variants[variant].id
                    ),
                );
                return None;
            }
            Some(variant)
        });
        let milli_percent =
            self.required(&shadow, "percent", |l, path, v| l.percent(path, v, false));
        let cap = self
            .field(&shadow, "max_cost_per_hour", Self::positive_number)
            .optional();
        let salt: Box<str> = match self.field(&shadow, "salt", Self::string) {
            Field::Valid(salt) => salt.into(),
            Field::Absent => format!("{flag_salt}/shadow").into(),
            Field::Invalid => return None,
        };
        Some(Shadow {
            variant: variant?,
            milli_percent: milli_percent?,
            hasher: SaltedHasher::new(&salt),
            salt,
            cap: cap?.map(|limit| Budget {
                id: Arc::from("shadow"),
                key: Arc::from(format!("{flag}\u{1f}\u{1f}shadow")),
                flag: Some(Arc::from(flag)),
                per: None,
                measure: Measure::Cost,
                limit,
                window: 3_600_000,
                action: BudgetAction::SkipShadow,
            }),
        })
    }
}
