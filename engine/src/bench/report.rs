//! The benchmark's result: a printable table and the JSON document `bench/reference.py --compare` reads
//! (the PyTorch reference writes the same schema).

use std::fmt;

use serde::Serialize;

use super::measure::Stats;

/// One timed operation.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    /// Stable name shared with the PyTorch reference (`dit_step_10s`, …).
    pub name: String,
    /// The workload's sizes (`T=250 frames, L_enc=300`).
    pub detail: String,
    /// Timing statistics.
    #[serde(flatten)]
    pub stats: Stats,
}

/// One operation group: its model is built, its operations timed, and the model dropped before the next group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    /// Group name (`text`, `condition`, `dit`, `vae`, `end_to_end`).
    pub name: String,
    /// Bytes of the group's weights at the compute dtype, from the parameter counts.
    pub weights_bytes: u64,
    /// Resident bytes when the group started (before its model was built).
    pub rss_before_bytes: Option<u64>,
    /// Peak resident bytes while the group was built and run.
    pub peak_rss_bytes: Option<u64>,
    /// Why the group did not run, if it did not.
    pub skipped: Option<String>,
    /// The timed operations.
    pub ops: Vec<OpReport>,
}

/// Everything one benchmark run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Which implementation was timed (`retake`).
    pub engine: String,
    /// Compute device (`cpu`, `cuda:0`).
    pub device: String,
    /// Weight and activation dtype (`f32`, `bf16`).
    pub dtype: String,
    /// CPU threads the kernels use.
    pub threads: usize,
    /// Timed runs per operation (after one warm-up).
    pub runs: usize,
    /// Groups in the order they ran.
    pub groups: Vec<GroupReport>,
}

/// `1.23 GB`-style size.
fn gigabytes(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// Seconds with three decimals, or milliseconds below one second.
fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.3} s")
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} on {} ({}, {} threads), median/min/max of {} runs after one warm-up",
            self.engine, self.device, self.dtype, self.threads, self.runs
        )?;
        writeln!(f, "{:<20} {:>11} {:>11} {:>11}  workload", "operation", "median", "min", "max")?;
        for op in self.groups.iter().flat_map(|g| &g.ops) {
            let s = &op.stats;
            writeln!(
                f,
                "{:<20} {:>11} {:>11} {:>11}  {}",
                op.name,
                duration(s.median_s),
                duration(s.min_s),
                duration(s.max_s),
                op.detail
            )?;
        }
        writeln!(f, "{:<20} {:>11} {:>11} {:>11}", "group", "weights", "RSS before", "peak RSS")?;
        for group in &self.groups {
            let rss = |bytes: Option<u64>| bytes.map_or_else(|| "n/a".to_string(), gigabytes);
            match &group.skipped {
                Some(reason) => {
                    writeln!(f, "{:<20} {:>11}  skipped: {reason}", group.name, gigabytes(group.weights_bytes))?
                }
                None => writeln!(
                    f,
                    "{:<20} {:>11} {:>11} {:>11}",
                    group.name,
                    gigabytes(group.weights_bytes),
                    rss(group.rss_before_bytes),
                    rss(group.peak_rss_bytes)
                )?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> BenchReport {
        BenchReport {
            engine: "retake".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
            threads: 2,
            runs: 2,
            groups: vec![
                GroupReport {
                    name: "dit".into(),
                    weights_bytes: 6_301_835_520,
                    rss_before_bytes: Some(100_000_000),
                    peak_rss_bytes: Some(6_900_000_000),
                    skipped: None,
                    ops: vec![OpReport {
                        name: "dit_step_10s".into(),
                        detail: "T=250".into(),
                        stats: Stats::from_samples(vec![1.5, 0.25]),
                    }],
                },
                GroupReport {
                    name: "end_to_end".into(),
                    weights_bytes: 12_000_000_000,
                    rss_before_bytes: None,
                    peak_rss_bytes: None,
                    skipped: Some("over the budget".into()),
                    ops: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn table_lists_each_operation_and_each_group() {
        let text = report().to_string();
        assert!(text.contains("dit_step_10s") && text.contains("875.0 ms") && text.contains("1.500 s"), "{text}");
        assert!(text.contains("6.30 GB") && text.contains("6.90 GB"), "{text}");
        assert!(text.contains("skipped: over the budget"), "{text}");
    }

    #[test]
    fn json_flattens_the_statistics_into_each_operation() {
        let json = serde_json::to_value(report()).unwrap();
        let op = &json["groups"][0]["ops"][0];
        assert_eq!(op["name"], "dit_step_10s");
        assert_eq!(op["median_s"], 0.875);
        assert_eq!(op["samples_s"], serde_json::json!([1.5, 0.25]));
        assert_eq!(json["groups"][1]["skipped"], "over the budget");
    }
}
