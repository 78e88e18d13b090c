//! The VRAM budget (docs/candle.md §3): the stages of a job and the units each needs, what
//! a stage requires (its units, the pinned silence latent and its activation headroom), how many DiT blocks
//! stay resident, the smallest budget a model accepts, and the statistics that make the accounting observable.

mod headroom;
mod inventory;
mod sizes;

use std::fmt;
use std::sync::Arc;

pub use headroom::activation_bytes;
pub use inventory::{Inventory, StoredTensors};
pub use sizes::{Unit, UnitSizes};

use crate::audio::MODEL_SAMPLE_RATE;
use crate::error::{EngineError, Result};
use crate::model::checkpoint::Checkpoint;
use crate::model::resident::{Ledger, LedgerTotals, ResidentBytes, Tracked};

/// A step of a job that runs one component (or a pair) on the device. Components are loaded for their stage and,
/// under a budget, released for later ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The captions through the text encoder, the lyrics through its embedding table.
    Text(PromptShape),
    /// The condition encoder packs the prompts (and their null conditions for CFG).
    Condition(PromptShape),
    /// The VAE encoder over `samples` samples of 48 kHz source audio.
    Encode {
        /// Audio samples per channel.
        samples: usize,
    },
    /// The audio tokenizer and detokenizer over `frames` latent frames (cover hints).
    Hints {
        /// Latent frames of the source.
        frames: usize,
    },
    /// The DiT: condition caches, then the sampling loop over `frames` latent frames.
    Denoise {
        /// Latent frames generated.
        frames: usize,
        /// Length of the longest packed encoder states.
        encoder_len: usize,
        /// Condition sets (cover switches condition part-way).
        conditions: usize,
        /// Whether each condition also has a null branch (classifier-free guidance).
        cfg: bool,
    },
    /// The VAE decoder over `frames` latent frames.
    Decode {
        /// Latent frames decoded.
        frames: usize,
    },
}

/// The token counts of the prompts a job encodes together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptShape {
    /// Prompts (cover encodes two).
    pub prompts: usize,
    /// Tokens of the longest caption prompt.
    pub caption_tokens: usize,
    /// Tokens of the longest lyric prompt.
    pub lyric_tokens: usize,
}

impl Stage {
    /// The units the stage runs; the DiT stage needs its shell and then its blocks (see [`dit_resident_blocks`]).
    pub fn units(self) -> &'static [Unit] {
        match self {
            Self::Text(_) => &[Unit::TextEncoder],
            Self::Condition(_) => &[Unit::ConditionEncoder],
            Self::Encode { .. } => &[Unit::VaeEncoder],
            Self::Hints { .. } => &[Unit::AudioTokenizer, Unit::AudioDetokenizer],
            Self::Denoise { .. } => &[Unit::DitShell],
            Self::Decode { .. } => &[Unit::VaeDecoder],
        }
    }

    /// Every stage at its smallest shapes (one prompt of one token each, one latent frame, one condition, no CFG).
    fn smallest(hop: usize) -> [Stage; 6] {
        let prompt = PromptShape { prompts: 1, caption_tokens: 1, lyric_tokens: 1 };
        [
            Self::Text(prompt),
            Self::Condition(prompt),
            Self::Encode { samples: hop },
            Self::Hints { frames: 1 },
            Self::Denoise { frames: 1, encoder_len: 1, conditions: 1, cfg: false },
            Self::Decode { frames: 1 },
        ]
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = |samples: usize| samples as f64 / MODEL_SAMPLE_RATE as f64;
        match *self {
            Self::Text(_) => f.write_str("text encoding"),
            Self::Condition(_) => f.write_str("condition encoding"),
            Self::Encode { samples } => write!(f, "VAE encoding of {:.1} s of audio", seconds(samples)),
            Self::Hints { frames } => write!(f, "audio tokenizing of {frames} latent frames"),
            Self::Denoise { frames, .. } => write!(f, "DiT sampling of {frames} latent frames"),
            Self::Decode { frames } => write!(f, "VAE decoding of {frames} latent frames"),
        }
    }
}

/// How much device memory a stage needs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// The stage.
    pub stage: Stage,
    /// Weights that must be resident together: the stage's units (the DiT shell and its largest block) and the
    /// silence latent.
    pub weights: u64,
    /// The stage's activation headroom.
    pub headroom: u64,
}

impl Requirement {
    /// What `stage` needs on `ckpt`, with the units sized by `sizes`.
    pub fn of(ckpt: &Checkpoint, sizes: &UnitSizes, stage: Stage) -> Self {
        let units: u64 = stage.units().iter().map(|&u| sizes.of(u)).sum();
        let streamed_block = match stage {
            Stage::Denoise { .. } => sizes.dit_blocks().iter().copied().max().unwrap_or(0),
            _ => 0,
        };
        Self {
            stage,
            weights: sizes.of(Unit::Silence) + units + streamed_block,
            headroom: activation_bytes(ckpt, stage),
        }
    }

    /// Weights plus headroom: the smallest budget the stage runs in.
    pub fn total(&self) -> u64 {
        self.weights + self.headroom
    }

    /// The error for a `budget` below this requirement, telling what to do.
    pub fn refusal(&self, budget: u64, remedy: &str) -> EngineError {
        EngineError::BudgetTooSmall(format!(
            "{} needs at least {} ({} of weights and {} of activations) but the VRAM budget is {}; {remedy}",
            self.stage,
            human_bytes(self.total()),
            human_bytes(self.weights),
            human_bytes(self.headroom),
            human_bytes(budget),
        ))
    }
}

/// The smallest budget `ckpt` runs under: the largest requirement of any stage at its smallest shapes. Longer
/// jobs need more activation headroom; each stage checks its own requirement before it loads anything.
pub fn minimum_budget(ckpt: &Checkpoint) -> Result<Requirement> {
    let sizes = UnitSizes::from_checkpoint(ckpt)?;
    Ok(largest_requirement(ckpt, &sizes))
}

fn largest_requirement(ckpt: &Checkpoint, sizes: &UnitSizes) -> Requirement {
    Stage::smallest(ckpt.vae.hop())
        .into_iter()
        .map(|stage| Requirement::of(ckpt, sizes, stage))
        .max_by_key(Requirement::total)
        .expect("there are stages")
}

/// Fails when `budget` is below `ckpt`'s [`minimum_budget`], with an error that states the minimum. Reads only
/// the safetensors headers.
pub fn check_model_budget(ckpt: &Checkpoint, budget: u64) -> Result<()> {
    check_budget(ckpt, &UnitSizes::from_checkpoint(ckpt)?, budget)
}

/// Fails when `budget` is below the model's [`minimum_budget`] with its units sized by `sizes`, with an error that
/// states the minimum.
pub fn check_budget(ckpt: &Checkpoint, sizes: &UnitSizes, budget: u64) -> Result<()> {
    let minimum = largest_requirement(ckpt, sizes);
    if budget < minimum.total() {
        return Err(minimum.refusal(
            budget,
            &format!("raise the budget to at least {} or leave it unset", human_bytes(minimum.total())),
        ));
    }
    Ok(())
}

/// How many of the DiT's blocks to keep resident when `room` bytes are free for the DiT (the budget less the
/// other resident weights and the headroom): all if shell and blocks fit; otherwise the longest prefix that
/// leaves room for the largest of the remaining blocks, streamed one at a time; `None` if not even the shell and
/// one streamed block fit.
pub fn dit_resident_blocks(sizes: &UnitSizes, room: u64) -> Option<usize> {
    let (shell, blocks) = (sizes.of(Unit::DitShell), sizes.dit_blocks());
    let prefix = |k: usize| shell + blocks[..k].iter().sum::<u64>();
    if prefix(blocks.len()) <= room {
        return Some(blocks.len());
    }
    (0..blocks.len()).rev().find(|&k| prefix(k) + blocks[k..].iter().copied().max().unwrap_or(0) <= room)
}

/// `bytes` in MiB or GiB, rounded up so that a budget of the printed size is enough.
pub fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    let mib = bytes as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.2} GiB", (mib / 1024.0 * 100.0).ceil() / 100.0)
    } else {
        format!("{:.1} MiB", (mib * 10.0).ceil() / 10.0)
    }
}

/// The residency accounting of a generator. Resident bytes are the tensors of every loaded unit and streamed
/// DiT block, counted from the tensors themselves; peaks run from the generator's creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResidencyStats {
    /// The budget in force, if any.
    pub budget: Option<u64>,
    /// Bytes of weights resident now.
    pub resident_bytes: u64,
    /// The most weight bytes ever resident at once.
    pub peak_resident_bytes: u64,
    /// Activation headroom of the current (last) stage.
    pub headroom_bytes: u64,
    /// The highest weights-plus-headroom total reached; never above the budget.
    pub peak_bytes: u64,
    /// The smallest budget every stage run so far would have fitted in (`None` when the units are not sized: a
    /// random-weight checkpoint opened by `Generator::new` rather than `Generator::with_assets`).
    pub required_bytes: Option<u64>,
    /// Units released to make room for a later stage.
    pub releases: u64,
    /// The fewest DiT blocks a sampling stage kept resident so far; the others streamed through every pass
    /// (`None` before the first sampling stage).
    pub dit_resident_blocks: Option<usize>,
}

impl ResidencyStats {
    /// Stats from the ledger's totals and the policy's counters.
    fn new(
        budget: Option<u64>,
        totals: LedgerTotals,
        required: Option<u64>,
        releases: u64,
        dit_resident_blocks: Option<usize>,
    ) -> Self {
        Self {
            budget,
            resident_bytes: totals.resident,
            peak_resident_bytes: totals.peak_resident,
            headroom_bytes: totals.headroom,
            peak_bytes: totals.peak,
            required_bytes: required,
            releases,
            dit_resident_blocks,
        }
    }
}

/// A loaded unit shared out to the pipeline; it stays booked until the last handle drops.
pub type Shared<T> = Arc<Tracked<T>>;

/// The accounting of one set of components: the ledger every loaded unit is booked in, the budget and the unit
/// sizes it is planned with, and the counters behind [`ResidencyStats`].
pub(super) struct Residency {
    /// Where loaded units and streamed blocks are booked.
    pub ledger: Ledger,
    /// The budget in force.
    pub budget: Option<u64>,
    /// Unit sizes (from the headers, or from the geometry for random weights); `None` for a random checkpoint
    /// opened without a budget or its assets.
    pub sizes: Option<UnitSizes>,
    required: Option<u64>,
    releases: u64,
    dit_resident_blocks: Option<usize>,
}

impl Residency {
    /// Accounting for `ckpt` under `budget`, refusing a budget below the model's minimum before anything loads.
    pub fn new(ckpt: &Checkpoint, budget: Option<u64>) -> Result<Self> {
        match (budget, ckpt.root()) {
            (None, None) => Ok(Self::empty(None, None)),
            _ => Self::sized(ckpt, UnitSizes::from_checkpoint(ckpt)?, budget),
        }
    }

    /// Accounting for `ckpt` with units sized by `sizes` under `budget`, refusing a budget below the model's
    /// minimum before anything loads.
    pub fn sized(ckpt: &Checkpoint, sizes: UnitSizes, budget: Option<u64>) -> Result<Self> {
        if let Some(budget) = budget {
            check_budget(ckpt, &sizes, budget)?;
        }
        Ok(Self::empty(Some(sizes), budget))
    }

    /// Accounting with nothing booked yet.
    fn empty(sizes: Option<UnitSizes>, budget: Option<u64>) -> Self {
        let required = sizes.as_ref().map(|_| 0);
        Self { ledger: Ledger::new(), budget, sizes, required, releases: 0, dit_resident_blocks: None }
    }

    /// The statistics now.
    pub fn stats(&self) -> ResidencyStats {
        let totals = self.ledger.totals();
        ResidencyStats::new(self.budget, totals, self.required, self.releases, self.dit_resident_blocks)
    }

    /// Records that a sampling stage keeps `blocks` DiT blocks resident.
    pub fn note_dit_blocks(&mut self, blocks: usize) {
        self.dit_resident_blocks = Some(self.dit_resident_blocks.map_or(blocks, |fewest| fewest.min(blocks)));
    }

    /// Records that a stage with `requirement` ran.
    pub fn note_stage(&mut self, requirement: &Requirement) {
        self.required = self.required.map(|r| r.max(requirement.total()));
    }

    /// Records that a unit was released to make room.
    pub fn note_release(&mut self) {
        self.releases += 1;
    }

    /// Books `value` in the ledger and shares it.
    pub fn track<T: ResidentBytes>(&self, value: T) -> Shared<T> {
        Arc::new(Tracked::new(value, &self.ledger))
    }

    /// Loads `slot` (made of `units`) with `load` unless it is already there, and shares it. Under a budget a
    /// load must fit next to what is resident and the current headroom: stages make room before their units
    /// load, so a load that does not fit is a unit loaded outside its stage, refused rather than overrunning.
    pub fn cached<T: ResidentBytes>(
        &self,
        slot: &mut Option<Shared<T>>,
        units: &[Unit],
        load: impl FnOnce() -> Result<T>,
    ) -> Result<Shared<T>> {
        if let Some(loaded) = slot {
            return Ok(loaded.clone());
        }
        if let (Some(budget), Some(sizes)) = (self.budget, &self.sizes) {
            let (totals, bytes) = (self.ledger.totals(), units.iter().map(|&u| sizes.of(u)).sum::<u64>());
            if totals.resident + bytes + totals.headroom > budget {
                return Err(EngineError::BudgetTooSmall(format!(
                    "loading {} ({}) next to {} of resident weights and {} of activations would exceed the budget \
                     of {}: it was requested outside its stage (an engine bug; please report it)",
                    units.first().map_or_else(String::new, Unit::to_string),
                    human_bytes(bytes),
                    human_bytes(totals.resident),
                    human_bytes(totals.headroom),
                    human_bytes(budget),
                )));
            }
        }
        let loaded = self.track(load()?);
        *slot = Some(loaded.clone());
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::checkpoint::fixture;

    #[test]
    fn dit_keeps_every_block_when_it_fits_and_else_the_longest_prefix_leaving_room_for_one_more() {
        let ckpt = fixture(DType::F32);
        let sizes = UnitSizes::from_checkpoint(&ckpt).unwrap();
        let (shell, block) = (sizes.of(Unit::DitShell), sizes.of(Unit::DitBlock(0)));
        assert_eq!(dit_resident_blocks(&sizes, shell + 4 * block), Some(4));
        // Three resident blocks would leave no room to stream the fourth.
        assert_eq!(dit_resident_blocks(&sizes, shell + 4 * block - 1), Some(2));
        assert_eq!(dit_resident_blocks(&sizes, shell + 3 * block), Some(2));
        assert_eq!(dit_resident_blocks(&sizes, shell + 3 * block - 1), Some(1));
        assert_eq!(dit_resident_blocks(&sizes, shell + block), Some(0));
        assert_eq!(dit_resident_blocks(&sizes, shell + block - 1), None);
    }

    #[test]
    fn the_minimum_is_the_largest_stage_and_a_smaller_budget_is_refused_with_it() {
        let ckpt = fixture(DType::F32);
        let sizes = UnitSizes::from_checkpoint(&ckpt).unwrap();
        let minimum = minimum_budget(&ckpt).unwrap();
        for stage in Stage::smallest(ckpt.vae.hop()) {
            assert!(Requirement::of(&ckpt, &sizes, stage).total() <= minimum.total(), "{stage}");
        }
        assert!(Stage::smallest(ckpt.vae.hop()).into_iter().any(|s| Requirement::of(&ckpt, &sizes, s) == minimum));
        check_budget(&ckpt, &sizes, minimum.total()).unwrap();
        let err = check_budget(&ckpt, &sizes, minimum.total() - 1).unwrap_err();
        assert!(matches!(err, EngineError::BudgetTooSmall(_)), "{err}");
        assert!(err.to_string().contains(&format!("at least {}", human_bytes(minimum.total()))), "{err}");
    }

    #[test]
    fn the_xl_minimum_is_stated_for_its_two_widths_and_a_budget_below_it_is_refused() {
        use crate::model::config::{AceStepConfig, Qwen3Config, VaeConfig};
        use crate::model::linear::CpuPrecision;
        use crate::model::variant::Variant;
        // f32 on the CPU, f32 with bf16 matrices (the CPU's bf16 precision), bf16 as on a GPU.
        let targets = [
            (DType::F32, CpuPrecision::F32, "f32 (CPU)"),
            (DType::F32, CpuPrecision::Bf16, "bf16 matrices (CPU)"),
            (DType::BF16, CpuPrecision::F32, "bf16 (GPU)"),
        ];
        let mut minima = Vec::new();
        for (dtype, precision, name) in targets {
            let minimum = |variant| {
                let acestep = AceStepConfig::for_variant(variant);
                let ckpt = Checkpoint::random(
                    acestep,
                    VaeConfig::oobleck_48k(),
                    Qwen3Config::embedding_0_6b(),
                    0,
                    dtype,
                    &Device::Cpu,
                )
                .with_cpu_precision(precision);
                let sizes = UnitSizes::from_geometry(&ckpt, 15_000);
                (largest_requirement(&ckpt, &sizes), ckpt, sizes)
            };
            let (turbo, ..) = minimum(Variant::Turbo);
            let (xl, ckpt, sizes) = minimum(Variant::XlTurbo);
            println!(
                "{name}: minimum budget turbo {} ({}), xl {} ({})",
                human_bytes(turbo.total()),
                turbo.stage,
                human_bytes(xl.total()),
                xl.stage
            );
            // The XL DiT streams one of its wider blocks at a time; its encoder side keeps the 2B widths.
            let block = |ckpt_sizes: &UnitSizes| ckpt_sizes.of(Unit::DitBlock(0));
            assert!(block(&sizes) > block(&minimum(Variant::Turbo).2));
            assert!(xl.total() >= turbo.total());
            let err = check_budget(&ckpt, &sizes, xl.total() - 1).unwrap_err().to_string();
            assert!(err.contains(&format!("at least {}", human_bytes(xl.total()))), "{err}");
            check_budget(&ckpt, &sizes, xl.total()).unwrap();
            minima.push(turbo.total());
        }
        // bf16 matrices lower the CPU's minimum where this CPU multiplies bf16 panels.
        if crate::kernels::cpu::bf16_panels::Bf16Kernel::selected().unwrap().is_some() {
            assert!(minima[1] < minima[0], "{minima:?}");
        }
    }

    #[test]
    fn human_bytes_rounds_up() {
        assert_eq!(human_bytes(1 << 20), "1.0 MiB");
        assert_eq!(human_bytes((1 << 20) + 1), "1.1 MiB");
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
        assert_eq!(human_bytes((3 << 30) + (1 << 20)), "3.01 GiB");
    }
}
