use serde_json::{json, Value};

use super::*;
use crate::time::parse_timestamp;

const START: &str = "2026-11-21T09:00:00Z";

fn at(text: &str) -> Millis {
    parse_timestamp(text).unwrap()
}

fn doc(flag: Value) -> Value {
    json!({
        "revision": "r",
        "segments": { "staff": { "attr": "email", "op": "ends_with", "value": "@acme.com" } },
        "flags": { "bot": flag }
    })
}

fn ramp_flag(steps: Value) -> Value {
    json!({
        "variants": { "stable": {}, "v2": {}, "human": { "ai": false } },
        "default": "stable",
        "kill": { "active": false, "serve": "human" },
        "rules": [
            { "id": "dogfood", "when": { "segment": "staff" }, "serve": "v2" },
            { "id": "canary", "ramp": { "variant": "v2", "start": START, "steps": steps } }
        ]
    })
}

fn run(old: &Value, new: &Value, users: usize, when: &str) -> Review {
    let population = synthetic_population(old, new, users, 7);
    review(old, new, &population, &ReviewOptions { at: at(when) }).unwrap()
}

fn codes(review: &Review) -> Vec<&'static str> {
    review.dangers.iter().map(|d| d.code).collect()
}

#[test]
fn identical_documents_change_nothing() {
    let d = doc(ramp_flag(
        json!([{ "percent": 5, "hold": "24h" }, { "percent": 100 }]),
    ));
    let r = run(&d, &d, 2000, "2026-11-21T12:00:00Z");
    assert!(r.changes.is_empty());
    assert!(r.flags.is_empty());
    assert!(!r.is_dangerous());
    assert_eq!(r.units, 2000);
}

#[test]
fn a_ramp_step_up_moves_the_expected_share_only_into_the_ramped_variant() {
    let old = doc(ramp_flag(
        json!([{ "percent": 5, "hold": "24h" }, { "percent": 100 }]),
    ));
    let new = doc(ramp_flag(
        json!([{ "percent": 10, "hold": "24h" }, { "percent": 100 }]),
    ));
    let r = run(&old, &new, 20_000, "2026-11-21T12:00:00Z");
    let kinds: Vec<_> = r.changes.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, ["ramp_changed"]);
    let bot = &r.flags[0];
    // Every move goes stable -> v2 (monotonic ramp): 5 % of the units that are not staff (about
    // half the synthetic units have a staff email; those get v2 from the rule before).
    assert!(bot
        .moves
        .iter()
        .all(|m| (m.from.as_str(), m.to.as_str()) == ("stable", "v2")));
    assert!(
        (0.015..0.035).contains(&bot.moved_share),
        "{}",
        bot.moved_share
    );
    // A step up to the next step is not a jump.
    assert!(!r.is_dangerous(), "{:?}", r.dangers);
}

#[test]
fn a_ramp_that_jumps_past_its_next_step_is_dangerous() {
    let old = doc(ramp_flag(json!([
        { "percent": 1, "hold": "24h" }, { "percent": 5, "hold": "24h" }, { "percent": 100 }
    ])));
    let new = doc(ramp_flag(
        json!([{ "percent": 50, "hold": "24h" }, { "percent": 100 }]),
    ));
    let r = run(&old, &new, 5000, "2026-11-21T12:00:00Z");
    assert_eq!(codes(&r), ["RAMP_JUMP"]);
    assert!(
        r.dangers[0].message.contains("from 1 % to 50 %"),
        "{}",
        r.dangers[0].message
    );
    assert!(r.dangers[0].message.contains("next step (5 %)"));
}

#[test]
fn movement_along_the_ramp_steps_is_measured() {
    let old = doc(ramp_flag(
        json!([{ "percent": 5, "hold": "24h" }, { "percent": 100 }]),
    ));
    let new = doc(ramp_flag(json!([
        { "percent": 5, "hold": "24h" }, { "percent": 25, "hold": "24h" }, { "percent": 100 }
    ])));
    let r = run(&old, &new, 10_000, "2026-11-21T12:00:00Z");
    let bot = &r.flags[0];
    assert_eq!(bot.moved, 0, "nothing moves now");
    let steps: Vec<(f64, usize)> = bot
        .ramp_steps
        .iter()
        .map(|s| (s.percent, s.moved))
        .collect();
    // On day 2 the new schedule is at 25 % where the old one is at 100 %: 75 % of the units
    // that are not staff (about half) move back.
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].0, 25.0);
    assert!((3000..4500).contains(&steps[0].1), "{steps:?}");
    assert!(bot.ramp_steps[0]
        .moves
        .iter()
        .all(|m| (m.from.as_str(), m.to.as_str()) == ("v2", "stable")));
    assert_eq!(steps[1], (100.0, 0));
}

#[test]
fn a_salt_change_rebuckets_everyone() {
    let split = |salt: Option<&str>| {
        let mut f = json!({
            "variants": { "a": { "ai": false }, "b": {} },
            "default": "a",
            "rules": [{ "id": "ab", "split": [{ "variant": "a", "percent": 50 }, { "variant": "b", "percent": 50 }] }]
        });
        if let Some(salt) = salt {
            f["salt"] = json!(salt);
        }
        doc(f)
    };
    let r = run(&split(None), &split(Some("bot-2")), 10_000, START);
    assert_eq!(codes(&r), ["REBUCKET"]);
    let kinds: Vec<_> = r.changes.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, ["salt_changed"]);
    // Half the units of each side change sides: about 50 % move.
    assert!(
        (0.45..0.55).contains(&r.flags[0].moved_share),
        "{}",
        r.flags[0].moved_share
    );
    // The same salt written explicitly is no change at all.
    let r = run(&split(None), &split(Some("bot")), 1000, START);
    assert!(r.changes.is_empty() && !r.is_dangerous());
}

#[test]
fn a_kill_variant_that_calls_a_model_is_dangerous() {
    let mut old = doc(ramp_flag(json!([{ "percent": 5 }])));
    let mut new = old.clone();
    new["flags"]["bot"]["kill"]["serve"] = json!("stable");
    let r = run(&old, &new, 100, START);
    assert_eq!(codes(&r), ["KILL_CALLS_MODEL"]);
    assert!(r.changes.iter().any(|c| c.kind == "kill_changed"));
    // A kill variant that stops calling the model, or was already AI before: not raised by
    // this change.
    old["flags"]["bot"]["kill"]["serve"] = json!("stable");
    let r = run(&old, &new, 100, START);
    assert!(!r.is_dangerous(), "{:?}", r.dangers);
}

#[test]
fn per_segment_moves_and_targeting_changes() {
    let old = doc(ramp_flag(json!([{ "percent": 5 }])));
    let mut new = old.clone();
    // Staff get `stable` now.
    new["flags"]["bot"]["rules"][0]["serve"] = json!("stable");
    let r = run(&old, &new, 4000, "2026-11-22T09:00:00Z");
    assert_eq!(r.changes.len(), 1);
    assert_eq!(
        (r.changes[0].kind, r.changes[0].item.as_deref()),
        ("rule_changed", Some("dogfood"))
    );
    let bot = &r.flags[0];
    let staff = bot.segments.iter().find(|s| s.segment == "staff").unwrap();
    assert!(
        staff.units > 0 && staff.units < 4000,
        "synthetic emails match sometimes"
    );
    // Staff units outside the 5 % ramp move v2 -> stable; no non-staff unit moves.
    assert_eq!(staff.moved, bot.moved);
    assert!(staff
        .moves
        .iter()
        .all(|m| (m.from.as_str(), m.to.as_str()) == ("v2", "stable")));
}

#[test]
fn removing_a_variant_that_is_served_is_dangerous_once() {
    let old = doc(json!({
        "variants": { "a": {}, "b": {}, "c": {} }, "default": "a",
        "kill": { "active": false, "serve": "a" },
        "rules": [{ "id": "s", "split": [{ "variant": "a", "weight": 1 }, { "variant": "b", "weight": 1 }] }]
    }));
    let new = doc(json!({
        "variants": { "a": {}, "c": {} }, "default": "a",
        "kill": { "active": false, "serve": "a" },
        "rules": [{ "id": "s", "split": [{ "variant": "a", "weight": 1 }, { "variant": "c", "weight": 1 }] }]
    }));
    let old = with_human_kill(old);
    let new = with_human_kill(new);
    let r = run(&old, &new, 1000, START);
    assert_eq!(codes(&r), ["REMOVED_VARIANT_SERVED"]);
    assert!(r
        .changes
        .iter()
        .any(|c| c.kind == "variant_removed" && c.item.as_deref() == Some("b")));
}

fn with_human_kill(mut d: Value) -> Value {
    d["flags"]["bot"]["variants"]["a"] = json!({ "ai": false });
    d
}

#[test]
fn flags_added_and_removed_and_document_changes_are_listed() {
    let old = json!({ "revision": "1", "segments": { "s": { "attr": "plan", "op": "eq", "value": "pro" } },
                      "flags": { "gone": { "variants": { "x": { "ai": false } }, "default": "x" } } });
    let new = json!({ "revision": "2", "kill": { "active": true },
                      "flags": { "fresh": { "variants": { "y": { "ai": false } }, "default": "y" } } });
    let r = run(&old, &new, 10, START);
    let kinds: Vec<_> = r
        .changes
        .iter()
        .map(|c| (c.flag.as_deref(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (Some("gone"), "flag_removed"),
            (Some("fresh"), "flag_added"),
            (None, "segment_removed"),
            (None, "document_kill_changed")
        ]
    );
    assert_eq!(
        (r.old_revision.as_str(), r.new_revision.as_str()),
        ("1", "2")
    );
}

#[test]
fn the_synthetic_population_is_seeded_and_spreads_condition_values() {
    let d = doc(ramp_flag(json!([{ "percent": 5 }])));
    let a = synthetic_population(&d, &d, 50, 1);
    assert_eq!(a, synthetic_population(&d, &d, 50, 1));
    assert_ne!(a, synthetic_population(&d, &d, 50, 2));
    assert_eq!(a[3]["user_id"], json!("user_id-1-3"));
    let emails = a.iter().filter(|u| u.get("email").is_some()).count();
    assert!(emails > 10 && emails < 40, "{emails}");
}

#[test]
fn an_invalid_document_is_an_error() {
    let d = doc(ramp_flag(json!([{ "percent": 5 }])));
    let err = review(&d, &json!({ "flags": 3 }), &[], &ReviewOptions { at: 0 }).unwrap_err();
    assert_eq!(err.code(), "INVALID_DOCUMENT");
}

#[test]
fn binding_options_are_checked_with_one_set_of_messages() {
    let message = |result: Result<Population>| match result {
        Err(Error::InvalidArgument { message }) => message,
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    };
    assert!(matches!(
        Population::of_options(None, None, None),
        Ok(Population::Synthetic {
            users: DEFAULT_REVIEW_USERS,
            seed: DEFAULT_REVIEW_SEED
        })
    ));
    assert!(matches!(
        Population::of_options(Some(5.0), Some(9.0), None),
        Ok(Population::Synthetic { users: 5, seed: 9 })
    ));
    assert_eq!(
        message(Population::of_options(Some(0.0), None, None)),
        "users must be a whole number from 1 to 1000000, got 0"
    );
    assert_eq!(
        message(Population::of_options(Some(2.5), None, None)),
        "users must be a whole number from 1 to 1000000, got 2.5"
    );
    assert_eq!(
        message(Population::of_options(None, Some(-1.0), None)),
        "seed must be a whole number from 0 to 2^53 - 1, got -1"
    );
    assert_eq!(
        message(Population::of_options(
            None,
            Some(1.0),
            Some(vec![json!({})])
        )),
        "population excludes users and seed: a given population is not drawn"
    );
    assert_eq!(
        check_population(&[json!({}), json!(3)]),
        Err(Error::InvalidArgument {
            message: "population: context 2 is not a JSON object".to_string()
        })
    );
    assert!(check_population(&[]).is_err());
}

#[test]
fn a_rejected_document_is_named_by_its_problem_paths() {
    let good = doc(ramp_flag(json!([{ "percent": 5 }])));
    let mut bad = good.clone();
    bad["flags"]["bot"]["default"] = json!("nope");
    let options = ReviewOptions { at: at(START) };
    let synthetic = || Population::Synthetic { users: 10, seed: 1 };
    let paths = |result: Result<Review>| match result {
        Err(Error::InvalidDocument { problems }) => {
            problems.into_iter().map(|p| p.path).collect::<Vec<_>>()
        }
        other => panic!("expected INVALID_DOCUMENT, got {other:?}"),
    };
    let new_paths = paths(review_documents(&good, &bad, synthetic(), &options));
    assert!(!new_paths.is_empty());
    assert!(
        new_paths.iter().all(|p| p.starts_with("new.flags.bot")),
        "{new_paths:?}"
    );
    let old_paths = paths(review_documents(&bad, &good, synthetic(), &options));
    assert!(
        old_paths.iter().all(|p| p.starts_with("old.flags.bot")),
        "{old_paths:?}"
    );
    let review = review_documents(&good, &good, synthetic(), &options).unwrap();
    assert_eq!((review.units, review.dangerous), (10, false));
}
