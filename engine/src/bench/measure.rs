//! Wall-clock statistics over repeated runs and the process's resident memory as the kernel reports it
//! (`/proc/self/status`), with the peak mark reset between operation groups (docs/acestep-model.md §12 "Memory").

use std::time::Instant;

use super::report::{OpReport, Stats};
use crate::error::Result;
use candle_core::Device;

/// Times the operations of one group: one untimed warm-up, then `runs` timed runs each, waiting for the
/// device to finish before the clock stops. Operations not selected by the name filter are skipped.
pub(super) struct Timer<'a> {
    runs: usize,
    device: &'a Device,
    only: Option<&'a str>,
    done: Vec<OpReport>,
}

impl<'a> Timer<'a> {
    /// A timer doing `runs` (≥ 1) timed runs per operation on `device`.
    pub fn new(runs: usize, device: &'a Device, only: Option<&'a str>) -> Self {
        Self { runs, device, only, done: Vec::new() }
    }

    /// Whether the operation `name` is selected.
    pub fn wants(&self, name: &str) -> bool {
        selected(self.only, name)
    }

    /// Times `op` as the operation `name` (described by `detail`) if it is selected.
    pub fn time(&mut self, name: &str, detail: String, mut op: impl FnMut() -> Result<()>) -> Result<()> {
        if !self.wants(name) {
            return Ok(());
        }
        op()?;
        self.device.synchronize()?;
        let mut samples = Vec::with_capacity(self.runs);
        for _ in 0..self.runs {
            let start = Instant::now();
            op()?;
            self.device.synchronize()?;
            samples.push(start.elapsed().as_secs_f64());
        }
        self.done.push(OpReport { name: name.to_string(), detail, stats: Stats::from_samples(samples) });
        Ok(())
    }

    /// The operations timed so far.
    pub fn finish(self) -> Vec<OpReport> {
        self.done
    }
}

/// Whether `name` passes the optional substring filter.
pub(super) fn selected(only: Option<&str>, name: &str) -> bool {
    only.is_none_or(|pattern| name.contains(pattern))
}

/// Hands the allocator's free memory back to the kernel (glibc's `malloc_trim(0)`), so that what earlier
/// groups freed but the allocator kept does not count toward the next group's resident size.
pub(super) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: `malloc_trim` only returns glibc's own free pages to the kernel; it has no preconditions.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Resets the kernel's peak-resident mark (`VmHWM`) to the current resident size, so the next reading covers
/// only what runs after this call (`/proc/self/clear_refs` ← 5, Linux ≥ 4.0). False where that is unavailable.
pub(super) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident bytes since the last [`reset_peak_rss`] (or since start), if the platform reports it.
pub(super) fn peak_rss() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// Current resident bytes, if the platform reports it.
pub(super) fn current_rss() -> Option<u64> {
    status_bytes("VmRSS:")
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, field).map(|kib| kib * 1024)
}

/// The value of the `field` line (`VmHWM:   123 kB`) of a status text, in KiB.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tretake\nVmHWM:\t  123456 kB\nVmRSS:\t    789 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(123_456));
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(789));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn timer_runs_a_warm_up_plus_the_timed_runs_and_skips_filtered_ops() {
        let device = Device::Cpu;
        let mut timer = Timer::new(3, &device, Some("dit"));
        let mut calls = 0;
        timer
            .time("dit_step_10s", "T=250".into(), || {
                calls += 1;
                Ok(())
            })
            .unwrap();
        timer.time("vae_decode_10s", String::new(), || panic!("filtered out")).unwrap();
        let done = timer.finish();
        assert_eq!(calls, 4);
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].name.as_str(), done[0].stats.samples_s.len()), ("dit_step_10s", 3));
    }

    #[test]
    fn peak_rss_is_at_least_the_current_rss_on_linux() {
        let now = current_rss();
        if let (Some(now), Some(peak)) = (now, peak_rss()) {
            assert!(peak >= now && now > 0, "peak {peak} now {now}");
        }
    }
}
