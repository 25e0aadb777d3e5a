//! The autopilot's decisions written into a document file: a ramp's `start`, `paused_at` and
//! `rolled_back`, through the same locked, atomic, audited rewrite as a kill.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{invalid, next_revision, rewrite_file, text_edit, KillOptions, Rewrite};
use crate::autopilot::{fields_after, look, GovernedState, LastDecision, RampFields, Verdict};
use crate::document::{Action, Document};
use crate::error::Result;
use crate::time::{format_date, format_timestamp, Millis};

/// One autopilot decision about one ramp.
#[derive(Debug, Clone)]
pub struct RampChange<'a> {
    pub flag: &'a str,
    /// The ramp rule's id.
    pub rule_id: &'a str,
    /// The verdict to write (its step must still be the ramp's live step).
    pub verdict: &'a Verdict,
    pub actor: &'a str,
    pub at: Millis,
}

/// What writing a decision did.
#[derive(Debug, Clone, PartialEq)]
pub struct RampOutcome {
    /// `false` for a hold, or when the ramp is no longer where the verdict saw it.
    pub changed: bool,
    pub old_revision: String,
    pub new_revision: String,
    /// The fields written.
    pub(crate) fields: RampFields,
    pub(crate) document: PathBuf,
    /// The signature written beside a signed document.
    pub(crate) signature: Option<PathBuf>,
    pub audit_log: PathBuf,
    pub warnings: Vec<String>,
}

/// Applies a decision to a document's text, keeping its formatting where it can (as a kill
/// does). Nothing changes for a hold, or when the ramp is no longer governed at the verdict's
/// step (a person, or another autopilot, moved it since the look): the document wins.
pub fn edit_ramp(text: &str, change: &RampChange<'_>) -> Result<(Rewrite, RampFields)> {
    let current = Document::from_json(text)?;
    let old_revision = current.revision().to_string();
    let unchanged = |warnings: Vec<String>| {
        Ok((
            Rewrite {
                changed: false,
                text: text.to_string(),
                old_revision: old_revision.clone(),
                new_revision: old_revision.clone(),
                warnings,
            },
            RampFields::default(),
        ))
    };
    let flag = current
        .flag(change.flag)
        .ok_or_else(|| invalid(format!("no flag \"{}\" in the document", change.flag)))?;
    let (rule_index, ramp) = flag
        .rules
        .iter()
        .enumerate()
        .find_map(|(i, rule)| match &rule.action {
            Action::Ramp(ramp) if &*rule.id == change.rule_id => Some((i, ramp)),
            _ => None,
        })
        .ok_or_else(|| {
            invalid(format!(
                "flag \"{}\" has no ramp rule \"{}\"",
                change.flag, change.rule_id
            ))
        })?;
    let Some(spec) = flag.autopilot_of(ramp) else {
        return Err(invalid(format!(
            "the ramp \"{}\" of flag \"{}\" has no autopilot",
            change.rule_id, change.flag
        )));
    };
    let now = look(ramp, spec, change.at);
    if now.state != GovernedState::Governed || now.step != Some(change.verdict.step) {
        return unchanged(vec![format!(
            "flag \"{}\" ramp \"{}\": {} at step {:?} now, not governed at step {} as when decided; nothing written",
            change.flag,
            change.rule_id,
            now.state.as_str(),
            now.step,
            change.verdict.step
        )]);
    }
    let fields = fields_after(
        ramp,
        change.verdict.step,
        change.verdict.decision,
        change.at,
    );
    if fields.is_empty() {
        return unchanged(Vec::new());
    }
    let mut values: Vec<(&str, Value)> = Vec::new();
    if let Some(start) = fields.start {
        values.push(("start", Value::String(format_timestamp(start))));
    }
    if let Some(paused_at) = fields.paused_at {
        values.push(("paused_at", Value::String(format_timestamp(paused_at))));
    }
    if let Some(rolled_back) = fields.rolled_back {
        values.push(("rolled_back", Value::Bool(rolled_back)));
    }
    // The decision in brief, for status() and explain in every process that loads this.
    let brief = LastDecision::from_verdict(change.verdict, change.at, change.actor);
    values.push((
        "last_decision",
        serde_json::to_value(&brief)
            .map_err(|err| invalid(format!("cannot serialize the decision: {err}")))?,
    ));
    let new_revision = next_revision(&old_revision, &format_date(change.at));
    let mut expected = current.source().clone();
    {
        let ramp_value = expected
            .get_mut("flags")
            .and_then(|f| f.get_mut(change.flag))
            .and_then(|f| f.get_mut("rules"))
            .and_then(|r| r.get_mut(rule_index))
            .and_then(|r| r.get_mut("ramp"))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| invalid("the ramp is not an object".to_string()))?;
        for (key, value) in &values {
            ramp_value.insert((*key).to_string(), value.clone());
        }
    }
    if let Some(root) = expected.as_object_mut() {
        root.insert("revision".into(), Value::String(new_revision.clone()));
    }
    let rendered: Vec<(&str, String)> = values.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let mut warnings = Vec::new();
    let in_place =
        text_edit::ramp_in_place(text, change.flag, rule_index, &rendered, &new_revision).filter(
            |edited| serde_json::from_str::<Value>(edited).ok().as_ref() == Some(&expected),
        );
    let new_text = match in_place {
        Some(edited) => edited,
        None => {
            warnings.push(
                "the document's formatting could not be kept: it was rewritten as indented JSON"
                    .to_string(),
            );
            let mut pretty = serde_json::to_string_pretty(&expected)
                .map_err(|err| invalid(format!("cannot serialize the document: {err}")))?;
            pretty.push('\n');
            pretty
        }
    };
    Document::from_json(&new_text)?;
    Ok((
        Rewrite {
            changed: true,
            text: new_text,
            old_revision,
            new_revision,
            warnings,
        },
        fields,
    ))
}

/// Writes an autopilot decision into a document file (locked, atomic, audited like a kill).
/// The audit record carries the decision, its reason and the evidence.
pub fn ramp_file(
    path: &Path,
    change: &RampChange<'_>,
    options: &KillOptions,
) -> Result<RampOutcome> {
    let mut fields = RampFields::default();
    let rewritten = rewrite_file(
        path,
        options,
        |text| {
            let (rewrite, written) = edit_ramp(text, change)?;
            fields = written;
            Ok(rewrite)
        },
        |written| {
            let rewrite = &written.rewrite;
            json!({
                "time": format_timestamp(change.at),
                "action": "autopilot",
                "flag": change.flag,
                "rule_id": change.rule_id,
                "decision": change.verdict.decision,
                "reason": change.verdict.reason,
                "step": change.verdict.step,
                "percent": change.verdict.percent,
                "actor": change.actor,
                "old_revision": rewrite.old_revision,
                "new_revision": rewrite.new_revision,
                "document": path.display().to_string(),
                "file": written.document.display().to_string(),
                "signed": written.signature.is_some(),
                "evidence": change.verdict,
            })
        },
    )?;
    Ok(RampOutcome {
        changed: rewritten.rewrite.changed,
        old_revision: rewritten.rewrite.old_revision,
        new_revision: rewritten.rewrite.new_revision,
        fields,
        document: rewritten.document,
        signature: rewritten.signature,
        audit_log: rewritten.audit_log,
        warnings: rewritten.rewrite.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autopilot::{Decision, Method, Reason, Samples};

    const DOC: &str = r#"{
  "revision": "r1",
  "flags": {
    "bot": {
      "variants": { "stable": {}, "v2": {} },
      "default": "stable",
      "rules": [
        { "id": "staff", "when": { "attr": "staff", "op": "eq", "value": true }, "serve": "v2" },
        {
          "id": "canary",
          "ramp": {
            "variant": "v2",
            "baseline": "stable",
            "start": "2026-12-01T09:00:00Z",
            "paused_at": "2026-12-01T09:00:00Z",
            "steps": [ { "percent": 1, "hold": "1h" }, { "percent": 5, "hold": "1h" }, { "percent": 100 } ],
            "autopilot": { "holds": [ { "min": "1h", "max": "6h" } ], "metrics": [ { "metric": "quality", "difference": 2 } ] }
          }
        }
      ]
    }
  }
}
"#;

    fn verdict(decision: Decision, step: usize) -> Verdict {
        Verdict {
            decision,
            reason: Reason::ProvenWithinLimits,
            step,
            percent: 1.0,
            held_ms: 0,
            min_hold_ms: None,
            max_hold_ms: None,
            samples: Samples {
                control: 0,
                candidate: 0,
            },
            srm: None,
            alpha_per_test: 0.0,
            method: Method::ConfidenceSequence,
            metrics: Vec::new(),
        }
    }

    fn at(text: &str) -> Millis {
        crate::time::parse_timestamp(text).unwrap_or(0)
    }

    #[test]
    fn a_promotion_rewrites_two_lines_adds_its_record_and_bumps_the_revision() {
        let promote = verdict(Decision::Promote, 0);
        let change = RampChange {
            flag: "bot",
            rule_id: "canary",
            verdict: &promote,
            actor: "autopilot",
            at: at("2026-12-01T12:30:00Z"),
        };
        let (rewrite, fields) = edit_ramp(DOC, &change).expect("edit");
        assert!(rewrite.changed);
        assert!(rewrite.warnings.is_empty(), "{:?}", rewrite.warnings);
        assert_eq!(fields.paused_at, Some(change.at));
        let changed: Vec<&str> = rewrite
            .text
            .lines()
            .filter(|l| !DOC.lines().any(|b| b == *l))
            .collect();
        assert_eq!(
            changed,
            vec![
                "  \"revision\": \"2026-12-01.1\",",
                "            \"last_decision\": {\"decision\":\"promote\",\"reason\":\"proven_within_limits\",\"at\":\"2026-12-01T12:30:00Z\",\"step\":0,\"percent\":1.0,\"actor\":\"autopilot\",\"samples\":{\"control\":0,\"candidate\":0},\"metrics\":[]},",
                "            \"start\": \"2026-12-01T11:30:00Z\",",
                "            \"paused_at\": \"2026-12-01T12:30:00Z\",",
            ]
        );
        // The promoted ramp is governed at 5 %, and a second write of the same verdict (a
        // stale look) changes nothing.
        let doc = Document::from_json(&rewrite.text).expect("valid");
        let Action::Ramp(ramp) = &doc.flags()[0].rules[1].action else {
            panic!("ramp");
        };
        let seen = look(
            ramp,
            doc.flags()[0].autopilot_of(ramp).expect("spec"),
            change.at + 1,
        );
        assert_eq!((seen.state, seen.step), (GovernedState::Governed, Some(1)));
        // The record travels with the document: what status() and explain show.
        let last = seen.last_decision.expect("last decision");
        assert_eq!((last.decision, last.step), (Decision::Promote, 0));
        assert_eq!(last.at, "2026-12-01T12:30:00Z");
        let (again, _) = edit_ramp(&rewrite.text, &change).expect("edit");
        assert!(!again.changed);
        assert_eq!(again.warnings.len(), 1);
    }

    #[test]
    fn a_rollback_adds_the_field_and_a_hold_writes_nothing() {
        let back = verdict(Decision::RollBack, 0);
        let change = RampChange {
            flag: "bot",
            rule_id: "canary",
            verdict: &back,
            actor: "autopilot",
            at: at("2026-12-01T10:00:00Z"),
        };
        let (rewrite, _) = edit_ramp(DOC, &change).expect("edit");
        let value: Value = serde_json::from_str(&rewrite.text).expect("json");
        assert_eq!(
            value["flags"]["bot"]["rules"][1]["ramp"]["rolled_back"],
            true
        );
        assert!(rewrite.warnings.is_empty(), "{:?}", rewrite.warnings);
        let hold = verdict(Decision::Hold, 0);
        let (rewrite, _) = edit_ramp(
            DOC,
            &RampChange {
                verdict: &hold,
                ..change
            },
        )
        .expect("edit");
        assert!(!rewrite.changed);
        assert_eq!(rewrite.text, DOC);
    }
}
