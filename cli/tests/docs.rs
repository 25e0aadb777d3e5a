//! Keeps the documentation honest: docs/flag-document.md names every code, reason and operator
//! the code has, its example documents load (or fail) exactly as it says, and
//! docs/flagrail.schema.json agrees with the loader on operators and field names.
//!
//! Conventions in docs/flag-document.md:
//! - a line `<!-- complete-document -->` right before a ```json fence: the block must load;
//! - a line `<!-- invalid-document: CODE [CODE …] -->` right before a ```json fence: the block
//!   must be rejected, and the set of its problem codes must be exactly the listed codes; when a
//!   ```text fence follows (blank lines allowed in between), its lines must be exactly the
//!   problems as `flagrail validate` prints them (`path: message [CODE]`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use flagrail_core::condition::OPERATORS;
use flagrail_core::evaluate::KillSource;
use flagrail_core::{Document, Error, ProblemKind, Reason};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn reference() -> String {
    read("docs/flag-document.md")
}

fn schema() -> Value {
    serde_json::from_str(&read("docs/flagrail.schema.json"))
        .unwrap_or_else(|err| panic!("docs/flagrail.schema.json is not JSON: {err}"))
}

/// Every problem kind. The exhaustive match stops this file from compiling when a kind is added,
/// so that the new kind gets documented; `codes_in_error_rs_are_all_known` checks the list.
fn problem_kinds() -> Vec<ProblemKind> {
    use ProblemKind::*;
    let all = vec![
        InvalidJson,
        DocumentTooLarge,
        UnknownField,
        UnsupportedField,
        MissingField,
        WrongType,
        InvalidValue,
        UnknownVariant,
        UnknownSegment,
        SegmentCycle,
        UnknownOperator,
        InvalidRegex,
        InvalidWeights,
        PercentPrecision,
        RampNotIncreasing,
        InvalidDuration,
        InvalidDate,
        InvalidSemver,
        DuplicateRuleId,
        DuplicateGuardrailId,
        DuplicateBudgetId,
        UnsupportedHashVersion,
        DuplicateKey,
        NestingTooDeep,
        FlagTooComplex,
    ];
    for kind in &all {
        match kind {
            InvalidJson
            | DocumentTooLarge
            | UnknownField
            | UnsupportedField
            | MissingField
            | WrongType
            | InvalidValue
            | UnknownVariant
            | UnknownSegment
            | SegmentCycle
            | UnknownOperator
            | InvalidRegex
            | InvalidWeights
            | PercentPrecision
            | RampNotIncreasing
            | InvalidDuration
            | InvalidDate
            | InvalidSemver
            | DuplicateRuleId
            | DuplicateGuardrailId
            | DuplicateBudgetId
            | UnsupportedHashVersion
            | DuplicateKey
            | NestingTooDeep
            | FlagTooComplex => {}
        }
    }
    all
}

/// The codes of [`Error`] itself (exhaustive for the same reason).
fn error_codes() -> Vec<&'static str> {
    let all = [
        Error::InvalidDocument { problems: vec![] },
        Error::SourceUnreachable {
            source: String::new(),
            detail: String::new(),
        },
        Error::SignatureInvalid {
            source: String::new(),
            detail: String::new(),
        },
        Error::NotRegularFile {
            source: String::new(),
            kind: String::new(),
        },
        Error::InvalidArgument {
            message: String::new(),
        },
        Error::FlagNotFound {
            flag: String::new(),
        },
        Error::AllAttemptsFailed {
            flag: String::new(),
            attempts: 0,
        },
        Error::CallTooDeep {
            flag: String::new(),
            limit: 0,
        },
    ];
    all.iter()
        .map(|err| match err {
            Error::InvalidDocument { .. }
            | Error::SourceUnreachable { .. }
            | Error::SignatureInvalid { .. }
            | Error::NotRegularFile { .. }
            | Error::InvalidArgument { .. }
            | Error::FlagNotFound { .. }
            | Error::AllAttemptsFailed { .. }
            | Error::CallTooDeep { .. } => err.code(),
        })
        .collect()
}

fn kill_sources() -> Vec<&'static str> {
    use KillSource::*;
    [Document, Flag, LocalAll, LocalFlag, Guardrail, Budget]
        .iter()
        .map(|source| match source {
            Document | Flag | LocalAll | LocalFlag | Guardrail | Budget => source.as_str(),
        })
        .collect()
}

/// The string literals that follow `marker` in a source file (`=> "CODE"`, `code: "CODE"`).
fn literals_after(source: &str, marker: &str) -> BTreeSet<String> {
    source
        .match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = &source[at + marker.len()..];
            let rest = rest.trim_start().strip_prefix('"')?;
            let end = rest.find('"')?;
            Some(rest[..end].to_string())
        })
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect()
}

fn lint_codes() -> BTreeSet<String> {
    let codes = literals_after(&read("core/src/lint.rs"), "code:");
    assert!(
        codes.len() >= 4,
        "found too few lint codes in core/src/lint.rs: {codes:?}"
    );
    codes
}

#[test]
fn codes_in_error_rs_are_all_known() {
    let source = read("core/src/error.rs");
    let in_source = literals_after(&source, "=>");
    let known: BTreeSet<String> = problem_kinds()
        .iter()
        .map(|k| k.code().to_string())
        .chain(error_codes().iter().map(|c| c.to_string()))
        .collect();
    assert_eq!(
        in_source, known,
        "core/src/error.rs and this test disagree on the list of codes"
    );
}

#[test]
fn reference_names_every_code_reason_kill_source_and_operator() {
    let doc = reference();
    let mut missing = Vec::new();
    let codes: Vec<String> = problem_kinds()
        .into_iter()
        .map(|k| k.code().to_string())
        .chain(error_codes().into_iter().map(str::to_string))
        .chain(lint_codes())
        .chain(Reason::ALL.iter().map(|r| r.as_str().to_string()))
        .chain(kill_sources().into_iter().map(str::to_string))
        .collect();
    for code in codes {
        if !doc.contains(&format!("`{code}`")) {
            missing.push(code);
        }
    }
    for op in OPERATORS {
        if !doc.contains(&format!("`{op}`")) {
            missing.push(op.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "docs/flag-document.md does not mention (in backticks): {missing:?}"
    );
}

#[test]
fn schema_operator_enum_is_the_operator_list() {
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        json!("https://json-schema.org/draft/2020-12/schema")
    );
    let operators: Vec<&str> = schema["$defs"]["operator"]["enum"]
        .as_array()
        .expect("$defs.operator.enum is an array")
        .iter()
        .map(|v| v.as_str().expect("operators are strings"))
        .collect();
    assert_eq!(operators, OPERATORS);
}

/// The field names the loader accepts where `document` has an unknown field `zzz` at `path`,
/// read from its UNKNOWN_FIELD message ("…; expected one of: a, b, c").
fn loader_fields(document: Value, path: &str) -> BTreeSet<String> {
    let err = Document::from_value(document).expect_err("zzz is an unknown field");
    let problem = err
        .problems()
        .iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no problem at {path}: {err}"));
    assert_eq!(problem.kind, ProblemKind::UnknownField, "{problem}");
    let (_, list) = problem
        .message
        .split_once("expected one of: ")
        .unwrap_or_else(|| panic!("no field list in {problem}"));
    list.split(", ").map(str::to_string).collect()
}

/// A schema object's properties: (accepted, refused as not yet supported).
fn schema_fields(object: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    assert_eq!(object["additionalProperties"], json!(false), "{object}");
    let mut accepted = BTreeSet::new();
    let mut refused = BTreeSet::new();
    for (name, property) in object["properties"].as_object().expect("properties") {
        if property["$ref"] == json!("#/$defs/unsupported") {
            refused.insert(name.clone());
        } else {
            accepted.insert(name.clone());
        }
    }
    (accepted, refused)
}

#[test]
fn schema_fields_match_the_loader() {
    let schema = schema();
    let defs = &schema["$defs"];
    let flag = |extra: Value| {
        let mut f = json!({ "variants": { "a": {}, "b": {} }, "default": "a" });
        for (k, v) in extra.as_object().expect("object") {
            f[k] = v.clone();
        }
        json!({ "flags": { "f": f } })
    };
    let ramp = json!({ "variant": "b", "start": "2026-11-21", "steps": [ { "percent": 100 } ] });
    let mut ramp_extra = ramp.clone();
    ramp_extra["zzz"] = json!(1);
    let cases: Vec<(&str, &Value, Value, &str)> = vec![
        (
            "top level",
            &schema,
            json!({ "zzz": 1, "flags": {} }),
            "zzz",
        ),
        (
            "flag",
            &defs["flag"],
            flag(json!({ "zzz": 1 })),
            "flags.f.zzz",
        ),
        (
            "flag kill",
            &defs["flagKill"],
            flag(json!({ "kill": { "active": false, "zzz": 1 } })),
            "flags.f.kill.zzz",
        ),
        (
            "document kill",
            &defs["documentKill"],
            json!({ "kill": { "active": false, "zzz": 1 }, "flags": {} }),
            "kill.zzz",
        ),
        (
            "rule",
            &defs["rule"],
            flag(json!({ "rules": [ { "serve": "a", "zzz": 1 } ] })),
            "flags.f.rules[0].zzz",
        ),
        (
            "split entry",
            &defs["splitEntry"],
            flag(
                json!({ "rules": [ { "split": [ { "variant": "a", "weight": 1, "zzz": 1 } ] } ] }),
            ),
            "flags.f.rules[0].split[0].zzz",
        ),
        (
            "ramp",
            &defs["ramp"],
            flag(json!({ "rules": [ { "ramp": ramp_extra } ] })),
            "flags.f.rules[0].ramp.zzz",
        ),
        (
            "autopilot",
            &defs["autopilot"],
            flag(json!({ "rules": [ { "ramp": {
                "variant": "b", "baseline": "a", "start": "2026-11-21", "paused_at": "2026-11-21",
                "steps": [ { "percent": 1, "hold": "1h" }, { "percent": 100 } ],
                "autopilot": { "holds": [ { "min": "1h", "max": "2h" } ],
                               "metrics": [ { "metric": "quality", "difference": 1 } ], "zzz": 1 } } } ] })),
            "flags.f.rules[0].ramp.autopilot.zzz",
        ),
        (
            "autopilot hold",
            &defs["autopilotHold"],
            flag(json!({ "rules": [ { "ramp": {
                "variant": "b", "baseline": "a", "start": "2026-11-21", "paused_at": "2026-11-21",
                "steps": [ { "percent": 1, "hold": "1h" }, { "percent": 100 } ],
                "autopilot": { "holds": [ { "min": "1h", "max": "2h", "zzz": 1 } ],
                               "metrics": [ { "metric": "quality", "difference": 1 } ] } } } ] })),
            "flags.f.rules[0].ramp.autopilot.holds[0].zzz",
        ),
        (
            "autopilot metric",
            &defs["autopilotMetric"],
            flag(json!({ "rules": [ { "ramp": {
                "variant": "b", "baseline": "a", "start": "2026-11-21", "paused_at": "2026-11-21",
                "steps": [ { "percent": 1, "hold": "1h" }, { "percent": 100 } ],
                "autopilot": { "holds": [ { "min": "1h", "max": "2h" } ],
                               "metrics": [ { "metric": "quality", "difference": 1, "zzz": 1 } ] } } } ] })),
            "flags.f.rules[0].ramp.autopilot.metrics[0].zzz",
        ),
        (
            "ramp step",
            &defs["rampStep"],
            flag(json!({ "rules": [ { "ramp": {
                "variant": "b", "start": "2026-11-21", "steps": [ { "percent": 100, "zzz": 1 } ] } } ] })),
            "flags.f.rules[0].ramp.steps[0].zzz",
        ),
        (
            "guardrail",
            &defs["guardrail"],
            flag(
                json!({ "guardrails": [ { "metric": "error_rate", "max": 0.1, "action": "kill", "zzz": 1 } ] }),
            ),
            "flags.f.guardrails[0].zzz",
        ),
        (
            "sticky",
            &defs["sticky"],
            flag(json!({ "sticky": { "ttl": "1h", "zzz": 1 } })),
            "flags.f.sticky.zzz",
        ),
        (
            "budget",
            &defs["budget"],
            flag(
                json!({ "budgets": [ { "max_requests": 1, "window": "1h", "action": "kill", "zzz": 1 } ] }),
            ),
            "flags.f.budgets[0].zzz",
        ),
        (
            "document budget",
            &defs["documentBudget"],
            json!({ "budgets": [ { "max_cost": 1, "window": "1d", "action": "kill", "zzz": 1 } ], "flags": {} }),
            "budgets[0].zzz",
        ),
        (
            "shadow",
            &defs["shadow"],
            flag(json!({ "shadow": { "variant": "b", "percent": 5, "zzz": 1 } })),
            "flags.f.shadow.zzz",
        ),
        (
            "attribute test",
            &defs["test"],
            flag(
                json!({ "rules": [ { "when": { "attr": "x", "op": "exists", "zzz": 1 }, "serve": "a" } ] }),
            ),
            "flags.f.rules[0].when.zzz",
        ),
    ];
    for (name, object, document, path) in cases {
        let (accepted, refused) = schema_fields(object);
        assert_eq!(
            accepted,
            loader_fields(document.clone(), path),
            "{name}: schema properties vs loader"
        );
        // Every field the schema refuses is refused by the loader as UNSUPPORTED_FIELD.
        for field in refused {
            let mut doc = document.clone();
            let holder = match name {
                "top level" => &mut doc,
                "flag" => &mut doc["flags"]["f"],
                other => {
                    panic!("{other}: the schema refuses {field}, the test does not know where")
                }
            };
            holder.as_object_mut().expect("object").remove("zzz");
            holder[&field] = json!([]);
            let err = Document::from_value(doc).expect_err("refused field");
            let codes: Vec<&str> = err.problems().iter().map(|p| p.code()).collect();
            assert_eq!(codes, ["UNSUPPORTED_FIELD"], "{name}.{field}: {err}");
        }
    }
}

/// One marked JSON block of the reference.
struct Block {
    line: usize,
    /// `None` for a complete document, else the expected problem codes.
    expected: Option<BTreeSet<String>>,
    json: String,
    /// The lines of the ```text block that follows, if any.
    output: Option<Vec<String>>,
}

fn fenced(lines: &[&str], open: usize, fence: &str, line_no: usize) -> (Vec<String>, usize) {
    assert_eq!(
        lines.get(open).map(|l| l.trim_end()),
        Some(fence),
        "docs/flag-document.md:{line_no}: a marker must be followed by {fence}"
    );
    let mut body = Vec::new();
    let mut i = open + 1;
    while lines.get(i).map(|l| l.trim_end()) != Some("```") {
        let line = lines
            .get(i)
            .unwrap_or_else(|| panic!("docs/flag-document.md:{line_no}: unclosed fence"));
        body.push(line.to_string());
        i += 1;
    }
    (body, i + 1)
}

fn marked_blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        let expected = if line == "<!-- complete-document -->" {
            None
        } else if let Some(codes) = line
            .strip_prefix("<!-- invalid-document:")
            .and_then(|rest| rest.strip_suffix("-->"))
        {
            let codes: BTreeSet<String> = codes.split_whitespace().map(str::to_string).collect();
            assert!(
                !codes.is_empty(),
                "docs/flag-document.md:{}: no codes",
                i + 1
            );
            Some(codes)
        } else {
            assert!(
                !line.starts_with("<!-- complete") && !line.starts_with("<!-- invalid"),
                "docs/flag-document.md:{}: malformed marker {line}",
                i + 1
            );
            continue;
        };
        let (json, after) = fenced(&lines, i + 1, "```json", i + 1);
        let mut next = after;
        while lines.get(next).is_some_and(|l| l.trim().is_empty()) {
            next += 1;
        }
        let output = (expected.is_some()
            && lines.get(next).map(|l| l.trim_end()) == Some("```text"))
        .then(|| fenced(&lines, next, "```text", i + 1).0);
        blocks.push(Block {
            line: i + 1,
            expected,
            json: json.join("\n"),
            output,
        });
    }
    blocks
}

#[test]
fn marked_documents_load_or_fail_as_documented() {
    let blocks = marked_blocks(&reference());
    let complete = blocks.iter().filter(|b| b.expected.is_none()).count();
    assert!(complete >= 1, "no <!-- complete-document --> block");
    let mut illustrated = BTreeSet::new();
    for block in &blocks {
        let at = format!("docs/flag-document.md:{}", block.line);
        let result = Document::from_json(&block.json);
        match (&block.expected, result) {
            (None, Ok(_)) => {}
            (None, Err(err)) => panic!("{at}: a complete document fails to load:\n{err}"),
            (Some(codes), Ok(_)) => panic!("{at}: loads, but should fail with {codes:?}"),
            (Some(codes), Err(err)) => {
                let found: BTreeSet<String> = err
                    .problems()
                    .iter()
                    .map(|p| p.code().to_string())
                    .collect();
                assert_eq!(&found, codes, "{at}:\n{err}");
                illustrated.extend(found);
                if let Some(output) = &block.output {
                    let printed: Vec<String> =
                        err.problems().iter().map(ToString::to_string).collect();
                    assert_eq!(
                        output, &printed,
                        "{at}: the text block differs from what `flagrail validate` prints"
                    );
                }
            }
        }
    }
    // Every problem code has a live example, except the size bound (16 MiB does not fit), the
    // complexity budget (10,000 steps do not fit either) and UNSUPPORTED_FIELD, reserved while
    // no section is refused.
    let missing: Vec<&str> = problem_kinds()
        .into_iter()
        .filter(|k| {
            !matches!(
                k,
                ProblemKind::DocumentTooLarge
                    | ProblemKind::FlagTooComplex
                    | ProblemKind::UnsupportedField
            )
        })
        .map(ProblemKind::code)
        .filter(|code| !illustrated.contains(*code))
        .collect();
    assert!(
        missing.is_empty(),
        "no <!-- invalid-document --> example for {missing:?}"
    );
}

#[test]
fn the_example_points_at_the_schema() {
    let example: Value =
        serde_json::from_str(&read("examples/flags.json")).expect("examples/flags.json is JSON");
    let target = example["$schema"].as_str().expect("$schema is a string");
    assert!(
        repo().join("examples").join(target).is_file(),
        "examples/flags.json: $schema {target} does not exist"
    );
}

#[test]
fn runbook_uses_real_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_flagrail"))
        .arg("help")
        .output()
        .expect("run flagrail help");
    let usage = String::from_utf8_lossy(&out.stdout).into_owned();
    let runbook = read("docs/runbook.md");
    let mut used = BTreeSet::new();
    for (at, _) in runbook.match_indices("flagrail ") {
        let word: String = runbook[at + "flagrail ".len()..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        // Only commands: `target/release/flagrail kill …`, not prose such as "flagrail is".
        if runbook[..at].ends_with('/') && !word.is_empty() {
            used.insert(word);
        }
    }
    assert!(
        used.contains("kill"),
        "runbook uses no target/…/flagrail kill"
    );
    for word in used {
        assert!(
            usage.contains(&format!("flagrail {word} ")),
            "runbook uses `flagrail {word}`, which `flagrail help` does not list"
        );
    }
}

/// The directory of a workspace package named on a `cargo … -p <package>` line.
fn package_dir(package: &str) -> Option<&'static str> {
    match package {
        "flagrail-core" => Some("core"),
        "flagrail-cli" => Some("cli"),
        "flagrail-fleet" => Some("fleet"),
        "flagrail-sources" => Some("sources"),
        _ => None,
    }
}

/// Every figure in docs/ names the command that produced it; those commands must still run.
/// A removed example or bench script would leave a table nobody can reproduce.
#[test]
fn every_example_bench_and_script_the_docs_cite_exists() {
    let mut cited = BTreeSet::new();
    let mut documents = vec![repo().join("README.md")];
    for entry in std::fs::read_dir(repo().join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "md") {
            documents.push(path);
        }
    }
    for document in &documents {
        let text = std::fs::read_to_string(document).expect("readable doc");
        let words: Vec<&str> = text.split_whitespace().collect();
        for window in words.windows(4) {
            let [flag, package, kind, name] = window else {
                continue;
            };
            let folder = match *kind {
                "--example" => "examples",
                "--bench" => "benches",
                "--test" => "tests",
                _ => continue,
            };
            if *flag != "-p" {
                continue;
            }
            let dir = package_dir(package)
                .unwrap_or_else(|| panic!("{}: unknown package {package}", document.display()));
            let name = name.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
            cited.insert(format!("{dir}/{folder}/{name}.rs"));
        }
        for word in &words {
            let word = word.trim_matches(|c: char| "`()[],;:".contains(c));
            if word.starts_with("bench/") && (word.ends_with(".py") || word.ends_with(".mjs")) {
                cited.insert(word.to_string());
            }
        }
    }
    assert!(
        cited.contains("core/examples/autopilot_sim.rs"),
        "{cited:?}"
    );
    let missing: Vec<&String> = cited
        .iter()
        .filter(|path| !repo().join(path).is_file())
        .collect();
    assert!(missing.is_empty(), "cited in docs but missing: {missing:?}");
}

/// Every `docs/<name>.md` that a tracked file cites exists, and nothing cites the benchmark
/// brief by its file name: it lives outside this repository, so its targets are copied into
/// docs/benchmarks.md ("Targets"), which is what comments and docs point at.
#[test]
fn every_cited_markdown_file_is_in_the_repository() {
    let listing = std::process::Command::new("git")
        .arg("ls-files")
        .current_dir(repo())
        .output()
        .expect("git ls-files runs");
    assert!(listing.status.success(), "git ls-files failed");
    let files = String::from_utf8(listing.stdout).expect("UTF-8 file names");
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in files.lines() {
        let text_kind = [
            ".rs", ".py", ".pyi", ".mjs", ".js", ".ts", ".md", ".toml", "Makefile",
        ]
        .iter()
        .any(|ending| file.ends_with(ending));
        if !text_kind {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(repo().join(file)) else {
            continue;
        };
        checked += 1;
        if text.contains(concat!("BENCHMARK", ".md")) {
            problems.push(format!(
                "{file}: cites the benchmark brief outside the repository"
            ));
        }
        let mut rest = text.as_str();
        while let Some(at) = rest.find("docs/") {
            let cited: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/_-.".contains(*c))
                .collect();
            rest = &rest[at + 5..];
            let cited = cited.trim_end_matches('.');
            if cited.ends_with(".md") && !repo().join(cited).is_file() {
                problems.push(format!("{file}: cites {cited}, which does not exist"));
            }
        }
    }
    assert!(checked > 100, "only {checked} text files listed");
    assert!(problems.is_empty(), "{problems:#?}");
}
