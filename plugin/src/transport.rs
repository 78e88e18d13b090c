//! The host transport as the audio thread last saw it, published lock-free for the job builder and the editor
//! (position, loop range, tempo and time signature).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};

use nih_plug::prelude::Transport;

use crate::seqlock::SeqCounter;

/// Marks an absent `i64` field.
const NONE_I64: i64 = i64::MIN;

/// A plain copy of the transport fields Retake uses.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TransportSnapshot {
    /// Whether the host is playing.
    pub playing: bool,
    /// Host timeline position of the block's first frame, in host samples.
    pub position: Option<i64>,
    /// Tempo in beats per minute.
    pub tempo: Option<f64>,
    /// Time signature (numerator, denominator).
    pub time_signature: Option<(i32, i32)>,
    /// Host loop range `[start, end)` in host samples, when the host reports one.
    pub loop_range: Option<(i64, i64)>,
}

impl TransportSnapshot {
    /// Audio thread. Reads the fields from nice-plug's transport (no allocation).
    pub fn from_host(transport: &Transport) -> Self {
        Self {
            playing: transport.playing,
            position: transport.pos_samples(),
            tempo: transport.tempo,
            time_signature: transport.time_sig_numerator.zip(transport.time_sig_denominator),
            loop_range: transport.loop_range_samples(),
        }
    }
}

/// The last published [`TransportSnapshot`], readable from any thread.
#[derive(Debug)]
pub struct TransportInfo {
    sequence: SeqCounter,
    playing: AtomicBool,
    position: AtomicI64,
    tempo_bits: AtomicU64,
    signature: [AtomicI32; 2],
    loop_range: [AtomicI64; 2],
}

impl Default for TransportInfo {
    fn default() -> Self {
        Self {
            sequence: SeqCounter::default(),
            playing: AtomicBool::new(false),
            position: AtomicI64::new(NONE_I64),
            tempo_bits: AtomicU64::new(f64::NAN.to_bits()),
            signature: [AtomicI32::new(0), AtomicI32::new(0)],
            loop_range: [AtomicI64::new(NONE_I64), AtomicI64::new(NONE_I64)],
        }
    }
}

impl TransportInfo {
    /// Audio thread. Publishes `snapshot`; never blocks.
    pub fn publish(&self, snapshot: &TransportSnapshot) {
        let relaxed = Ordering::Relaxed;
        self.sequence.write(|| {
            self.playing.store(snapshot.playing, relaxed);
            self.position.store(snapshot.position.unwrap_or(NONE_I64), relaxed);
            self.tempo_bits.store(snapshot.tempo.unwrap_or(f64::NAN).to_bits(), relaxed);
            let (numerator, denominator) = snapshot.time_signature.unwrap_or((0, 0));
            self.signature[0].store(numerator, relaxed);
            self.signature[1].store(denominator, relaxed);
            let (start, end) = snapshot.loop_range.unwrap_or((NONE_I64, NONE_I64));
            self.loop_range[0].store(start, relaxed);
            self.loop_range[1].store(end, relaxed);
        });
    }

    /// The last published snapshot (the default one if the audio thread kept publishing through every retry,
    /// which would take a host calling `process()` continuously for many microseconds).
    pub fn snapshot(&self) -> TransportSnapshot {
        let relaxed = Ordering::Relaxed;
        self.sequence
            .read_retrying(|| {
                let some_i64 = |value: i64| (value != NONE_I64).then_some(value);
                let tempo = f64::from_bits(self.tempo_bits.load(relaxed));
                let signature = (self.signature[0].load(relaxed), self.signature[1].load(relaxed));
                let loop_range = (self.loop_range[0].load(relaxed), self.loop_range[1].load(relaxed));
                TransportSnapshot {
                    playing: self.playing.load(relaxed),
                    position: some_i64(self.position.load(relaxed)),
                    tempo: tempo.is_finite().then_some(tempo),
                    time_signature: (signature.0 > 0 && signature.1 > 0).then_some(signature),
                    loop_range: (loop_range.0 != NONE_I64).then_some(loop_range),
                }
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nice_assert_no_alloc::assert_no_alloc;

    #[test]
    fn published_snapshot_reads_back_unchanged() {
        let info = TransportInfo::default();
        let snapshot = TransportSnapshot {
            playing: true,
            position: Some(123_456),
            tempo: Some(128.0),
            time_signature: Some((3, 4)),
            loop_range: Some((48_000, 96_000)),
        };
        assert_no_alloc(|| info.publish(&snapshot));
        assert_eq!(info.snapshot(), snapshot);
    }

    #[test]
    fn absent_fields_stay_absent() {
        let info = TransportInfo::default();
        assert_eq!(info.snapshot(), TransportSnapshot::default());
        info.publish(&TransportSnapshot { playing: true, ..TransportSnapshot::default() });
        assert_eq!(info.snapshot(), TransportSnapshot { playing: true, ..TransportSnapshot::default() });
    }

    #[test]
    fn host_transport_fields_are_converted_to_samples() {
        let mut transport = Transport::new(48_000.0);
        transport.playing = true;
        transport.tempo = Some(120.0);
        transport.pos_seconds = Some(2.0);
        transport.loop_range_beats = Some((4.0, 8.0));
        let snapshot = TransportSnapshot::from_host(&transport);
        assert_eq!(snapshot.position, Some(96_000));
        assert_eq!(snapshot.loop_range, Some((96_000, 192_000)));
    }
}
