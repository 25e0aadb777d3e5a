//! Runs the shared vector corpus (tests/vectors/index.json) through the Rust core, one test per
//! vector, named by its id. A custom harness, because the cases are data, not functions.
//! `cargo test --test vectors -- FILTER` runs the cases whose id contains FILTER.

use flagrail_core::EvalOptions;
use std::path::{Path, PathBuf};

use flagrail_core::cache_key::KeyPart;
use flagrail_core::hash::{murmur3_32, unit_hash};
use flagrail_core::live::{Step, Usage};
use flagrail_core::runtime::{classify, ErrorFacts};
use flagrail_core::time::parse_timestamp;
use flagrail_core::{bucket, decision_json, At, Document, Flags, NoOverlay};
use serde_json::{json, Value};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit as text, the way bucketing v1 hashes it (integers in decimal).
fn unit_text(unit: &Value) -> String {
    match unit {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("unit must be a string or an integer, found {other}"),
    }
}

fn str_field<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("case field {key} must be a string"))
}

fn u64_field(case: &Value, key: &str) -> u64 {
    case[key]
        .as_u64()
        .unwrap_or_else(|| panic!("case field {key} must be an integer"))
}

/// Runs one case; `Err` describes the mismatch.
fn run_case(
    kind: &str,
    file: &Value,
    case: &Value,
    document: Option<&Document>,
) -> Result<(), String> {
    let check = |what: &str, got: Value, want: Value| {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what}: got {got}, want {want}"))
        }
    };
    match kind {
        "murmur3" => check(
            "hash",
            json!(murmur3_32(
                str_field(case, "key").as_bytes(),
                u64_field(case, "seed") as u32
            )),
            case["hash"].clone(),
        ),
        "hash" => check(
            "hash",
            json!(unit_hash(
                str_field(case, "salt"),
                &unit_text(&case["unit"])
            )),
            case["hash"].clone(),
        ),
        "bucket" => check(
            "bucket",
            json!(bucket(
                str_field(case, "salt"),
                &unit_text(&case["unit"]),
                u64_field(case, "total") as u32
            )),
            case["bucket"].clone(),
        ),
        "split" => {
            let weights: Vec<Value> = case["weights"]
                .as_array()
                .expect("weights")
                .iter()
                .map(|pair| json!({ "variant": pair[0], "weight": pair[1] }))
                .collect();
            let variants: serde_json::Map<String, Value> = case["weights"]
                .as_array()
                .expect("weights")
                .iter()
                .map(|pair| (pair[0].as_str().expect("variant").to_string(), json!({})))
                .collect();
            let default = variants.keys().next().cloned().expect("a variant");
            let doc = Document::from_value(json!({
                "flags": { "f": {
                    "salt": case["salt"], "variants": variants, "default": default,
                    "rules": [{ "id": "split", "split": weights }],
                }}
            }))
            .map_err(|e| format!("document rejected: {e}"))?;
            let context = json!({ "user_id": case["unit"] });
            let decision = doc.evaluate("f", &context, &At(0), &NoOverlay);
            check("bucket", json!(decision.bucket), case["bucket"].clone())?;
            check(
                "variant",
                json!(decision.variant_id()),
                case["variant"].clone(),
            )?;
            check(
                "total",
                json!(u64_field(case, "total")),
                json!(u64_field(case, "total")),
            )
        }
        "eval" => {
            let doc = document.ok_or("the file's document was rejected")?;
            let at = parse_timestamp(str_field(case, "at")).ok_or("bad at")?;
            let flag = str_field(case, "flag");
            let decision = doc.evaluate(flag, &case["context"], &At(at), &NoOverlay);
            let got = decision_json(doc, flag, &decision, case["default"].as_str());
            let expected = &case["expected"];
            for key in ["variant", "reason", "rule_id", "bucket"] {
                check(key, got[key].clone(), expected[key].clone())?;
            }
            check(
                "revision",
                got["revision"].clone(),
                file["document"]["revision"].clone(),
            )
        }
        // A string document is JSON text (duplicate keys, 1.0, a byte-order mark …).
        "errors" => match match &case["document"] {
            Value::String(text) => Document::from_json(text),
            document => Document::from_value(document.clone()),
        } {
            Ok(_) => Err("the document was accepted".to_string()),
            Err(err) => {
                let mut got: Vec<(String, String)> = err
                    .problems()
                    .iter()
                    .map(|p| (p.path.clone(), p.code().to_string()))
                    .collect();
                let mut want: Vec<(String, String)> = case["problems"]
                    .as_array()
                    .expect("problems")
                    .iter()
                    .map(|p| {
                        (
                            str_field(p, "path").to_string(),
                            str_field(p, "code").to_string(),
                        )
                    })
                    .collect();
                got.sort();
                want.sort();
                if got == want && err.code() == "INVALID_DOCUMENT" {
                    Ok(())
                } else {
                    Err(format!(
                        "problems: got {got:?}, want {want:?}\n    full error: {err}"
                    ))
                }
            }
        },
        "state" => {
            // A fresh handle per case: pins and budgets start empty.
            let flags = Flags::from_value(file["document"].clone())
                .map_err(|e| format!("document rejected: {e}"))?;
            for (i, step) in case["steps"].as_array().expect("steps").iter().enumerate() {
                let flag = str_field(step, "flag");
                let context = &step["context"];
                let expected = &step["expected"];
                let at_step = |what: &str| format!("step {i}: {what}");
                match str_field(step, "op") {
                    "evaluate" => {
                        let at = parse_timestamp(str_field(step, "at")).ok_or("bad at")?;
                        let evaluation = flags.evaluate(flag, context, EvalOptions::at(at));
                        let got = evaluation.to_json(step["default"].as_str());
                        for key in ["variant", "reason", "rule_id", "bucket"] {
                            check(&at_step(key), got[key].clone(), expected[key].clone())?;
                        }
                    }
                    "call" => {
                        let mut run = flags
                            .start_run(flag, context)
                            .map_err(|e| at_step(&format!("start_run: {e}")))?;
                        let served = match run.next_step() {
                            Step::Call { variant, .. } => {
                                run.succeed(Usage::default());
                                variant
                            }
                            Step::Serve { variant } => variant,
                            Step::Exhausted => return Err(at_step("chain exhausted")),
                        };
                        let evaluation = run.evaluation();
                        let flag_def = evaluation.flag().ok_or("no flag")?;
                        check(
                            &at_step("variant"),
                            json!(&*flag_def.variants[served].id),
                            expected["variant"].clone(),
                        )?;
                        check(
                            &at_step("reason"),
                            json!(evaluation.reason.as_str()),
                            expected["reason"].clone(),
                        )?;
                    }
                    other => return Err(at_step(&format!("unknown op {other}"))),
                }
            }
            Ok(())
        }
        "cache-key" => {
            let doc = document.ok_or("the file's document was rejected")?;
            let flags = Flags::from_value(file["document"].clone())
                .map_err(|e| format!("document rejected: {e}"))?;
            let flag = str_field(case, "flag");
            let variant = str_field(case, "variant");
            let evaluation =
                flags.evaluate(flag, &json!({ "pick": variant }), EvalOptions::default());
            check("variant", json!(evaluation.variant_id()), json!(variant))?;
            let payload_hash = doc
                .flag(flag)
                .and_then(|f| f.variant(variant))
                .map(|v| v.payload_hash.to_string());
            check(
                "payload_hash",
                json!(payload_hash),
                case["payload_hash"].clone(),
            )?;
            let parts: Vec<KeyPart<'_>> = case["parts"]
                .as_array()
                .expect("parts")
                .iter()
                .map(|p| match p {
                    Value::String(s) => KeyPart::Text(s),
                    Value::Number(n) => KeyPart::Int(n.as_i64().expect("integer part")),
                    other => panic!("a part is a string or an integer, found {other}"),
                })
                .collect();
            check(
                "key",
                json!(evaluation.cache_key(&parts)),
                case["key"].clone(),
            )
        }
        "classify" => {
            let facts = &case["facts"];
            let text = |key: &str| facts[key].as_str();
            let status = facts["status"]
                .as_u64()
                .map(|s| u16::try_from(s).expect("a status fits in u16"));
            let kind = classify(&ErrorFacts {
                declared_kind: text("declared_kind"),
                name: text("name").unwrap_or(""),
                status,
                code: text("code"),
                message: text("message").unwrap_or(""),
            });
            check("kind", json!(kind.as_str()), case["kind"].clone())
        }
        other => Err(format!("unknown vector kind {other}")),
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let index = read_json(&vectors_dir().join("index.json"));
    assert_eq!(
        index["hash_version"],
        json!(flagrail_core::HASH_VERSION),
        "vector corpus version"
    );
    let (mut passed, mut failed) = (0usize, Vec::new());
    for entry in index["files"].as_array().expect("files") {
        let path = vectors_dir().join(entry["path"].as_str().expect("path"));
        let kind = entry["kind"].as_str().expect("kind");
        let file = read_json(&path);
        let document = file
            .get("document")
            .map(|d| Document::from_value(d.clone()));
        if let Some(Err(err)) = &document {
            failed.push(format!("{}: document rejected: {err}", path.display()));
        }
        let document = document.and_then(Result::ok);
        for case in file["cases"].as_array().expect("cases") {
            let id = str_field(case, "id");
            if filter.as_deref().is_some_and(|f| !id.contains(f)) {
                continue;
            }
            match run_case(kind, &file, case, document.as_ref()) {
                Ok(()) => passed += 1,
                Err(why) => {
                    println!("test {id} ... FAILED");
                    failed.push(format!(
                        "{id} ({}): {why}\n    {}",
                        entry["path"].as_str().unwrap_or(""),
                        case["description"].as_str().unwrap_or("")
                    ));
                }
            }
        }
    }
    for failure in &failed {
        println!("\n---- {failure}");
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; 0 filtered out",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}
