//! The model components a pipeline uses (docs/candle.md §3): loaded on first use from one
//! checkpoint and booked while resident; under a VRAM budget, released before a stage that needs their room,
//! with the DiT's blocks streamed when it does not fit whole.

use std::sync::Arc;

use candle_core::Tensor;

use crate::error::{EngineError, Result};
use crate::model::audio_tokenizer::{AudioDetokenizer, AudioTokenizer};
use crate::model::checkpoint::Checkpoint;
use crate::model::condition::ConditionEncoder;
use crate::model::dit::Dit;
use crate::model::prompt::PromptTokenizer;
use crate::model::resident::resident_fields;
use crate::model::silence::SilenceLatent;
use crate::model::text_encoder::TextEncoder;
use crate::model::vae::{VaeDecoder, VaeEncoder};
use crate::residency::{
    activation_bytes, dit_resident_blocks, Requirement, Residency, ResidencyStats, Shared, Stage, Unit, UnitSizes,
};

/// The condition encoder and the timbre embedding used when no reference audio is given (the first
/// `timbre_fix_frame` frames of the silence latent through the timbre encoder), derived when it loads.
pub struct ConditionUnit {
    /// The encoder.
    pub encoder: ConditionEncoder,
    /// The default timbre `[1, 1, hidden]`.
    pub default_timbre: Tensor,
}

resident_fields!(ConditionUnit { encoder, default_timbre });

/// The loaded DiT and how many of its blocks it keeps resident.
struct LoadedDit {
    resident_blocks: usize,
    dit: Shared<Dit>,
}

/// Lazily loaded components, shared out as booked handles ([`Shared`]).
pub struct Components {
    checkpoint: Checkpoint,
    residency: Residency,
    /// DiT blocks the current stage keeps resident.
    dit_blocks: usize,
    /// The prompt tokenizer (host memory, not a device unit).
    tokenizer: Option<Arc<PromptTokenizer>>,
    /// Pinned: small and used by most stages, it stays once loaded.
    silence: Option<Shared<SilenceLatent>>,
    text: Option<Shared<TextEncoder>>,
    condition: Option<Shared<ConditionUnit>>,
    dit: Option<LoadedDit>,
    audio_tokenizer: Option<Shared<AudioTokenizer>>,
    detokenizer: Option<Shared<AudioDetokenizer>>,
    vae_encoder: Option<Shared<VaeEncoder>>,
    vae_decoder: Option<Shared<VaeDecoder>>,
}

/// Bytes of a loaded unit and whether nobody else holds it (so releasing it frees its memory).
fn slot_state<T>(slot: Option<&Shared<T>>) -> Option<(u64, bool)> {
    slot.map(|s| (s.bytes(), Arc::strong_count(s) == 1))
}

impl Components {
    /// Nothing is loaded until first used. With a `budget` (bytes of device memory for weights and activations)
    /// the unit sizes are read from the safetensors headers and a budget below the model's minimum is refused.
    pub fn new(checkpoint: Checkpoint, budget: Option<u64>) -> Result<Self> {
        let residency = Residency::new(&checkpoint, budget)?;
        Ok(Self::with_residency(checkpoint, residency))
    }

    /// Like [`Components::new`] for a random-weight checkpoint, which has no model folder: the silence latent
    /// (and the prompt tokenizer, for the stages that encode prompts) are given instead of read from it, and the
    /// units are sized from the geometry ([`UnitSizes::from_geometry`]) so that a `budget` works as on a folder.
    pub fn with_assets(
        checkpoint: Checkpoint,
        tokenizer: Option<PromptTokenizer>,
        silence: SilenceLatent,
        budget: Option<u64>,
    ) -> Result<Self> {
        let sizes = UnitSizes::from_geometry(&checkpoint, silence.len());
        let residency = Residency::sized(&checkpoint, sizes, budget)?;
        let mut components = Self::with_residency(checkpoint, residency);
        components.tokenizer = tokenizer.map(Arc::new);
        components.silence = Some(components.residency.track(silence));
        Ok(components)
    }

    fn with_residency(checkpoint: Checkpoint, residency: Residency) -> Self {
        Self {
            dit_blocks: checkpoint.acestep.num_hidden_layers,
            checkpoint,
            residency,
            tokenizer: None,
            silence: None,
            text: None,
            condition: None,
            dit: None,
            audio_tokenizer: None,
            detokenizer: None,
            vae_encoder: None,
            vae_decoder: None,
        }
    }

    /// The checkpoint the components come from.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The accounting now.
    pub fn stats(&self) -> ResidencyStats {
        self.residency.stats()
    }

    /// The units resident now (streamed DiT blocks are resident only while they run).
    pub fn resident_units(&self) -> Vec<Unit> {
        let mut units: Vec<Unit> =
            self.slots().into_iter().filter(|(_, state)| state.is_some()).map(|(u, _)| u).collect();
        if let Some(loaded) = &self.dit {
            units.extend((0..loaded.resident_blocks).map(Unit::DitBlock));
        }
        if self.silence.is_some() {
            units.push(Unit::Silence);
        }
        units
    }

    /// Starts `stage`: books its activation headroom and, under a budget, first checks that the stage fits at all
    /// and releases idle units it does not use until its own units fit; for the DiT stage, also decides how many
    /// blocks stay resident. Callers drop their handles to earlier stages' units before entering the next.
    pub fn enter(&mut self, stage: Stage) -> Result<()> {
        let headroom = activation_bytes(&self.checkpoint, stage);
        self.dit_blocks = self.checkpoint.acestep.num_hidden_layers;
        if let Some(sizes) = self.residency.sizes.clone() {
            let requirement = Requirement::of(&self.checkpoint, &sizes, stage);
            self.residency.note_stage(&requirement);
            if let Some(budget) = self.residency.budget {
                if requirement.total() > budget {
                    return Err(requirement.refusal(budget, "raise the budget or process shorter audio"));
                }
                self.make_room(stage, &sizes, budget, headroom)?;
            }
        }
        if let Stage::Denoise { .. } = stage {
            self.residency.note_dit_blocks(self.dit_blocks);
        }
        self.residency.ledger.set_headroom(headroom);
        Ok(())
    }

    /// The evictable slots: each unit with its bytes and idleness when loaded.
    fn slots(&self) -> [(Unit, Option<(u64, bool)>); 7] {
        [
            (Unit::TextEncoder, slot_state(self.text.as_ref())),
            (Unit::ConditionEncoder, slot_state(self.condition.as_ref())),
            (Unit::DitShell, slot_state(self.dit.as_ref().map(|d| &d.dit))),
            (Unit::AudioTokenizer, slot_state(self.audio_tokenizer.as_ref())),
            (Unit::AudioDetokenizer, slot_state(self.detokenizer.as_ref())),
            (Unit::VaeEncoder, slot_state(self.vae_encoder.as_ref())),
            (Unit::VaeDecoder, slot_state(self.vae_decoder.as_ref())),
        ]
    }

    /// Drops the handle to `unit` (the DiT for its shell or blocks); the silence latent is pinned.
    fn release(&mut self, unit: Unit) {
        match unit {
            Unit::TextEncoder => self.text = None,
            Unit::ConditionEncoder => self.condition = None,
            Unit::DitShell | Unit::DitBlock(_) => self.dit = None,
            Unit::AudioTokenizer => self.audio_tokenizer = None,
            Unit::AudioDetokenizer => self.detokenizer = None,
            Unit::VaeEncoder => self.vae_encoder = None,
            Unit::VaeDecoder => self.vae_decoder = None,
            Unit::Silence => return,
        }
        self.residency.note_release();
    }

    /// Releases idle units other than `keep`'s, largest first, until `fits(resident bytes)`; whether it does.
    fn release_until(&mut self, keep: &[Unit], fits: impl Fn(u64) -> bool) -> bool {
        loop {
            if fits(self.residency.ledger.totals().resident) {
                return true;
            }
            let largest_idle = self
                .slots()
                .into_iter()
                .filter(|(unit, _)| !keep.contains(unit))
                .filter_map(|(unit, state)| state.filter(|&(_, idle)| idle).map(|(bytes, _)| (unit, bytes)))
                .max_by_key(|&(_, bytes)| bytes);
            match largest_idle {
                Some((unit, _)) => self.release(unit),
                None => return false,
            }
        }
    }

    /// Releases what `stage` needs released under `budget` with `headroom` for its activations.
    fn make_room(&mut self, stage: Stage, sizes: &UnitSizes, budget: u64, headroom: u64) -> Result<()> {
        let missing_silence = if self.silence.is_none() { sizes.of(Unit::Silence) } else { 0 };
        let made_room = if let Stage::Denoise { .. } = stage {
            self.make_room_for_dit(sizes, budget.saturating_sub(missing_silence + headroom))
        } else {
            let missing: u64 = self
                .slots()
                .into_iter()
                .filter(|(unit, state)| stage.units().contains(unit) && state.is_none())
                .map(|(unit, _)| sizes.of(unit))
                .sum();
            self.release_until(stage.units(), |resident| resident + missing + missing_silence + headroom <= budget)
        };
        if made_room {
            Ok(())
        } else {
            Err(EngineError::BudgetTooSmall(format!(
                "cannot make room for {stage}: the units still resident are in use (an engine bug; please report it)"
            )))
        }
    }

    /// Within `available` bytes for all weights: keeps the whole DiT if releasing other idle units makes it fit,
    /// else as many resident blocks as [`dit_resident_blocks`] allows next to what stays. A loaded DiT with a
    /// different number of resident blocks is released to be rebuilt; its own bytes never count against itself.
    fn make_room_for_dit(&mut self, sizes: &UnitSizes, available: u64) -> bool {
        let blocks = sizes.dit_blocks().len();
        let whole = sizes.of(Unit::DitShell) + sizes.dit_blocks().iter().sum::<u64>();
        let loaded = self.dit.as_ref().map_or(0, |d| d.dit.bytes());
        self.dit_blocks = if self.release_until(&[Unit::DitShell], |resident| resident - loaded + whole <= available) {
            blocks
        } else {
            let others = self.residency.ledger.totals().resident - loaded;
            match dit_resident_blocks(sizes, available.saturating_sub(others)) {
                Some(resident) => resident,
                None => return false,
            }
        };
        match slot_state(self.dit.as_ref().filter(|d| d.resident_blocks != self.dit_blocks).map(|d| &d.dit)) {
            Some((_, true)) => self.release(Unit::DitShell),
            Some((_, false)) => return false,
            None => {}
        }
        true
    }

    /// The caption/lyric tokenizer.
    pub fn tokenizer(&mut self) -> Result<Arc<PromptTokenizer>> {
        if self.tokenizer.is_none() {
            self.tokenizer = Some(Arc::new(PromptTokenizer::open(&self.checkpoint)?));
        }
        Ok(self.tokenizer.clone().expect("filled above"))
    }

    /// The silence latent.
    pub fn silence(&mut self) -> Result<Shared<SilenceLatent>> {
        let ckpt = &self.checkpoint;
        self.residency.cached(&mut self.silence, &[Unit::Silence], || SilenceLatent::load(ckpt))
    }

    /// The Qwen3 text encoder.
    pub fn text_encoder(&mut self) -> Result<Shared<TextEncoder>> {
        let ckpt = &self.checkpoint;
        self.residency.cached(&mut self.text, &[Unit::TextEncoder], || TextEncoder::load(ckpt))
    }

    /// The condition encoder with its default timbre.
    pub fn condition(&mut self) -> Result<Shared<ConditionUnit>> {
        let silence = self.silence()?;
        let ckpt = &self.checkpoint;
        self.residency.cached(&mut self.condition, &[Unit::ConditionEncoder], || {
            let encoder = ConditionEncoder::load(ckpt)?;
            let frames = silence.slice(ckpt.acestep.timbre_fix_frame)?.unsqueeze(0)?;
            // A copy: the timbre is a one-row view into the encoder's whole output, which it would keep alive.
            let default_timbre = encoder.timbre(&frames)?.copy()?;
            Ok(ConditionUnit { encoder, default_timbre })
        })
    }

    /// The DiT, with the blocks the current stage keeps resident (all of them without a budget).
    pub fn dit(&mut self) -> Result<Shared<Dit>> {
        let resident = self.dit_blocks;
        let mut slot = self.dit.take().filter(|d| d.resident_blocks == resident).map(|d| d.dit);
        let units: Vec<Unit> = std::iter::once(Unit::DitShell).chain((0..resident).map(Unit::DitBlock)).collect();
        let (ckpt, ledger) = (&self.checkpoint, self.residency.ledger.clone());
        let loaded = self.residency.cached(&mut slot, &units, || {
            Dit::streamed(&ckpt.acestep_weights()?.pp("decoder"), &ckpt.acestep, resident, &ledger)
        });
        self.dit = slot.map(|dit| LoadedDit { resident_blocks: resident, dit });
        loaded
    }

    /// The audio tokenizer (attention pooler + FSQ).
    pub fn audio_tokenizer(&mut self) -> Result<Shared<AudioTokenizer>> {
        let ckpt = &self.checkpoint;
        self.residency.cached(&mut self.audio_tokenizer, &[Unit::AudioTokenizer], || AudioTokenizer::load(ckpt))
    }

    /// The audio detokenizer.
    pub fn detokenizer(&mut self) -> Result<Shared<AudioDetokenizer>> {
        let ckpt = &self.checkpoint;
        self.residency.cached(&mut self.detokenizer, &[Unit::AudioDetokenizer], || AudioDetokenizer::load(ckpt))
    }

    /// The VAE encoder.
    pub fn vae_encoder(&mut self) -> Result<Shared<VaeEncoder>> {
        let ckpt = &self.checkpoint;
        self.residency
            .cached(&mut self.vae_encoder, &[Unit::VaeEncoder], || VaeEncoder::load(&ckpt.vae, &ckpt.vae_weights()?))
    }

    /// The VAE decoder.
    pub fn vae_decoder(&mut self) -> Result<Shared<VaeDecoder>> {
        let ckpt = &self.checkpoint;
        self.residency
            .cached(&mut self.vae_decoder, &[Unit::VaeDecoder], || VaeDecoder::load(&ckpt.vae, &ckpt.vae_weights()?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::checkpoint::fixture;
    use crate::model::resident::ResidentBytes;

    fn velocity(dit: &Dit, cfg: &crate::model::config::AceStepConfig) -> Vec<f32> {
        let zeros = |shape: (usize, usize, usize)| Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap();
        let context = dit.shell().prepare_context(&zeros((1, 8, cfg.in_channels - 64))).unwrap();
        let cross = dit.cross_cache(&zeros((1, 10, cfg.hidden_size))).unwrap();
        let v = dit.forward(&zeros((1, 8, 64)), &context, &cross, &dit.shell().timestep(500.0).unwrap()).unwrap();
        v.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn units_in_use_stay_and_the_dit_streams_beside_them_then_is_rebuilt_whole_once_they_are_released() {
        let ckpt = fixture(DType::F32);
        let cfg = ckpt.acestep.clone();
        let want = velocity(&Dit::load(&ckpt).unwrap(), &cfg);
        let sizes = UnitSizes::from_checkpoint(&ckpt).unwrap();
        let stage = Stage::Denoise { frames: 8, encoder_len: 10, conditions: 1, cfg: false };
        let held = sizes.of(Unit::TextEncoder) + sizes.of(Unit::VaeEncoder) + sizes.of(Unit::Silence);
        let dit_room = sizes.of(Unit::DitShell) + 2 * sizes.of(Unit::DitBlock(0));
        let budget = held + activation_bytes(&ckpt, stage) + dit_room;
        let mut components = Components::new(ckpt, Some(budget)).unwrap();

        let text = components.text_encoder().unwrap();
        let vae = components.vae_encoder().unwrap();
        components.enter(stage).unwrap();
        let dit = components.dit().unwrap();
        assert_eq!(dit.blocks().len(), 1, "shell + one resident block + one streamed block fill the room");
        assert_eq!(velocity(&dit, &cfg), want);
        let stats = components.stats();
        assert!(stats.peak_bytes <= budget, "{} > {budget}", stats.peak_bytes);
        assert_eq!(stats.resident_bytes, text.resident_bytes() + vae.resident_bytes() + dit.bytes());
        assert_eq!(stats.releases, 0);

        drop((text, vae, dit));
        components.enter(stage).unwrap();
        let dit = components.dit().unwrap();
        assert_eq!(dit.blocks().len(), 4);
        assert_eq!(velocity(&dit, &cfg), want);
        // Releasing the largest idle unit, the VAE encoder, makes room; the streamed DiT is rebuilt whole.
        assert_eq!(components.stats().releases, 2);
        let units = components.resident_units();
        assert!(units.contains(&Unit::TextEncoder) && !units.contains(&Unit::VaeEncoder), "{units:?}");
        assert_eq!(components.stats().resident_bytes, units.iter().map(|&u| sizes.of(u)).sum::<u64>(), "{units:?}");
    }

    #[test]
    fn a_stage_that_cannot_fit_is_refused_with_its_requirement() {
        let ckpt = fixture(DType::F32);
        let minimum = crate::residency::minimum_budget(&ckpt).unwrap().total();
        let mut components = Components::new(ckpt, Some(minimum)).unwrap();
        let err = components.enter(Stage::Decode { frames: 10_000 }).unwrap_err();
        assert!(matches!(err, EngineError::BudgetTooSmall(_)), "{err}");
        assert!(err.to_string().contains("VAE decoding of 10000 latent frames needs at least"), "{err}");
    }
}
