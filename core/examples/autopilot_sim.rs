//! The autopilot simulation at full size: many seeded rollouts of each scenario of issue 17
//! through the real decision code, printed as the table in docs/autopilot.md.
//!
//! ```sh
//! cargo run --release -p flagrail-core --example autopilot_sim                 # 1000 rollouts, seed 17, 2500 units/min
//! cargo run --release -p flagrail-core --example autopilot_sim -- 200 7 500    # rollouts, seed, units per minute
//! ```
use flagrail_core::autopilot::sim::{
    only_metrics, run, standard_config, standard_scenarios, SimConfig, Summary,
};
use flagrail_core::autopilot::{Method, SrmTest};

fn percent(summary: &Summary, count: u64) -> String {
    format!("{:.1} %", 100.0 * summary.rate(count))
}

fn show(value: Option<u64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| v.to_string())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rollouts = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000u64);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(17u64);
    let units_per_minute = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_500u64);
    println!(
        "autopilot simulation: {rollouts} rollouts per row, seed {seed}, {units_per_minute} units/min, \
         steps 1/5/25/50/100 %, a look every simulated minute\n"
    );
    println!(
        "| scenario | test | rolled back | … at ≤ 25 % | reverted | reached 100 % | frozen by SRM (ever) | stalled | \
         median at rollback: candidate / control units in the step, minutes | median minutes to 100 % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let all = ["quality", "error_rate", "cost", "latency_ms"];
    for scenario in standard_scenarios(units_per_minute) {
        let mut variants: Vec<(&str, SimConfig)> = vec![
            (
                "confidence sequence, 4 metrics",
                standard_config(Method::ConfidenceSequence),
            ),
            (
                "naive z-test with peeking, 4 metrics",
                standard_config(Method::NaiveFixedSample),
            ),
        ];
        let a_a = scenario.name.starts_with("A/A");
        if a_a || scenario.name.starts_with("broken") {
            let mut config = standard_config(Method::ConfidenceSequence);
            config.spec.srm_test = SrmTest::Sequential;
            variants.push(("confidence sequence, 4 metrics, sequential SRM", config));
        }
        if a_a {
            variants.push((
                "confidence sequence, quality only",
                only_metrics(standard_config(Method::ConfidenceSequence), &all[..1]),
            ));
            variants.push((
                "naive z-test with peeking, quality only",
                only_metrics(standard_config(Method::NaiveFixedSample), &all[..1]),
            ));
        }
        for (label, config) in variants {
            let started = std::time::Instant::now();
            let summary = run(&config, &scenario, rollouts, seed);
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {}, {} min | {} |",
                summary.scenario,
                label,
                percent(&summary, summary.rolled_back + summary.halted),
                percent(&summary, summary.rolled_back_by_25),
                percent(&summary, summary.reverted),
                percent(&summary, summary.completed),
                percent(&summary, summary.frozen),
                percent(&summary, summary.stalled),
                show(summary.median_rollback_candidate_units),
                show(summary.median_rollback_control_units),
                show(summary.median_rollback_minutes),
                show(summary.median_completion_minutes),
            );
            eprintln!(
                "  {} / {label}: {:.1} s; promoted past a step after a mismatch there: {}; \
                 median first freeze: {} min",
                summary.scenario,
                started.elapsed().as_secs_f64(),
                summary.promoted_while_mismatched,
                show(summary.median_first_freeze_minute),
            );
        }
    }
}
