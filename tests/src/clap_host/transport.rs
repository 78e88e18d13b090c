//! The host timeline a test plays: tempo, time signature and loop range, turned into the CLAP transport event
//! of each block (docs/plugin-hosting.md §3d).

use clack_host::events::event_types::{TransportEvent, TransportFlags};
use clack_host::events::{EventFlags, EventHeader};
use clack_host::utils::{BeatTime, SecondsTime};

/// A host timeline at a fixed tempo and time signature, with an optional active loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeline {
    /// Host sample rate, to convert sample positions into seconds and beats.
    pub sample_rate: f64,
    /// Tempo in beats per minute.
    pub tempo: f64,
    /// Time signature (numerator, denominator).
    pub time_signature: (u16, u16),
    /// The active loop `[start, end)` in seconds, if the host loops.
    pub loop_seconds: Option<(f64, f64)>,
}

impl Timeline {
    /// A 4/4 timeline at `tempo` with no loop.
    pub fn new(sample_rate: f64, tempo: f64) -> Self {
        Self { sample_rate, tempo, time_signature: (4, 4), loop_seconds: None }
    }

    /// The same timeline looping over `[start_s, end_s)`.
    pub fn with_loop(self, start_s: f64, end_s: f64) -> Self {
        Self { loop_seconds: Some((start_s, end_s)), ..self }
    }

    /// The same timeline without a loop.
    pub fn without_loop(self) -> Self {
        Self { loop_seconds: None, ..self }
    }

    fn beats(&self, seconds: f64) -> f64 {
        seconds * self.tempo / 60.0
    }

    /// The transport of a block starting at sample `position`: song position in seconds and beats, tempo,
    /// time signature, the current bar, and the loop range in seconds and beats when the loop is active.
    pub fn transport(&self, position: i64, playing: bool) -> TransportEvent {
        let seconds = position as f64 / self.sample_rate;
        let beats = self.beats(seconds);
        let (numerator, denominator) = self.time_signature;
        let beats_per_bar = f64::from(numerator) * 4.0 / f64::from(denominator);
        let bar_number = (beats / beats_per_bar).floor();
        let mut flags = TransportFlags::HAS_TEMPO
            | TransportFlags::HAS_BEATS_TIMELINE
            | TransportFlags::HAS_SECONDS_TIMELINE
            | TransportFlags::HAS_TIME_SIGNATURE;
        if playing {
            flags |= TransportFlags::IS_PLAYING;
        }
        let (loop_start, loop_end) = self.loop_seconds.unwrap_or_default();
        if self.loop_seconds.is_some() {
            flags |= TransportFlags::IS_LOOP_ACTIVE;
        }
        TransportEvent {
            header: EventHeader::new_core(0, EventFlags::empty()),
            flags,
            song_pos_beats: BeatTime::from_float(beats),
            song_pos_seconds: SecondsTime::from_float(seconds),
            tempo: self.tempo,
            tempo_inc: 0.0,
            loop_start_beats: BeatTime::from_float(self.beats(loop_start)),
            loop_end_beats: BeatTime::from_float(self.beats(loop_end)),
            loop_start_seconds: SecondsTime::from_float(loop_start),
            loop_end_seconds: SecondsTime::from_float(loop_end),
            bar_start: BeatTime::from_float(bar_number * beats_per_bar),
            bar_number: bar_number as i32,
            time_signature_numerator: numerator,
            time_signature_denominator: denominator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_positions_survive_the_fixed_point_round_trip_at_every_rate() {
        for rate in [44_100.0, 48_000.0, 96_000.0] {
            let timeline = Timeline::new(rate, 137.0).with_loop(2.0, 4.0);
            for position in [0i64, 1, 511, 4_095, 264_599, 575_999] {
                let event = timeline.transport(position, true);
                let back = (event.song_pos_seconds.to_float() * rate).round() as i64;
                assert_eq!(back, position, "rate {rate}");
            }
        }
    }

    #[test]
    fn bar_and_beats_follow_tempo_and_time_signature() {
        let timeline = Timeline { time_signature: (3, 4), ..Timeline::new(48_000.0, 120.0) };
        // 4 s at 120 BPM = 8 beats = bar 2 (bars of 3 beats start at 0, 3, 6).
        let event = timeline.transport(4 * 48_000, false);
        assert_eq!(event.song_pos_beats.to_float(), 8.0);
        assert_eq!((event.bar_number, event.bar_start.to_float()), (2, 6.0));
        assert!(!event.flags.contains(TransportFlags::IS_PLAYING));
        assert!(!event.flags.contains(TransportFlags::IS_LOOP_ACTIVE));
    }

    #[test]
    fn an_active_loop_is_sent_in_seconds_and_beats() {
        let event = Timeline::new(44_100.0, 90.0).with_loop(2.0, 4.0).transport(0, true);
        assert!(event.flags.contains(TransportFlags::IS_LOOP_ACTIVE | TransportFlags::IS_PLAYING));
        assert_eq!((event.loop_start_seconds.to_float(), event.loop_end_seconds.to_float()), (2.0, 4.0));
        assert_eq!((event.loop_start_beats.to_float(), event.loop_end_beats.to_float()), (3.0, 6.0));
    }
}
