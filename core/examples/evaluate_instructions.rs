//! Instructions per evaluation of the Rust benchmark's scenario, for callgrind
//! (docs/benchmarks.md): `flags.snapshot().evaluate("chat-model", …)` and the variant id, over
//! 20,000 users, `PASSES` times. The difference between two runs, divided by the evaluations
//! it adds, is one evaluation with start-up cancelled out:
//!
//! ```sh
//! cargo build --release -p flagrail-core --example evaluate_instructions
//! for p in 1 3; do valgrind --tool=callgrind --callgrind-out-file=/tmp/rust.$p.out \
//!   target/release/examples/evaluate_instructions $p; done
//! # (Ir of 3 passes - Ir of 1 pass) / 40000
//! ```
//!
//! Wall-clock time on a shared machine moves by 2x between runs of one binary; the count does
//! not. `evaluate_one` is kept out of line so its own count is the evaluation's inlined part.

use flagrail_core::{Attr, EvalOptions, Flags};

/// The document of core/benches/evaluate.rs.
const DOCUMENT: &str = r#"{
  "revision": "bench-1",
  "flags": { "chat-model": {
    "bucket_by": "user_id",
    "variants": { "control": { "model": "model-a" }, "v2": { "model": "model-b" }, "v3": { "model": "model-c" } },
    "default": "control",
    "rules": [
      { "id": "internal", "when": { "attr": "segment", "op": "eq", "value": "internal" }, "serve": "v3" },
      { "id": "split", "split": [ { "variant": "control", "percent": 90 },
                                  { "variant": "v2", "percent": 5 }, { "variant": "v3", "percent": 5 } ] }
    ]
  }}
}"#;

const USERS: usize = 20_000;

#[inline(never)]
fn evaluate_one(flags: &Flags, uid: &str, segment: &str) -> usize {
    let context = [("user_id", Attr::Str(uid)), ("segment", Attr::Str(segment))];
    let snapshot = flags.snapshot();
    let decision = snapshot.evaluate("chat-model", &context, EvalOptions::default());
    decision.variant_id().map_or(0, str::len)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let passes: usize = match std::env::args().nth(1) {
        Some(text) => text.parse()?,
        None => 1,
    };
    let flags = Flags::from_json(DOCUMENT)?;
    let users: Vec<String> = (0..USERS).map(|i| format!("user-{i}")).collect();
    let mut total = 0;
    for _ in 0..passes {
        for (i, user) in users.iter().enumerate() {
            let segment = if i % 10 == 0 { "internal" } else { "external" };
            total += evaluate_one(&flags, user, segment);
        }
    }
    // Printed so the loop is not optimised away.
    println!("{total}");
    Ok(())
}
