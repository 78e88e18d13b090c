//! The tensors each weight file of the original checkpoint layout stores, keys and shapes (docs/acestep-model.md §1):
//! read from a model folder's safetensors headers, or derived from the geometry for random-weight checkpoints, which
//! have none.

use crate::error::Result;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::{AceStepConfig, Qwen3Config, VaeConfig};
use crate::model::dit::BLOCK_MODULATIONS;
use crate::model::layers::TransformerDims;
use crate::model::weights::Weights;

/// Width of the DiT's sinusoidal timestep features (the input of `time_embed*.linear_1`).
const TIMESTEP_FEATURES: usize = 256;
/// Kernel taps of the VAE's length-preserving convs (input convs, residual `conv1`, decoder output).
const VAE_KERNEL: usize = 7;
/// Kernel taps of the VAE encoder's output conv.
const VAE_ENCODER_OUT_KERNEL: usize = 3;
/// Residual units of every VAE block (`res_unit1..=3`).
const VAE_RESIDUAL_UNITS: usize = 3;

/// The tensors one weight file stores: keys with their shapes, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredTensors(Vec<(String, Vec<usize>)>);

impl StoredTensors {
    fn new(mut tensors: Vec<(String, Vec<usize>)>) -> Self {
        tensors.sort();
        Self(tensors)
    }

    /// Every stored tensor, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.0.iter().map(|(key, shape)| (key.as_str(), shape.as_slice()))
    }

    /// The tensors under `prefix`: the key itself and those below it (`layers.1` is not under `layers.10`'s
    /// prefix); every tensor for `""`.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a [usize])> {
        self.iter().filter(move |(key, _)| {
            prefix.is_empty() || key.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
    }

    /// Elements stored under each of `prefixes`, summed.
    pub fn elements_under(&self, prefixes: &[&str]) -> u64 {
        prefixes.iter().flat_map(|prefix| self.under(prefix)).map(|(_, shape)| elements(shape)).sum()
    }
}

/// Elements of a tensor of `shape`.
pub(super) fn elements(shape: &[usize]) -> u64 {
    shape.iter().product::<usize>() as u64
}

/// The stored tensors of a checkpoint's three weight files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// `acestep-v15-turbo/model.safetensors`: DiT, condition encoder, audio tokenizer and detokenizer.
    pub acestep: StoredTensors,
    /// `vae/diffusion_pytorch_model.safetensors`.
    pub vae: StoredTensors,
    /// `Qwen3-Embedding-0.6B/model.safetensors`.
    pub text: StoredTensors,
}

impl Inventory {
    /// Read from the safetensors headers of `ckpt`'s model folder (no tensor data); `None` for a random-weight
    /// checkpoint, which has no files.
    pub fn from_headers(ckpt: &Checkpoint) -> Result<Option<Self>> {
        let header = |weights: Weights| weights.shapes_under("").map(StoredTensors::new);
        Ok(match (header(ckpt.acestep_weights()?), header(ckpt.vae_weights()?), header(ckpt.text_weights()?)) {
            (Some(acestep), Some(vae), Some(text)) => Some(Self { acestep, vae, text }),
            _ => None,
        })
    }

    /// What a model folder of this geometry stores, in the original layout.
    pub fn from_geometry(acestep: &AceStepConfig, vae: &VaeConfig, qwen3: &Qwen3Config) -> Self {
        Self { acestep: acestep_file(acestep), vae: vae_file(vae), text: text_file(qwen3) }
    }
}

/// `prefix.name`, or `name` at the root.
fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Collects the keys and shapes of one file, module by module.
#[derive(Default)]
struct Layout(Vec<(String, Vec<usize>)>);

impl Layout {
    fn tensor(&mut self, key: String, shape: &[usize]) {
        self.0.push((key, shape.to_vec()));
    }

    /// `weight` `[outputs, inputs]` and optionally `bias` `[outputs]`.
    fn linear(&mut self, prefix: &str, inputs: usize, outputs: usize, bias: bool) {
        self.tensor(join(prefix, "weight"), &[outputs, inputs]);
        if bias {
            self.tensor(join(prefix, "bias"), &[outputs]);
        }
    }

    /// An RMSNorm's `weight`.
    fn norm(&mut self, prefix: &str, width: usize) {
        self.tensor(join(prefix, "weight"), &[width]);
    }

    /// Bias-free q/k/v/o projections with per-head q/k norms.
    fn attention(&mut self, prefix: &str, d: &TransformerDims) {
        let (q, kv) = (d.heads * d.head_dim, d.kv_heads * d.head_dim);
        self.linear(&join(prefix, "q_proj"), d.hidden, q, false);
        self.linear(&join(prefix, "k_proj"), d.hidden, kv, false);
        self.linear(&join(prefix, "v_proj"), d.hidden, kv, false);
        self.linear(&join(prefix, "o_proj"), q, d.hidden, false);
        self.norm(&join(prefix, "q_norm"), d.head_dim);
        self.norm(&join(prefix, "k_norm"), d.head_dim);
    }

    /// The gated MLP.
    fn mlp(&mut self, prefix: &str, d: &TransformerDims) {
        self.linear(&join(prefix, "gate_proj"), d.hidden, d.intermediate, false);
        self.linear(&join(prefix, "up_proj"), d.hidden, d.intermediate, false);
        self.linear(&join(prefix, "down_proj"), d.intermediate, d.hidden, false);
    }

    /// `layers.{0..layers}` pre-norm encoder layers and the final `norm`.
    fn stack(&mut self, prefix: &str, d: &TransformerDims, layers: usize) {
        for i in 0..layers {
            let layer = join(prefix, &format!("layers.{i}"));
            self.norm(&join(&layer, "input_layernorm"), d.hidden);
            self.attention(&join(&layer, "self_attn"), d);
            self.norm(&join(&layer, "post_attention_layernorm"), d.hidden);
            self.mlp(&join(&layer, "mlp"), d);
        }
        self.norm(&join(prefix, "norm"), d.hidden);
    }

    /// A weight-normed conv: `weight_v` of `shape`, `weight_g` over its first dimension, optionally a bias.
    fn conv(&mut self, prefix: &str, shape: [usize; 3], bias: Option<usize>) {
        self.tensor(join(prefix, "weight_v"), &shape);
        self.tensor(join(prefix, "weight_g"), &[shape[0], 1, 1]);
        if let Some(width) = bias {
            self.tensor(join(prefix, "bias"), &[width]);
        }
    }

    /// A Snake's `alpha` and `beta`.
    fn snake(&mut self, prefix: &str, channels: usize) {
        for name in ["alpha", "beta"] {
            self.tensor(join(prefix, name), &[1, channels, 1]);
        }
    }

    /// A VAE block's residual units at `channels`: Snake, conv k=7, Snake, conv k=1.
    fn residual_units(&mut self, block: &str, channels: usize) {
        for unit in 1..=VAE_RESIDUAL_UNITS {
            let unit = join(block, &format!("res_unit{unit}"));
            self.snake(&join(&unit, "snake1"), channels);
            self.conv(&join(&unit, "conv1"), [channels, channels, VAE_KERNEL], Some(channels));
            self.snake(&join(&unit, "snake2"), channels);
            self.conv(&join(&unit, "conv2"), [channels, channels, 1], Some(channels));
        }
    }
}

/// The ACE-Step model file (or its shards): DiT (`decoder.*`), condition encoder (`encoder.*`,
/// `null_condition_emb`), audio tokenizer (`tokenizer.*`) and detokenizer (`detokenizer.*`).
fn acestep_file(cfg: &AceStepConfig) -> StoredTensors {
    let (d, h) = (cfg.transformer_dims(), cfg.hidden_size);
    let (latent, patch) = (cfg.audio_acoustic_hidden_dim, cfg.patch_size);
    let mut file = Layout::default();
    file.tensor("decoder.proj_in.1.weight".into(), &[h, cfg.in_channels, patch]);
    file.tensor("decoder.proj_in.1.bias".into(), &[h]);
    for embedder in ["decoder.time_embed", "decoder.time_embed_r"] {
        file.linear(&join(embedder, "linear_1"), TIMESTEP_FEATURES, h, true);
        file.linear(&join(embedder, "linear_2"), h, h, true);
        file.linear(&join(embedder, "time_proj"), h, BLOCK_MODULATIONS * h, true);
    }
    file.linear("decoder.condition_embedder", cfg.encoder_width(), h, true);
    for i in 0..cfg.num_hidden_layers {
        let block = format!("decoder.layers.{i}");
        for (attention, norm) in [("self_attn", "self_attn_norm"), ("cross_attn", "cross_attn_norm")] {
            file.norm(&join(&block, norm), h);
            file.attention(&join(&block, attention), &d);
        }
        file.norm(&join(&block, "mlp_norm"), h);
        file.mlp(&join(&block, "mlp"), &d);
        file.tensor(join(&block, "scale_shift_table"), &[1, BLOCK_MODULATIONS, h]);
    }
    file.norm("decoder.norm_out", h);
    file.tensor("decoder.scale_shift_table".into(), &[1, 2, h]);
    file.tensor("decoder.proj_out.1.weight".into(), &[h, latent, patch]);
    file.tensor("decoder.proj_out.1.bias".into(), &[latent]);

    // The encoder side (condition encoder, audio tokenizer, detokenizer) at its own widths (XL: narrower).
    let (d, h) = (cfg.encoder_side().transformer_dims(), cfg.encoder_width());
    file.linear("encoder.text_projector", cfg.text_hidden_dim, h, false);
    file.linear("encoder.lyric_encoder.embed_tokens", cfg.text_hidden_dim, h, true);
    file.stack("encoder.lyric_encoder", &d, cfg.num_lyric_encoder_hidden_layers);
    file.linear("encoder.timbre_encoder.embed_tokens", cfg.timbre_hidden_dim, h, true);
    file.stack("encoder.timbre_encoder", &d, cfg.num_timbre_encoder_hidden_layers);
    file.tensor("encoder.timbre_encoder.special_token".into(), &[1, 1, h]);
    file.tensor("null_condition_emb".into(), &[1, 1, h]);

    let levels = cfg.fsq_input_levels.len();
    file.linear("tokenizer.audio_acoustic_proj", latent, h, true);
    file.linear("tokenizer.attention_pooler.embed_tokens", h, h, true);
    file.stack("tokenizer.attention_pooler", &d, cfg.num_attention_pooler_hidden_layers);
    file.tensor("tokenizer.attention_pooler.special_token".into(), &[1, 1, h]);
    file.linear("tokenizer.quantizer.project_in", cfg.fsq_dim, levels, true);
    file.linear("tokenizer.quantizer.project_out", levels, cfg.fsq_dim, true);

    file.linear("detokenizer.embed_tokens", h, h, true);
    file.stack("detokenizer", &d, cfg.num_attention_pooler_hidden_layers);
    file.tensor("detokenizer.special_tokens".into(), &[1, cfg.pool_window_size, h]);
    file.linear("detokenizer.proj_out", h, latent, true);
    StoredTensors::new(file.0)
}

/// The VAE file (`AutoencoderOobleck`): level `l` of a side with base width `b` has `b·cm[l−1]` channels
/// (`b` at level 0); the encoder walks the strides down, the decoder back up.
pub(super) fn vae_file(cfg: &VaeConfig) -> StoredTensors {
    let width = |base: usize, level: usize| base * level.checked_sub(1).map_or(1, |i| cfg.channel_multiples[i]);
    let levels = cfg.downsampling_ratios.len();
    let (audio, latent) = (cfg.audio_channels, cfg.decoder_input_channels);
    let (encoder, decoder) = (cfg.encoder_hidden_size, cfg.decoder_channels);
    let mut file = Layout::default();
    file.conv("encoder.conv1", [encoder, audio, VAE_KERNEL], Some(encoder));
    for (i, &stride) in cfg.downsampling_ratios.iter().enumerate() {
        let (input, output, block) = (width(encoder, i), width(encoder, i + 1), format!("encoder.block.{i}"));
        file.residual_units(&block, input);
        file.snake(&join(&block, "snake1"), input);
        file.conv(&join(&block, "conv1"), [output, input, 2 * stride], Some(output));
    }
    let deepest = width(encoder, levels);
    file.snake("encoder.snake1", deepest);
    file.conv("encoder.conv2", [encoder, deepest, VAE_ENCODER_OUT_KERNEL], Some(encoder));

    file.conv("decoder.conv1", [width(decoder, levels), latent, VAE_KERNEL], Some(width(decoder, levels)));
    for (i, &stride) in cfg.downsampling_ratios.iter().rev().enumerate() {
        let (input, output) = (width(decoder, levels - i), width(decoder, levels - i - 1));
        let block = format!("decoder.block.{i}");
        file.snake(&join(&block, "snake1"), input);
        // A ConvTranspose1d: `[in, out, k]`, weight norm over the input channels, bias over the outputs.
        file.conv(&join(&block, "conv_t1"), [input, output, 2 * stride], Some(output));
        file.residual_units(&block, output);
    }
    file.snake("decoder.snake1", decoder);
    file.conv("decoder.conv2", [audio, decoder, VAE_KERNEL], None);
    StoredTensors::new(file.0)
}

/// The Qwen3 text encoder file (bare `Qwen3Model` keys): embedding table, layers, final norm.
fn text_file(cfg: &Qwen3Config) -> StoredTensors {
    let mut file = Layout::default();
    file.tensor("embed_tokens.weight".into(), &[cfg.vocab_size, cfg.hidden_size]);
    file.stack("", &cfg.transformer_dims(), cfg.num_hidden_layers);
    StoredTensors::new(file.0)
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;
    use crate::model::checkpoint::fixture;

    #[test]
    fn the_geometry_gives_the_fixture_headers_key_by_key_and_shape_by_shape() {
        let ckpt = fixture(DType::F32);
        let headers = Inventory::from_headers(&ckpt).unwrap().unwrap();
        let geometry = Inventory::from_geometry(&ckpt.acestep, &ckpt.vae, &ckpt.qwen3);
        for (name, got, want) in [
            ("acestep", &geometry.acestep, &headers.acestep),
            ("vae", &geometry.vae, &headers.vae),
            ("text", &geometry.text, &headers.text),
        ] {
            let missing: Vec<_> = want.iter().filter(|t| !got.iter().any(|g| g == *t)).collect();
            let extra: Vec<_> = got.iter().filter(|t| !want.iter().any(|w| w == *t)).collect();
            assert!(missing.is_empty() && extra.is_empty(), "{name}: missing {missing:?}, extra {extra:?}");
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(headers.acestep.iter().count(), 209);
    }

    #[test]
    fn the_real_geometry_stores_the_published_parameter_totals() {
        // docs/acestep-model.md §1: the turbo model file and its DiT part, Qwen3-Embedding-0.6B, and DiffSynth 2.1.12's
        // `AceStepVAE()` parameter count (docs/acestep-model.md §1 prints 168,660,608, 34,818 short of it).
        let inventory = Inventory::from_geometry(
            &AceStepConfig::turbo(),
            &VaeConfig::oobleck_48k(),
            &Qwen3Config::embedding_0_6b(),
        );
        assert_eq!(inventory.acestep.elements_under(&[""]), 2_393_872_518);
        assert_eq!(inventory.acestep.elements_under(&["decoder"]), 1_575_458_880);
        assert_eq!(inventory.acestep.elements_under(&["encoder", "null_condition_emb"]), 608_369_664);
        assert_eq!(inventory.acestep.elements_under(&["tokenizer", "detokenizer"]), 105_032_198 + 105_011_776);
        assert_eq!(inventory.vae.elements_under(&[""]), 168_695_426);
        assert_eq!(inventory.text.elements_under(&[""]), 595_776_512);
    }

    #[test]
    fn a_prefix_covers_the_key_and_its_children_only() {
        let stored = StoredTensors::new(vec![
            ("layers.1.w".into(), vec![2, 3]),
            ("layers.10.w".into(), vec![5]),
            ("layers.1".into(), vec![7]),
            ("norm.weight".into(), vec![4]),
        ]);
        let keys = |prefix| stored.under(prefix).map(|(key, _)| key).collect::<Vec<_>>();
        assert_eq!(keys("layers.1"), ["layers.1", "layers.1.w"]);
        assert_eq!(keys("layers"), ["layers.1", "layers.1.w", "layers.10.w"]);
        assert_eq!(keys("").len(), 4);
        assert_eq!(stored.elements_under(&["layers.1", "norm"]), 7 + 6 + 4);
    }
}
