//! Bytes each unit of the model holds once loaded, from the safetensors headers (docs/acestep-model.md §1, §12) or, for
//! random weights, from the tensors their geometry stores: every stored tensor in the dtype its loader keeps it in,
//! minus what loading consumes, plus the constant tables loading precomputes. The tests hold these numbers to the
//! loaded components' own tensors.

use std::fmt;

use candle_core::{DType, Device};

use super::inventory::{elements, Inventory, StoredTensors};
use crate::error::{EngineError, Result};
use crate::model::checkpoint::Checkpoint;
use crate::model::config::AceStepConfig;
use crate::model::dit::BLOCK_MODULATIONS;
use crate::model::linear::held_matrix_dtype;
use crate::model::silence::SilenceLatent;
use crate::model::vae::held_tap_dtype;

/// A part of the model that is loaded and released as a whole; every DiT block is a unit of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// The Qwen3 text encoder (its whole file).
    TextEncoder,
    /// `encoder.*` and `null_condition_emb`, with the default timbre derived at load.
    ConditionEncoder,
    /// `tokenizer.*`: attention pooler and FSQ.
    AudioTokenizer,
    /// `detokenizer.*`.
    AudioDetokenizer,
    /// `decoder.*` except the blocks: embeddings, timestep terms, output head.
    DitShell,
    /// `decoder.layers.{i}`.
    DitBlock(usize),
    /// `encoder.*` of the VAE.
    VaeEncoder,
    /// `decoder.*` of the VAE.
    VaeDecoder,
    /// The silence latent.
    Silence,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TextEncoder => f.write_str("the text encoder"),
            Self::ConditionEncoder => f.write_str("the condition encoder"),
            Self::AudioTokenizer => f.write_str("the audio tokenizer"),
            Self::AudioDetokenizer => f.write_str("the audio detokenizer"),
            Self::DitShell => f.write_str("the DiT shell"),
            Self::DitBlock(i) => write!(f, "DiT block {i}"),
            Self::VaeEncoder => f.write_str("the VAE encoder"),
            Self::VaeDecoder => f.write_str("the VAE decoder"),
            Self::Silence => f.write_str("the silence latent"),
        }
    }
}

/// How a loader keeps one stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// Consumed at load (folded into another tensor, replaced by a precomputed table) or unused.
    Nothing,
    /// This many copies of its elements in the compute dtype.
    Compute(usize),
    /// This many copies of its elements in f32.
    F32(usize),
    /// Weight matrices, held as [`held_matrix_dtype`] (or the VAE's [`held_tap_dtype`]) says: this many bytes.
    Bytes(u64),
}

/// The dtypes a part of the model loads in: its compute dtype and that of its weight matrices (bf16 on the CPU
/// in bf16 precision, model/linear.rs).
#[derive(Clone, Copy)]
struct Dtypes {
    compute: DType,
    matrix: DType,
}

impl Dtypes {
    /// Bytes of a weight matrix `[outputs, inputs]` as a linear layer holds it.
    fn matrix_bytes(self, outputs: usize, inputs: usize) -> u64 {
        let held = held_matrix_dtype(self.matrix, self.compute, outputs, inputs);
        (outputs * inputs * held.size_in_bytes()) as u64
    }
}

/// RMSNorm weights (`*norm.weight`, `*_layernorm.weight`, `norm_out.weight`), which load in f32.
fn is_norm_weight(key: &str) -> bool {
    key.strip_suffix(".weight")
        .map(|parent| parent.rsplit('.').next().unwrap_or(parent))
        .is_some_and(|layer| layer.ends_with("norm") || layer == "norm_out")
}

/// Keys of the ACE-Step model file and of the text encoder. `time_embed_r` becomes a constant (see
/// [`shell_tables`]), the timbre encoder's `special_token` is stored but unused, `proj_out`'s bias is repeated
/// once per patch frame, the norms run in f32. The weight matrices of the linear layers, the token embeddings and
/// the DiT's `proj_in` (two layers: context and latent inputs) and `proj_out` convs load in the matrix dtype.
/// (The audio tokenizer keeps everything in f32.)
fn transformer_rule(key: &str, shape: &[usize], cfg: &AceStepConfig, dtypes: Dtypes) -> Kept {
    let (patch, latent) = (cfg.patch_size, cfg.audio_acoustic_hidden_dim);
    match (key, shape) {
        _ if key.starts_with("decoder.time_embed_r.") || key == "encoder.timbre_encoder.special_token" => Kept::Nothing,
        ("decoder.proj_out.1.bias", _) => Kept::Compute(patch),
        _ if is_norm_weight(key) => Kept::F32(1),
        ("decoder.proj_in.1.weight", &[hidden, inputs, _]) => Kept::Bytes(
            dtypes.matrix_bytes(hidden, patch * inputs.saturating_sub(latent))
                + dtypes.matrix_bytes(hidden, patch * latent),
        ),
        ("decoder.proj_out.1.weight", &[hidden, _, _]) => Kept::Bytes(dtypes.matrix_bytes(patch * latent, hidden)),
        (_, &[rows, columns]) if key.ends_with("embed_tokens.weight") => {
            Kept::Bytes((rows * columns * dtypes.matrix.size_in_bytes()) as u64)
        }
        (_, &[outputs, inputs]) if key.ends_with(".weight") => Kept::Bytes(dtypes.matrix_bytes(outputs, inputs)),
        _ => Kept::Compute(1),
    }
}

/// Keys of the VAE file: weight norm folds `weight_g` into `weight_v`'s shape (held as [`held_tap_dtype`] says);
/// a Snake keeps `[3, C]` f32 (`e^α`, `1/(e^β + ε)` and an input-bias row). Conv biases are carried into the ops
/// after them — the next Snake's bias row, or the residual unit's add, whose `[C]` f32 bias every unit keeps in
/// place of `conv2.bias` — except the encoder's output conv, which keeps its own.
fn vae_rule(key: &str, shape: &[usize], dtypes: Dtypes) -> Kept {
    let (layer, name) = key.rsplit_once('.').unwrap_or(("", key));
    let residual_conv2 =
        layer.ends_with(".conv2") && layer.rsplit('.').nth(1).is_some_and(|unit| unit.starts_with("res_unit"));
    match (name, shape) {
        ("weight_g", _) => Kept::Nothing,
        // A ConvTranspose1d's `[in, out, 2·stride]` taps multiply as `[2·in, stride·out]`, a Conv1d's
        // `[out, in, kernel]` as `[kernel·in, out]`.
        ("weight_v", &[a, b, taps]) => {
            let (outputs, inputs, channels) =
                if layer.ends_with("conv_t1") { (taps / 2 * b, 2 * a, a) } else { (a, taps * b, b) };
            let held = held_tap_dtype(dtypes.matrix, dtypes.compute, outputs, inputs, channels);
            Kept::Bytes((a * b * taps * held.size_in_bytes()) as u64)
        }
        ("weight_v", _) => Kept::Compute(1),
        ("beta", _) => Kept::F32(2),
        ("bias", _) if !(residual_conv2 || layer == "encoder.conv2") => Kept::Nothing,
        _ => Kept::F32(1),
    }
}

fn no_headers() -> EngineError {
    EngineError::invalid(
        "a VRAM budget needs a model folder to size the components from, and a random-weight checkpoint has none: \
         build it with `Generator::with_assets`, which sizes them from the geometry, or run without a budget",
    )
}

/// Bytes kept of the tensors under `prefixes` of `stored`, except those under `excluded`.
fn kept_bytes(
    stored: &StoredTensors,
    prefixes: &[&str],
    excluded: Option<&str>,
    dtype: DType,
    rule: impl Fn(&str, &[usize]) -> Kept,
) -> u64 {
    let excluded = |key: &str| excluded.is_some_and(|e| key.starts_with(&format!("{e}.")));
    prefixes
        .iter()
        .flat_map(|prefix| stored.under(prefix))
        .filter(|(key, _)| !excluded(key))
        .map(|(key, shape)| match rule(key, shape) {
            Kept::Nothing => 0,
            Kept::Compute(copies) => copies as u64 * elements(shape) * dtype.size_in_bytes() as u64,
            Kept::F32(copies) => copies as u64 * elements(shape) * DType::F32.size_in_bytes() as u64,
            Kept::Bytes(bytes) => bytes,
        })
        .sum()
}

/// Elements of the DiT shell's constant `time_embed_r(0)`: `temb` `[1, hidden]` and its modulation rows.
fn shell_tables(hidden: usize) -> u64 {
    ((1 + BLOCK_MODULATIONS) * hidden) as u64
}

/// Elements of a RoPE cos/sin table pair for `len` positions.
fn rope_tables(head_dim: usize, len: usize) -> u64 {
    (2 * len * (head_dim / 2)) as u64
}

/// Resident bytes of every unit of one checkpoint, in its compute dtype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSizes {
    text_encoder: u64,
    condition_encoder: u64,
    audio_tokenizer: u64,
    audio_detokenizer: u64,
    dit_shell: u64,
    dit_blocks: Vec<u64>,
    vae_encoder: u64,
    vae_decoder: u64,
    silence: u64,
}

impl UnitSizes {
    /// Reads the three safetensors headers (no tensor data) and the silence latent's length.
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<Self> {
        let inventory = Inventory::from_headers(ckpt)?.ok_or_else(no_headers)?;
        let silence_path = ckpt.silence_file().ok_or_else(no_headers)?;
        let silence = SilenceLatent::open(&silence_path, ckpt.acestep.audio_acoustic_hidden_dim, &Device::Cpu)?;
        Ok(Self::from_inventory(ckpt, &inventory, silence.len()))
    }

    /// For a checkpoint without a model folder (random weights): the tensors a folder of its geometry stores
    /// ([`Inventory::from_geometry`]) and a silence latent of `silence_frames` frames, sized by the same rules as
    /// [`UnitSizes::from_checkpoint`] (on a folder's geometry the two agree unit by unit).
    pub fn from_geometry(ckpt: &Checkpoint, silence_frames: usize) -> Self {
        let inventory = Inventory::from_geometry(&ckpt.acestep, &ckpt.vae, &ckpt.qwen3);
        Self::from_inventory(ckpt, &inventory, silence_frames)
    }

    fn from_inventory(ckpt: &Checkpoint, inventory: &Inventory, silence_frames: usize) -> Self {
        let (cfg, dtype) = (&ckpt.acestep, ckpt.dtype());
        let dtypes = Dtypes { compute: dtype, matrix: ckpt.matrix_dtype() };
        let e = dtype.size_in_bytes() as u64;
        let model = &inventory.acestep;
        let model_bytes = |prefixes: &[&str], excluded: Option<&str>| {
            kept_bytes(model, prefixes, excluded, dtype, |key, shape| transformer_rule(key, shape, cfg, dtypes))
        };
        let text_rule = |key: &str, shape: &[usize]| transformer_rule(key, shape, cfg, dtypes);
        // The VAE encoder computes in f32 with f32 weights whatever the model dtype (its latents feed the FSQ codes,
        // model/vae/encoder.rs).
        let encoder = Dtypes { compute: DType::F32, matrix: DType::F32 };
        Self {
            text_encoder: kept_bytes(&inventory.text, &[""], None, dtype, text_rule),
            condition_encoder: model_bytes(&["encoder", "null_condition_emb"], None) + cfg.encoder_width() as u64 * e,
            // The tokenizer computes in f32 whatever the model dtype (FSQ codes are discrete).
            audio_tokenizer: kept_bytes(model, &["tokenizer"], None, dtype, |_, _| Kept::F32(1))
                + rope_tables(cfg.head_dim, cfg.pool_window_size + 1) * DType::F32.size_in_bytes() as u64,
            audio_detokenizer: model_bytes(&["detokenizer"], None)
                + rope_tables(cfg.head_dim, cfg.pool_window_size) * e,
            dit_shell: model_bytes(&["decoder"], Some("decoder.layers")) + shell_tables(cfg.hidden_size) * e,
            dit_blocks: (0..cfg.num_hidden_layers)
                .map(|i| model_bytes(&[&format!("decoder.layers.{i}")], None))
                .collect(),
            vae_encoder: kept_bytes(&inventory.vae, &["encoder"], None, DType::F32, |k, s| vae_rule(k, s, encoder)),
            vae_decoder: kept_bytes(&inventory.vae, &["decoder"], None, dtype, |k, s| vae_rule(k, s, dtypes)),
            silence: (silence_frames * cfg.audio_acoustic_hidden_dim) as u64 * e,
        }
    }

    /// Bytes `unit` holds once loaded (0 for a block index the model does not have).
    pub fn of(&self, unit: Unit) -> u64 {
        match unit {
            Unit::TextEncoder => self.text_encoder,
            Unit::ConditionEncoder => self.condition_encoder,
            Unit::AudioTokenizer => self.audio_tokenizer,
            Unit::AudioDetokenizer => self.audio_detokenizer,
            Unit::DitShell => self.dit_shell,
            Unit::DitBlock(i) => self.dit_blocks.get(i).copied().unwrap_or(0),
            Unit::VaeEncoder => self.vae_encoder,
            Unit::VaeDecoder => self.vae_decoder,
            Unit::Silence => self.silence,
        }
    }

    /// Bytes of each DiT block, in order.
    pub fn dit_blocks(&self) -> &[u64] {
        &self.dit_blocks
    }

    /// Every unit of the model.
    pub fn units(&self) -> impl Iterator<Item = Unit> + '_ {
        [Unit::TextEncoder, Unit::ConditionEncoder, Unit::AudioTokenizer, Unit::AudioDetokenizer, Unit::DitShell]
            .into_iter()
            .chain((0..self.dit_blocks.len()).map(Unit::DitBlock))
            .chain([Unit::VaeEncoder, Unit::VaeDecoder, Unit::Silence])
    }

    /// Bytes of the whole model loaded at once.
    pub fn total(&self) -> u64 {
        self.units().map(|u| self.of(u)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::audio_tokenizer::{AudioDetokenizer, AudioTokenizer};
    use crate::model::checkpoint::fixture;
    use crate::model::condition::ConditionEncoder;
    use crate::model::dit::{DitBlock, DitShell};
    use crate::model::linear::CpuPrecision;
    use crate::model::resident::ResidentBytes;
    use crate::model::text_encoder::TextEncoder;
    use crate::model::vae::{VaeDecoder, VaeEncoder};

    /// The fixture in f32, in bf16, and in f32 with bf16 weight matrices (the CPU's bf16 precision: its widths that
    /// are not whole panels are held in f32).
    fn fixtures() -> [(Checkpoint, &'static str); 3] {
        [
            (fixture(DType::F32), "f32"),
            (fixture(DType::BF16), "bf16"),
            (fixture(DType::F32).with_cpu_precision(CpuPrecision::Bf16), "f32 with bf16 matrices"),
        ]
    }

    #[test]
    fn header_sizes_equal_the_bytes_of_the_loaded_components_in_f32_and_bf16() {
        for (ckpt, name) in fixtures() {
            let dtype = ckpt.dtype();
            let sizes = UnitSizes::from_checkpoint(&ckpt).unwrap();
            let (cfg, model, vae) = (&ckpt.acestep, ckpt.acestep_weights().unwrap(), ckpt.vae_weights().unwrap());
            let timbre = (cfg.hidden_size * dtype.size_in_bytes()) as u64;
            let loaded = [
                (Unit::TextEncoder, TextEncoder::load(&ckpt).unwrap().resident_bytes()),
                (Unit::ConditionEncoder, ConditionEncoder::load(&ckpt).unwrap().resident_bytes() + timbre),
                (Unit::AudioTokenizer, AudioTokenizer::load(&ckpt).unwrap().resident_bytes()),
                (Unit::AudioDetokenizer, AudioDetokenizer::load(&ckpt).unwrap().resident_bytes()),
                (Unit::DitShell, DitShell::new(&model.pp("decoder"), cfg).unwrap().resident_bytes()),
                (Unit::DitBlock(3), DitBlock::new(&model.pp("decoder"), cfg, 3).unwrap().resident_bytes()),
                (Unit::VaeEncoder, VaeEncoder::load(&ckpt.vae, &vae).unwrap().resident_bytes()),
                (Unit::VaeDecoder, VaeDecoder::load(&ckpt.vae, &vae).unwrap().resident_bytes()),
                (Unit::Silence, SilenceLatent::load(&ckpt).unwrap().resident_bytes()),
            ];
            for (unit, bytes) in loaded {
                assert_eq!(sizes.of(unit), bytes, "{unit} in {name}");
            }
        }
    }

    #[test]
    fn bf16_matrices_shrink_the_units_that_hold_whole_panels_and_leave_the_rest() {
        let [(f32, _), _, (bf16_matrices, _)] = fixtures();
        let (f32, bf16) =
            (UnitSizes::from_checkpoint(&f32).unwrap(), UnitSizes::from_checkpoint(&bf16_matrices).unwrap());
        if crate::kernels::cpu::bf16_panels::Bf16Kernel::selected().unwrap().is_none() {
            assert_eq!(f32, bf16, "without a bf16 kernel every matrix is widened to f32");
            return;
        }
        // The audio tokenizer and the VAE encoder are f32 always, and the fixture's VAE decoder (8 and 16 channels)
        // takes no panels; the DiT (64 wide) and the text encoder's token embeddings (its 16-wide layers take no
        // panels) are held in bf16.
        for unit in [Unit::AudioTokenizer, Unit::VaeEncoder, Unit::VaeDecoder, Unit::Silence] {
            assert_eq!(bf16.of(unit), f32.of(unit), "{unit}");
        }
        for unit in [Unit::TextEncoder, Unit::DitBlock(0), Unit::DitShell, Unit::ConditionEncoder] {
            assert!(bf16.of(unit) < f32.of(unit), "{unit}: {} vs {}", bf16.of(unit), f32.of(unit));
        }
    }

    #[test]
    fn units_cover_every_block_and_the_total_is_their_sum() {
        let sizes = UnitSizes::from_checkpoint(&fixture(DType::F32)).unwrap();
        assert_eq!(sizes.dit_blocks().len(), 4);
        assert_eq!(sizes.units().count(), 8 + 4);
        assert_eq!(sizes.total(), sizes.units().map(|u| sizes.of(u)).sum::<u64>());
        assert!(sizes.dit_blocks().iter().all(|&b| b == sizes.of(Unit::DitBlock(0)) && b > 0));
        assert_eq!(sizes.of(Unit::DitBlock(4)), 0);
    }

    #[test]
    fn norms_are_recognised_by_their_layer_name() {
        for key in ["norm.weight", "layers.0.input_layernorm.weight", "decoder.norm_out.weight", "a.q_norm.weight"] {
            assert!(is_norm_weight(key), "{key}");
        }
        for key in ["decoder.proj_out.1.weight", "a.q_proj.weight", "norm.bias", "null_condition_emb"] {
            assert!(!is_norm_weight(key), "{key}");
        }
    }

    #[test]
    fn a_random_checkpoint_of_the_fixture_geometry_is_sized_like_the_fixture_unit_by_unit() {
        for (folder, name) in fixtures() {
            let headers = UnitSizes::from_checkpoint(&folder).unwrap();
            let random = folder.with_random_weights(3);
            let silence_frames = SilenceLatent::load(&folder).unwrap().len();
            let geometry = UnitSizes::from_geometry(&random, silence_frames);
            for unit in headers.units() {
                assert_eq!(geometry.of(unit), headers.of(unit), "{unit} in {name}");
            }
            assert_eq!(geometry, headers);
        }
    }

    #[test]
    fn random_checkpoints_have_no_headers_to_size() {
        let ckpt = Checkpoint::random_turbo(1, DType::F32, &Device::Cpu);
        assert!(matches!(UnitSizes::from_checkpoint(&ckpt).unwrap_err(), EngineError::InvalidInput(_)));
    }
}
