//! The benchmark's result: a printable table and the JSON document `bench/reference.py --compare` reads
//! (the PyTorch reference writes the same schema).

use std::fmt;

use serde::Serialize;

use crate::residency::ResidencyStats;

/// Seconds taken by the timed runs of one operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Median (mean of the two middle runs for an even count).
    pub median_s: f64,
    /// Fastest run.
    pub min_s: f64,
    /// Slowest run.
    pub max_s: f64,
    /// Every timed run, in order.
    pub samples_s: Vec<f64>,
}

impl Stats {
    /// Statistics of `samples` (at least one).
    pub fn from_samples(samples: Vec<f64>) -> Self {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Self { median_s: median, min_s: sorted[0], max_s: sorted[n - 1], samples_s: samples }
    }
}

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

/// The engine's VRAM-budget accounting over a group that runs through its residency (the DiT and end-to-end
/// groups): the bytes a budget is checked against, to set beside the peak RSS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResidencyReport {
    /// The budget the group ran under (`None`: no budget).
    pub budget_bytes: Option<u64>,
    /// The highest weights-plus-activation-headroom total booked; never above the budget.
    pub peak_bytes: u64,
    /// The most weight bytes resident at once.
    pub peak_weights_bytes: u64,
    /// The smallest budget every stage that ran would have fitted in.
    pub required_bytes: Option<u64>,
    /// Units released to make room for a later stage.
    pub releases: u64,
    /// The fewest DiT blocks a sampling stage kept resident; the others streamed through every pass.
    pub dit_resident_blocks: Option<usize>,
    /// Blocks of the DiT.
    pub dit_blocks: usize,
}

impl ResidencyReport {
    /// The report of `stats` for a DiT of `dit_blocks` blocks.
    pub fn new(stats: &ResidencyStats, dit_blocks: usize) -> Self {
        Self {
            budget_bytes: stats.budget,
            peak_bytes: stats.peak_bytes,
            peak_weights_bytes: stats.peak_resident_bytes,
            required_bytes: stats.required_bytes,
            releases: stats.releases,
            dit_resident_blocks: stats.dit_resident_blocks,
            dit_blocks,
        }
    }
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
    /// Peak bytes in use on the compute device (CUDA) while the group was built and run; none on the CPU.
    pub peak_device_bytes: Option<u64>,
    /// The engine's budget accounting, for the groups that run through its residency.
    pub residency: Option<ResidencyReport>,
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
    /// The checkpoint variant whose geometry ran (`turbo`, `xl-turbo`, …).
    #[serde(default)]
    pub variant: String,
    /// Compute device (`cpu`, `cuda:0`).
    pub device: String,
    /// The linear layers' weight dtype (`f32`, `bf16`); activations are f32 on the CPU, bf16 on CUDA.
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
            "{} ({}) on {} ({}, {} threads), median/min/max of {} runs after one warm-up",
            self.engine, self.variant, self.device, self.dtype, self.threads, self.runs
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
        let on_device = self.groups.iter().any(|g| g.peak_device_bytes.is_some());
        let device_header = if on_device { format!(" {:>11}", "peak device") } else { String::new() };
        writeln!(
            f,
            "{:<20} {:>11} {:>11} {:>11}{device_header} {:>12} {:>11} {:>9}  DiT blocks resident",
            "group", "weights", "RSS before", "peak RSS", "booked peak", "budget", "releases"
        )?;
        for group in &self.groups {
            let rss = |bytes: Option<u64>| bytes.map_or_else(|| "n/a".to_string(), gigabytes);
            if let Some(reason) = &group.skipped {
                writeln!(f, "{:<20} {:>11}  skipped: {reason}", group.name, gigabytes(group.weights_bytes))?;
                continue;
            }
            write!(
                f,
                "{:<20} {:>11} {:>11} {:>11}",
                group.name,
                gigabytes(group.weights_bytes),
                rss(group.rss_before_bytes),
                rss(group.peak_rss_bytes)
            )?;
            if on_device {
                write!(f, " {:>11}", rss(group.peak_device_bytes))?;
            }
            if let Some(r) = &group.residency {
                let resident = r.dit_resident_blocks.map_or_else(|| "n/a".to_string(), |k| k.to_string());
                write!(
                    f,
                    " {:>12} {:>11} {:>9}  {resident} of {}",
                    gigabytes(r.peak_bytes),
                    r.budget_bytes.map_or_else(|| "none".to_string(), gigabytes),
                    r.releases,
                    r.dit_blocks
                )?;
            }
            writeln!(f)?;
        }
        if self.groups.iter().any(|g| g.residency.is_some()) {
            writeln!(f, "booked peak: the engine's VRAM-budget accounting (resident weights + activation headroom)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts_and_extremes() {
        let odd = Stats::from_samples(vec![3.0, 1.0, 2.0]);
        assert_eq!((odd.median_s, odd.min_s, odd.max_s), (2.0, 1.0, 3.0));
        assert_eq!(odd.samples_s, vec![3.0, 1.0, 2.0]);
        let even = Stats::from_samples(vec![4.0, 1.0, 2.0, 10.0]);
        assert_eq!((even.median_s, even.min_s, even.max_s), (3.0, 1.0, 10.0));
    }

    fn report() -> BenchReport {
        BenchReport {
            engine: "retake".into(),
            variant: "turbo".into(),
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
                    peak_device_bytes: None,
                    residency: Some(ResidencyReport {
                        budget_bytes: Some(3 << 30),
                        peak_bytes: 3_210_000_000,
                        peak_weights_bytes: 2_900_000_000,
                        required_bytes: Some(3_100_000_000),
                        releases: 4,
                        dit_resident_blocks: Some(5),
                        dit_blocks: 24,
                    }),
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
                    peak_device_bytes: None,
                    residency: None,
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
    fn a_group_run_through_the_residency_shows_its_accounting_beside_the_rss_peak() {
        let text = report().to_string();
        let row = text.lines().find(|line| line.starts_with("dit ")).unwrap();
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            columns,
            ["dit", "6.30", "GB", "0.10", "GB", "6.90", "GB", "3.21", "GB", "3.22", "GB", "4", "5", "of", "24"],
            "{text}"
        );
        assert!(text.contains("booked peak: the engine's VRAM-budget accounting"), "{text}");
        let unbudgeted = BenchReport {
            groups: vec![GroupReport {
                residency: Some(ResidencyReport { budget_bytes: None, dit_resident_blocks: None, ..residency() }),
                ..report().groups[0].clone()
            }],
            ..report()
        };
        let text = unbudgeted.to_string();
        assert!(
            text.lines().any(|l| l.starts_with("dit ") && l.contains(" none ") && l.ends_with("n/a of 24")),
            "{text}"
        );
    }

    #[test]
    fn a_device_peak_adds_its_column_only_when_a_group_has_one() {
        assert!(!report().to_string().contains("peak device"));
        let mut on_cuda = report();
        on_cuda.device = "cuda:0".into();
        on_cuda.groups[0].peak_device_bytes = Some(4_560_000_000);
        let text = on_cuda.to_string();
        assert!(text.contains("peak device"), "{text}");
        let row = text.lines().find(|line| line.starts_with("dit ")).unwrap();
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(columns[5..9], ["6.90", "GB", "4.56", "GB"], "{text}");
    }

    fn residency() -> ResidencyReport {
        report().groups[0].residency.clone().unwrap()
    }

    #[test]
    fn residency_stats_map_onto_the_report_field_by_field() {
        let stats = ResidencyStats {
            budget: Some(7),
            resident_bytes: 1,
            peak_resident_bytes: 2,
            headroom_bytes: 3,
            peak_bytes: 4,
            required_bytes: Some(5),
            releases: 6,
            dit_resident_blocks: Some(8),
        };
        let want = ResidencyReport {
            budget_bytes: Some(7),
            peak_bytes: 4,
            peak_weights_bytes: 2,
            required_bytes: Some(5),
            releases: 6,
            dit_resident_blocks: Some(8),
            dit_blocks: 24,
        };
        assert_eq!(ResidencyReport::new(&stats, 24), want);
    }

    #[test]
    fn json_flattens_the_statistics_into_each_operation() {
        let json = serde_json::to_value(report()).unwrap();
        let op = &json["groups"][0]["ops"][0];
        assert_eq!(op["name"], "dit_step_10s");
        assert_eq!(op["median_s"], 0.875);
        assert_eq!(op["samples_s"], serde_json::json!([1.5, 0.25]));
        assert_eq!(json["groups"][1]["skipped"], "over the budget");
        let residency = &json["groups"][0]["residency"];
        assert_eq!(residency["budget_bytes"], 3u64 << 30);
        assert_eq!((residency["peak_bytes"].as_u64(), residency["releases"].as_u64()), (Some(3_210_000_000), Some(4)));
        assert_eq!(residency["dit_resident_blocks"], 5);
        assert!(json["groups"][1]["residency"].is_null());
    }
}
