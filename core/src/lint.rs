//! Flag hygiene warnings for a valid document (`flagrail lint`).
//!
//! Validation rejects documents that cannot be evaluated; lint points at documents that can be
//! evaluated but are probably not what their authors meant, or that carry risk: expired flags,
//! variants nothing can serve, rules that can never decide, and targeting on personal data.

use serde_json::Value;

use crate::condition::Condition;
use crate::document::budget::{BudgetAction, Measure};
use crate::document::{Action, Document, Flag};
use crate::time::{format_date, Millis};

/// One lint warning, addressed like a validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    pub code: &'static str,
    pub(crate) message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} [{}]", self.path, self.message, self.code)
    }
}

/// Attribute names that usually hold personal data. Targeting on them copies that data into
/// every flag document and every explain output; a derived attribute (email_domain, country,
/// a hashed id) does the same job.
const PERSONAL_DATA_HINTS: &[&str] = &[
    "email",
    "e_mail",
    "mail",
    "phone",
    "mobile",
    "telephone",
    "name",
    "first_name",
    "firstname",
    "last_name",
    "lastname",
    "full_name",
    "fullname",
    "surname",
    "address",
    "street",
    "ip",
    "ip_address",
    "ssn",
    "social_security",
    "passport",
    "birth",
    "dob",
    "birthday",
    "credit_card",
    "card_number",
    "iban",
];

/// Judged by the whole name or its last word (`user_email`, `ip_address`), so that derived
/// attributes (`email_domain`, `phone_country`) pass; a bare trailing `name` only counts in the
/// person-name forms, since `model_name` or `app_name` are common and harmless.
fn looks_personal(attr: &str) -> bool {
    let lower = attr.to_ascii_lowercase();
    if PERSONAL_DATA_HINTS.contains(&lower.as_str()) {
        return true;
    }
    let last = lower
        .rsplit(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("");
    match last {
        "name" => [
            "first_name",
            "last_name",
            "full_name",
            "user_name",
            "display_name",
        ]
        .iter()
        .any(|form| lower.ends_with(form)),
        _ => PERSONAL_DATA_HINTS.contains(&last),
    }
}

/// All warnings of a document, in document order. `now` decides what has expired.
pub fn lint(doc: &Document, now: Millis) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for segment in doc.segments() {
        let mut attrs = Vec::new();
        collect_direct_attributes(&segment.condition, &mut attrs);
        for attr in attrs.into_iter().filter(|a| looks_personal(a)) {
            warnings.push(Warning {
                path: format!("segments.{}", segment.name),
                code: "PERSONAL_DATA",
                message: format!(
                    "targets attribute \"{attr}\", which looks like personal data; prefer a derived attribute (domain, country, hashed id)"
                ),
            });
        }
    }
    for flag in doc.flags() {
        lint_flag(doc, flag, now, &mut warnings);
    }
    warnings
}

fn collect_direct_attributes<'a>(condition: &'a Condition, out: &mut Vec<&'a str>) {
    match condition {
        Condition::All(items) | Condition::Any(items) => {
            items.iter().for_each(|c| collect_direct_attributes(c, out))
        }
        Condition::Not(inner) => collect_direct_attributes(inner, out),
        Condition::Segment(_) => {}
        Condition::Test(test) => {
            if !out.contains(&&*test.attr) {
                out.push(&test.attr);
            }
        }
    }
}

fn lint_flag(doc: &Document, flag: &Flag, now: Millis, warnings: &mut Vec<Warning>) {
    let path = format!("flags.{}", flag.key);
    if let Some(expires) = flag.expires {
        if expires <= now {
            warnings.push(Warning {
                path: format!("{path}.expires"),
                code: "EXPIRED_FLAG",
                message: format!(
                    "flag expired on {}{}: ship the winner as code and delete the flag, or extend \"expires\"",
                    format_date(expires),
                    flag.owner
                        .as_ref()
                        .map(|o| format!(" (owner: {o})"))
                        .unwrap_or_default()
                ),
            });
        }
    }

    // Variants nothing can serve.
    let mut servable = vec![false; flag.variants.len()];
    servable[flag.default] = true;
    servable[flag.kill_variant()] = true;
    for rule in &flag.rules {
        match &rule.action {
            Action::Serve(v) => servable[*v] = true,
            Action::Split(split) => {
                let mut lower = 0;
                for (upper, v) in &split.ranges {
                    if *upper > lower {
                        servable[*v] = true;
                    }
                    lower = *upper;
                }
            }
            Action::Ramp(ramp) => {
                servable[ramp.variant] = true;
                if let Some(b) = ramp.baseline {
                    servable[b] = true;
                }
            }
        }
    }
    // The runtime serves these too: fallback steps, budget downgrades, the shadow candidate.
    for &v in &flag.fallback {
        servable[v] = true;
    }
    for budget in &flag.budgets {
        if let BudgetAction::Serve(v) = budget.action {
            servable[v] = true;
        }
    }
    if let Some(shadow) = &flag.shadow {
        servable[shadow.variant] = true;
    }

    // Cost budgets reserve a call's estimate before it runs; a variant without one is only
    // counted after the fact, so concurrent calls can overshoot by what they cost.
    let cost_budgeted = flag
        .budgets
        .iter()
        .chain(doc.budgets())
        .any(|b| b.measure == Measure::Cost);
    let capped_shadow = flag
        .shadow
        .as_ref()
        .filter(|s| s.cap.is_some())
        .map(|s| s.variant);
    for (i, variant) in flag.variants.iter().enumerate() {
        let watched = (cost_budgeted && variant.ai) || capped_shadow == Some(i);
        if watched && variant.max_cost().is_none() {
            warnings.push(Warning {
                path: format!("{path}.variants.{}", variant.id),
                code: "UNPRICED_BUDGET",
                message: "a cost budget (or the shadow's max_cost_per_hour) watches this variant, but it has no max_tokens or cost_per_1k_output_tokens: its calls cannot be reserved before they run".to_string(),
            });
        }
    }
    for (variant, served) in flag.variants.iter().zip(&servable) {
        if !served {
            warnings.push(Warning {
                path: format!("{path}.variants.{}", variant.id),
                code: "UNUSED_VARIANT",
                message: "no rule, default or kill switch can serve this variant".to_string(),
            });
        }
    }

    // Rules that an earlier rule always pre-empts.
    let source_rules = doc
        .source()
        .get("flags")
        .and_then(|f| f.get(&*flag.key))
        .and_then(|f| f.get("rules"))
        .and_then(Value::as_array);
    let mut catch_all: Option<&str> = None;
    for (i, rule) in flag.rules.iter().enumerate() {
        let rule_path = format!("{path}.rules[{i}]");
        if let Some(when) = &rule.when {
            let mut attrs = Vec::new();
            collect_direct_attributes(when, &mut attrs);
            for attr in attrs.into_iter().filter(|a| looks_personal(a)) {
                warnings.push(Warning {
                    path: format!("{path}.rules[{i}].when"),
                    code: "PERSONAL_DATA",
                    message: format!(
                        "targets attribute \"{attr}\", which looks like personal data; prefer a derived attribute (domain, country, hashed id)"
                    ),
                });
            }
        }
        if let Some(earlier) = catch_all {
            warnings.push(Warning {
                path: rule_path,
                code: "SHADOWED_RULE",
                message: format!(
                    "rule \"{}\" can never decide: rule \"{earlier}\" before it serves every context",
                    rule.id
                ),
            });
            continue;
        }
        if let (Some(rules), Some(_)) = (source_rules, &rule.when) {
            let when = rules.get(i).and_then(|r| r.get("when"));
            let twin = flag.rules[..i].iter().enumerate().find(|(j, earlier)| {
                matches!(earlier.action, Action::Serve(_))
                    && rules.get(*j).and_then(|r| r.get("when")) == when
            });
            if let Some((_, earlier)) = twin {
                warnings.push(Warning {
                    path: rule_path.clone(),
                    code: "SHADOWED_RULE",
                    message: format!(
                        "rule \"{}\" can never decide: rule \"{}\" before it has the same condition",
                        rule.id, earlier.id
                    ),
                });
            }
        }
        if rule.when.is_none() && matches!(rule.action, Action::Serve(_)) {
            catch_all = Some(&rule.id);
        }
    }
    for (i, rule) in flag.rules.iter().enumerate() {
        if let Some(unit) = rule.bucket_by.as_deref().filter(|u| looks_personal(u)) {
            warnings.push(Warning {
                path: format!("{path}.rules[{i}].bucket_by"),
                code: "PERSONAL_DATA",
                message: format!(
                    "buckets by \"{unit}\", which looks like personal data; bucket by an opaque id"
                ),
            });
        }
    }
    if looks_personal(&flag.bucket_by) {
        warnings.push(Warning {
            path: format!("{path}.bucket_by"),
            code: "PERSONAL_DATA",
            message: format!(
                "buckets by \"{}\", which looks like personal data; bucket by an opaque id",
                flag.bucket_by
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_attribute_names() {
        for attr in [
            "email",
            "user_email",
            "phone",
            "ip",
            "last_name",
            "Email",
            "ip_address",
        ] {
            assert!(looks_personal(attr), "{attr}");
        }
        for attr in [
            "email_domain",
            "plan",
            "user_id",
            "country",
            "app_version",
            "model_name",
        ] {
            assert!(!looks_personal(attr), "{attr}");
        }
    }
}
