//! Which part of the host timeline a job works on: the host loop range with `follow_loop`, otherwise the
//! `start`/`end` parameters.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{PluginError, Result};

/// A span of the host timeline, `[start, end)` in host samples at `sample_rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// First frame.
    pub start: i64,
    /// One past the last frame.
    pub end: i64,
    /// The host rate the positions count at.
    pub sample_rate: u32,
}

impl Region {
    /// Frames in the region.
    pub fn frames(&self) -> usize {
        (self.end - self.start).max(0) as usize
    }

    /// The frames as a range.
    pub fn range(&self) -> Range<i64> {
        self.start..self.end
    }

    /// Start and end in seconds of host timeline.
    pub fn seconds(&self) -> (f64, f64) {
        let rate = f64::from(self.sample_rate);
        (self.start as f64 / rate, self.end as f64 / rate)
    }

    /// The same span of time counted at another sample rate (rounded to the nearest frame).
    pub fn at_rate(&self, sample_rate: u32) -> Self {
        let scale = |t: i64| (t as f64 * f64::from(sample_rate) / f64::from(self.sample_rate)).round() as i64;
        Self { start: scale(self.start), end: scale(self.end), sample_rate }
    }
}

/// Picks the job region: the host loop (when `follow_loop` is on and the host reports a non-empty loop),
/// otherwise `[start_s, end_s)` from the parameters. Refuses an empty or negative region with a message
/// that says how to fix it.
pub fn select_region(
    follow_loop: bool,
    host_loop: Option<(i64, i64)>,
    start_s: f32,
    end_s: f32,
    sample_rate: u32,
) -> Result<Region> {
    if let Some((start, end)) = host_loop.filter(|(start, end)| follow_loop && start < end) {
        return Ok(Region { start: start.max(0), end, sample_rate });
    }
    let to_frames = |seconds: f32| (f64::from(seconds) * f64::from(sample_rate)).round() as i64;
    let (start, end) = (to_frames(start_s), to_frames(end_s));
    if start < 0 || end <= start {
        return Err(PluginError::EmptyParameterRegion { no_host_loop: follow_loop, start_s, end_s });
    }
    Ok(Region { start, end, sample_rate })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_loop_uses_the_host_loop() {
        let region = select_region(true, Some((48_000, 96_000)), 0.0, 10.0, 48_000).unwrap();
        assert_eq!(region, Region { start: 48_000, end: 96_000, sample_rate: 48_000 });
    }

    #[test]
    fn parameters_are_used_without_follow_loop_even_when_the_host_loops() {
        let region = select_region(false, Some((48_000, 96_000)), 1.5, 4.0, 44_100).unwrap();
        assert_eq!(region, Region { start: 66_150, end: 176_400, sample_rate: 44_100 });
    }

    #[test]
    fn parameters_are_used_when_the_host_reports_no_or_an_empty_loop() {
        let expected = Region { start: 96_000, end: 192_000, sample_rate: 96_000 };
        assert_eq!(select_region(true, None, 1.0, 2.0, 96_000).unwrap(), expected);
        assert_eq!(select_region(true, Some((5, 5)), 1.0, 2.0, 96_000).unwrap(), expected);
    }

    #[test]
    fn an_empty_parameter_region_is_refused_with_a_fix() {
        let err = select_region(true, None, 3.0, 2.0, 48_000).unwrap_err().to_string();
        assert!(err.starts_with("the host reports no loop range, so the region comes from"), "{err}");
        assert!(err.contains("3.00–2.00 s is empty: set End after Start"), "{err}");
    }

    #[test]
    fn region_converts_between_rates() {
        let region = Region { start: 44_100, end: 88_200, sample_rate: 44_100 };
        assert_eq!(region.at_rate(48_000), Region { start: 48_000, end: 96_000, sample_rate: 48_000 });
        assert_eq!(region.seconds(), (1.0, 2.0));
        assert_eq!(region.frames(), 44_100);
    }
}
