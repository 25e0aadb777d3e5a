//! The autopilot ramps' metrics over time in Redis: what `flagrail report --redis` charts
//! (docs/autopilot.md, "Inputs from Redis").
//!
//! The per-unit evidence ([`super::evidence`]) answers "is the candidate worse?" but keeps no
//! times. Beside it, the same event sink adds each tracked run's values into per-minute
//! moments — count, sum and sum of squares per flag, variant and metric — binned by the run's
//! time (its exposure's, as the events reader bins a run), which is all the report's mean and
//! 95 % interval per time bin need. The metrics are the report's: `quality` (feedback),
//! `error_rate` (1 for an error, 0 for a success of the run's first attempt), `latency_ms` and
//! `cost` (of that attempt).
//!
//! **Keys** (under the document key's hash tag, so one Cluster slot):
//!
//! | key | type | what |
//! |---|---|---|
//! | `series:<flag>:<UTC day, ms>` | hash | `<variant>\|<minute, ms>\|<metric>` → `"<n> <sum> <sum of squares>"` |
//!
//! A day's hash has at most 1,440 minutes × variants × 4 metrics fields and expires
//! [`SERIES_TTL_MS`] after its last write: the bound on Redis memory. A process holds at most
//! [`MAX_PENDING_POINTS`] pending fields (reached only while Redis is unreachable; new ones are
//! then dropped and counted).

use flagrail_core::time::Millis;
use rustc_hash::FxHashMap;

use crate::connection::{FleetError, KeySpace, RedisConnection};

/// How long a day's series outlives its last write (8 days: a week of history and the day
/// being written).
pub const SERIES_TTL_MS: Millis = 8 * DAY_MS;
/// The most pending fields a process holds before they reach Redis.
pub const MAX_PENDING_POINTS: usize = 20_000;
/// The width of a stored time bin.
pub const MINUTE_MS: Millis = 60_000;
const DAY_MS: Millis = 24 * 3_600_000;
/// Fields per script call (one call must not hold Redis for long).
const POINTS_PER_CALL: usize = 500;

/// The metrics kept over time: the report's charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeriesMetric {
    Quality,
    ErrorRate,
    LatencyMs,
    Cost,
}

impl SeriesMetric {
    pub const ALL: [SeriesMetric; 4] = [
        SeriesMetric::Quality,
        SeriesMetric::ErrorRate,
        SeriesMetric::LatencyMs,
        SeriesMetric::Cost,
    ];

    /// The name in field keys and in the report (`metric_of` in cli/src/report.rs).
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesMetric::Quality => "quality",
            SeriesMetric::ErrorRate => "error_rate",
            SeriesMetric::LatencyMs => "latency_ms",
            SeriesMetric::Cost => "cost",
        }
    }

    fn parse(text: &str) -> Option<SeriesMetric> {
        SeriesMetric::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

/// Count, sum and sum of squares of one metric's values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub count: u64,
    pub sum: f64,
    pub sum_of_squares: f64,
}

impl Moments {
    pub fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.sum_of_squares += value * value;
    }

    pub fn merge(&mut self, other: &Moments) {
        self.count += other.count;
        self.sum += other.sum;
        self.sum_of_squares += other.sum_of_squares;
    }
}

/// One stored field: a flag's variant's metric in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PointKey {
    pub flag: Box<str>,
    pub variant: Box<str>,
    /// The minute's start (ms since the epoch).
    pub minute: Millis,
    pub metric: SeriesMetric,
}

/// The series a process holds before they reach Redis.
#[derive(Debug, Default)]
pub struct PendingSeries {
    points: FxHashMap<PointKey, Moments>,
    /// Values left out because the table was full.
    pub dropped_points: u64,
}

impl PendingSeries {
    /// Adds `value` of `metric` for a run of `flag` served `variant` at `time`. Not finite:
    /// not a value (as the report skips it).
    pub fn add(
        &mut self,
        flag: &str,
        variant: &str,
        time: Millis,
        metric: SeriesMetric,
        value: f64,
    ) {
        if !value.is_finite() {
            return;
        }
        let key = PointKey {
            flag: Box::from(flag),
            variant: Box::from(variant),
            minute: time.div_euclid(MINUTE_MS) * MINUTE_MS,
            metric,
        };
        if let Some(moments) = self.points.get_mut(&key) {
            moments.add(value);
        } else if self.points.len() < MAX_PENDING_POINTS {
            let mut moments = Moments::default();
            moments.add(value);
            self.points.insert(key, moments);
        } else {
            self.dropped_points += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Takes everything pending, sorted (a deterministic flush).
    pub fn take(&mut self) -> Vec<(PointKey, Moments)> {
        let mut points: Vec<(PointKey, Moments)> = self.points.drain().collect();
        points.sort_by(|a, b| a.0.cmp(&b.0));
        points
    }

    /// Puts back what could not be written (Redis failed), merged with what came since.
    pub fn put_back(&mut self, points: impl IntoIterator<Item = (PointKey, Moments)>) {
        for (key, moments) in points {
            if let Some(held) = self.points.get_mut(&key) {
                held.merge(&moments);
            } else if self.points.len() < MAX_PENDING_POINTS {
                self.points.insert(key, moments);
            } else {
                self.dropped_points += moments.count;
            }
        }
    }
}

/// The hash of one flag's series for the UTC day that holds `time`.
pub fn day_key(keys: &KeySpace, flag: &str, time: Millis) -> String {
    keys.sibling(&format!(
        "series:{flag}:{}",
        time.div_euclid(DAY_MS) * DAY_MS
    ))
}

fn field(key: &PointKey) -> String {
    format!("{}|{}|{}", key.variant, key.minute, key.metric.as_str())
}

/// Adds moments into a day's hash. `KEYS[1]` the hash; ARGV: the TTL (ms), then per field:
/// field, count, sum, sum of squares.
pub const SERIES_SCRIPT: &str = r"
for i = 2, #ARGV, 4 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  local n, s, q = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  if old then
    local a, b, c = string.match(old, '^(%S+) (%S+) (%S+)$')
    if a then
      n = n + tonumber(a)
      s = s + tonumber(b)
      q = q + tonumber(c)
    end
  end
  redis.call('HSET', KEYS[1], ARGV[i], string.format('%d %.17g %.17g', n, s, q))
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
";

/// Shortest text that reads back as the same `f64`.
fn number_text(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "0".to_string()
    }
}

/// Writes pending points, one script call per day hash and chunk. Returns the points not
/// written (Redis failed: they go back to the table), empty on success.
pub fn write_points(
    connection: &mut RedisConnection,
    script: &redis::Script,
    keys: &KeySpace,
    points: Vec<(PointKey, Moments)>,
) -> Vec<(PointKey, Moments)> {
    // Sorted by flag, then variant, minute: group the runs of one flag and day.
    let mut groups: Vec<(String, Vec<(PointKey, Moments)>)> = Vec::new();
    for (key, moments) in points {
        let hash = day_key(keys, &key.flag, key.minute);
        match groups.iter_mut().find(|(h, _)| *h == hash) {
            Some((_, group)) => group.push((key, moments)),
            None => groups.push((hash, vec![(key, moments)])),
        }
    }
    let mut unwritten = Vec::new();
    for (hash, group) in groups {
        if !unwritten.is_empty() {
            unwritten.extend(group);
            continue;
        }
        let mut rest = group.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<(PointKey, Moments)> = rest.by_ref().take(POINTS_PER_CALL).collect();
            let mut invocation = script.prepare_invoke();
            invocation.key(&hash).arg(SERIES_TTL_MS);
            for (key, moments) in &chunk {
                invocation
                    .arg(field(key))
                    .arg(moments.count)
                    .arg(number_text(moments.sum))
                    .arg(number_text(moments.sum_of_squares));
            }
            if invocation.invoke::<i64>(connection).is_err() {
                unwritten.extend(chunk);
                unwritten.extend(rest);
                break;
            }
        }
    }
    unwritten
}

/// One stored point, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    pub variant: String,
    pub minute: Millis,
    pub metric: SeriesMetric,
    pub moments: Moments,
}

fn parse_point(field: &str, value: &str) -> Option<StoredPoint> {
    // The variant may hold `|`: the minute and the metric are the last two parts.
    let mut parts = field.rsplitn(3, '|');
    let metric = SeriesMetric::parse(parts.next()?)?;
    let minute = parts.next()?.parse::<Millis>().ok()?;
    let variant = parts.next()?.to_string();
    let mut numbers = value.split(' ');
    let count = numbers.next()?.parse::<u64>().ok()?;
    let sum = numbers.next()?.parse::<f64>().ok()?;
    let sum_of_squares = numbers.next()?.parse::<f64>().ok()?;
    if numbers.next().is_some() {
        return None;
    }
    Some(StoredPoint {
        variant,
        minute,
        metric,
        moments: Moments {
            count,
            sum,
            sum_of_squares,
        },
    })
}

/// Reads one flag's points with minutes in `from..=until` (`HSCAN` over each day's hash, so
/// a large hash does not block Redis), sorted by variant, minute and metric.
pub fn read_points(
    connection: &mut RedisConnection,
    target: &str,
    keys: &KeySpace,
    flag: &str,
    from: Millis,
    until: Millis,
) -> std::result::Result<Vec<StoredPoint>, FleetError> {
    let fail = |error: redis::RedisError| FleetError::from_redis(target, &error);
    let mut points = Vec::new();
    let mut day = from.div_euclid(DAY_MS) * DAY_MS;
    while day <= until {
        let hash = day_key(keys, flag, day);
        let mut cursor: u64 = 0;
        loop {
            let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
                .arg(&hash)
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(connection)
                .map_err(fail)?;
            for pair in flat.chunks(2) {
                let (Some(field), Some(value)) = (pair.first(), pair.get(1)) else {
                    continue;
                };
                if let Some(point) = parse_point(field, value) {
                    if point.minute >= from - MINUTE_MS && point.minute <= until {
                        points.push(point);
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        day += DAY_MS;
    }
    points.sort_by(|a, b| (&a.variant, a.minute, a.metric).cmp(&(&b.variant, b.minute, b.metric)));
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_binned_by_minute_and_read_back_exactly() {
        let mut pending = PendingSeries::default();
        pending.add("bot", "v|2", 61_000, SeriesMetric::Quality, 0.5);
        pending.add("bot", "v|2", 119_999, SeriesMetric::Quality, 0.25);
        pending.add("bot", "v|2", 120_000, SeriesMetric::Quality, 1.0);
        pending.add("bot", "v|2", 120_000, SeriesMetric::Cost, f64::NAN);
        let taken = pending.take();
        assert_eq!(taken.len(), 2);
        let (key, moments) = &taken[0];
        assert_eq!((key.minute, key.metric), (60_000, SeriesMetric::Quality));
        assert_eq!(
            *moments,
            Moments {
                count: 2,
                sum: 0.75,
                sum_of_squares: 0.3125
            }
        );
        let text = format!(
            "{} {} {}",
            moments.count,
            number_text(moments.sum),
            number_text(moments.sum_of_squares)
        );
        let point = parse_point(&field(key), &text).expect("a point");
        assert_eq!(point.variant, "v|2");
        assert_eq!(point.minute, 60_000);
        assert_eq!(point.moments, *moments);
        assert_eq!(parse_point("v|60000|speed", "1 2 3"), None);
        assert_eq!(parse_point("v|60000|cost", "1 2"), None);
    }

    #[test]
    fn the_pending_table_is_bounded_and_counts_what_it_drops() {
        let mut pending = PendingSeries::default();
        for i in 0..MAX_PENDING_POINTS as i64 + 10 {
            pending.add("bot", "v2", i * MINUTE_MS, SeriesMetric::Cost, 1.0);
        }
        assert_eq!(pending.len(), MAX_PENDING_POINTS);
        assert_eq!(pending.dropped_points, 10);
        // Values for a field already held still count.
        pending.add("bot", "v2", 0, SeriesMetric::Cost, 1.0);
        assert_eq!(pending.dropped_points, 10);
    }
}
