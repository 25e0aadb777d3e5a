fn main() {
    let text =
        std::fs::read_to_string(std::env::args().nth(1).unwrap_or_default()).unwrap_or_default();
    match flagrail_core::Document::from_json(&text) {
        Ok(d) => {
            let ctx = serde_json::json!({"user_id": "user-1", "email": "a@acme.com"});
            println!(
                "{}",
                d.explain(
                    "support-bot",
                    &ctx,
                    &flagrail_core::At(1_795_251_600_000),
                    &flagrail_core::NoLocalKills
                )
            );
        }
        Err(e) => eprintln!("{e}"),
    }
}
