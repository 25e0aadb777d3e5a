//! `flagrail metrics --redis URL`: the whole fleet's metrics, as every process opened with
//! `redis=URL` publishes them (`flagrail_fleet::shared`), merged.

use flagrail_fleet::connection::DEFAULT_DOCUMENT_KEY;
use flagrail_fleet::shared::read_fleet_metrics;
use flagrail_fleet::Timeouts;

use crate::args::Args;
use crate::{Failure, Outcome};

pub const METRICS_USAGE: &str = "metrics --redis URL [--redis-key K] [--json]";

pub const METRICS_DETAILS: &str =
    "Prints the fleet's metrics: every process opened with redis=URL ({ redis: URL } in Node)
publishes its metrics() every second; this merges those seen in the last 10 minutes (counters
summed, rates recomputed, latency quantiles the largest of any process). Prometheus text
(flagrail_fleet_* series) by default, the merged JSON with --json. --redis-key is the document
key whose hash tag the fleet's keys carry (default flagrail:document).";

pub fn metrics(args: &mut Args) -> Outcome {
    let url = args.required("--redis")?;
    let key = args
        .option("--redis-key")
        .unwrap_or_else(|| DEFAULT_DOCUMENT_KEY.to_string());
    let json = args.flag("--json");
    args.finish()?;
    let (merged, text) = read_fleet_metrics(&url, &key, Timeouts::default())
        .map_err(|error| Failure::failed(format!("{}: {error}", error.code())))?;
    if json {
        let pretty = serde_json::to_string_pretty(&merged)
            .map_err(|err| Failure::failed(format!("cannot print the metrics: {err}")))?;
        outln!("{pretty}");
    } else {
        outln!("{}", text.trim_end());
    }
    Ok(())
}
