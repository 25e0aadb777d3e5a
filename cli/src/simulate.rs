//! `flagrail simulate`: where N synthetic users land, now, at an instant, or along a ramp.

use std::collections::BTreeMap;

use flagrail_core::document::Action;
use flagrail_core::time::format_timestamp;
use flagrail_core::{At, Document, NoOverlay};
use serde_json::{json, Value};

use crate::args::Args;
use crate::{load, parse_at, parse_context, Failure, Outcome};

/// Variant and reason counts of one pass over the users.
struct Tally {
    variants: BTreeMap<String, u64>,
    reasons: BTreeMap<String, u64>,
    /// For each user, the variant served (to measure movement between instants).
    served: Vec<Option<u16>>,
}

fn tally(doc: &Document, flag: &str, users: u64, base: &Value, at: i64) -> Tally {
    let unit_attr = doc
        .flag(flag)
        .map_or("user_id".to_string(), |f| f.bucket_by.to_string());
    let mut context = base.clone();
    let mut t = Tally {
        variants: BTreeMap::new(),
        reasons: BTreeMap::new(),
        served: Vec::with_capacity(users as usize),
    };
    for i in 0..users {
        context[&unit_attr] = Value::String(format!("user-{i}"));
        let decision = doc.evaluate(flag, &context, &At(at), &NoOverlay);
        let variant = decision.variant_id().unwrap_or("(none)").to_string();
        *t.variants.entry(variant).or_default() += 1;
        *t.reasons
            .entry(decision.reason.as_str().to_string())
            .or_default() += 1;
        t.served.push(decision.variant_index.map(|v| v as u16));
    }
    t
}

fn share(count: u64, users: u64) -> f64 {
    if users == 0 {
        0.0
    } else {
        count as f64 * 100.0 / users as f64
    }
}

pub fn run(args: &mut Args) -> Outcome {
    let flag = args.required("--flag")?;
    let users: u64 = args
        .required("--users")?
        .parse()
        .ok()
        .filter(|n| (1..=10_000_000).contains(n))
        .ok_or_else(|| Failure::usage("--users must be a whole number from 1 to 10000000"))?;
    let base = parse_context(args.option("--context"))?;
    let timeline = args.flag("--timeline");
    let at_text = args.option("--at");
    let as_json = args.flag("--json");
    let file = args.positional("FILE")?;
    args.finish()?;
    if timeline && at_text.is_some() {
        return Err(Failure::usage("give --at or --timeline, not both"));
    }
    let at = parse_at(at_text)?;
    let doc = load(&file)?;
    let Some(flag_def) = doc.flag(&flag) else {
        return Err(Failure::failed(format!("no flag \"{flag}\" in {file}")));
    };

    let instants: Vec<(i64, String)> = if timeline {
        let mut points = Vec::new();
        for rule in &flag_def.rules {
            if let Action::Ramp(ramp) = &rule.action {
                points.push((ramp.start - 1, format!("before {}", rule.id)));
                // The labels name the schedule; a pause or rollback changes what is live, which
                // the shares in the row show.
                let state = if ramp.rolled_back {
                    ", rolled back"
                } else if ramp.paused_at.is_some() {
                    ", paused"
                } else {
                    ""
                };
                for (i, (begins, milli)) in ramp.schedule().into_iter().enumerate() {
                    points.push((
                        begins,
                        format!(
                            "{} step {} ({} %{state})",
                            rule.id,
                            i + 1,
                            milli as f64 / 1000.0
                        ),
                    ));
                }
            }
        }
        if points.is_empty() {
            return Err(Failure::failed(format!(
                "flag \"{flag}\" has no ramp: --timeline needs one"
            )));
        }
        points.sort();
        points
    } else {
        vec![(at, "at".to_string())]
    };

    let variant_ids: Vec<String> = flag_def.variants.iter().map(|v| v.id.to_string()).collect();
    let ramped: Vec<u16> = flag_def
        .rules
        .iter()
        .filter_map(|r| match &r.action {
            Action::Ramp(ramp) => Some(ramp.variant as u16),
            _ => None,
        })
        .collect();
    let mut rows = Vec::new();
    let mut previous: Option<Tally> = None;
    for (instant, label) in &instants {
        let t = tally(&doc, &flag, users, &base, *instant);
        // Units that entered or left a ramped variant since the previous instant: a monotonic
        // ramp only ever moves units in.
        let movement = previous.as_ref().map(|p| {
            let on_ramp = |v: &Option<u16>| v.is_some_and(|v| ramped.contains(&v));
            let pairs = || p.served.iter().zip(&t.served);
            let entered = pairs().filter(|(a, b)| !on_ramp(a) && on_ramp(b)).count();
            let left = pairs().filter(|(a, b)| on_ramp(a) && !on_ramp(b)).count();
            json!({ "entered_ramp": entered, "left_ramp": left })
        });
        rows.push(json!({
            "at": format_timestamp(*instant),
            "label": label,
            "variants": t.variants,
            "reasons": t.reasons,
            "since_previous": movement,
        }));
        previous = Some(t);
    }

    if as_json {
        let out = json!({ "flag": flag, "users": users, "revision": doc.revision(), "rows": rows });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    outln!(
        "flag {flag} (revision {}), {users} synthetic users user-0 … user-{}",
        doc.revision(),
        users - 1
    );
    let mut header = format!("{:<24} {:<28}", "time", "point");
    for id in &variant_ids {
        header.push_str(&format!(" {id:>10}"));
    }
    if timeline {
        header.push_str("   entered  left");
    }
    outln!("{header}");
    for row in &rows {
        let mut line = format!(
            "{:<24} {:<28}",
            row["at"].as_str().unwrap_or(""),
            row["label"].as_str().unwrap_or("")
        );
        for id in &variant_ids {
            let count = row["variants"].get(id).and_then(Value::as_u64).unwrap_or(0);
            line.push_str(&format!(" {:>9.2}%", share(count, users)));
        }
        if timeline {
            match row["since_previous"].as_object() {
                Some(m) => line.push_str(&format!(
                    "   {:>7}  {:>4}",
                    m["entered_ramp"].as_u64().unwrap_or(0),
                    m["left_ramp"].as_u64().unwrap_or(0)
                )),
                None => line.push_str(&format!("   {:>7}  {:>4}", "-", "-")),
            }
        }
        outln!("{line}");
    }
    if !timeline {
        if let Some(row) = rows.first() {
            let reasons: Vec<String> = row["reasons"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect())
                .unwrap_or_default();
            outln!("reasons: {}", reasons.join(", "));
        }
    }
    Ok(())
}
