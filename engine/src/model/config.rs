//! Config structs that mirror the checkpoints' `config.json` files field for field (docs/acestep-model.md §2).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::layers::{AttnMask, TransformerDims};
use super::variant::Variant;
use crate::audio::MODEL_SAMPLE_RATE;
use crate::error::{EngineError, Result};

/// Attention kind of one transformer layer, from `layer_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    /// Bidirectional band |i−j| ≤ `sliding_window`.
    SlidingAttention,
    /// Every key visible.
    FullAttention,
}

/// `acestep-v15-*/config.json` (`AceStepConfig`): DiT, condition encoder and audio tokenizer.
#[derive(Debug, Clone, Deserialize)]
pub struct AceStepConfig {
    /// "turbo", "base", "sft", …
    #[serde(default)]
    pub model_version: Option<String>,
    /// True for the CFG-distilled turbo checkpoints.
    #[serde(default)]
    pub is_turbo: bool,
    /// Transformer width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// DiT depth.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA).
    pub num_key_value_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Half-width of the sliding band.
    pub sliding_window: usize,
    /// Per-layer attention kind (indexed by every stack).
    pub layer_types: Vec<LayerType>,
    /// Lyric encoder depth.
    pub num_lyric_encoder_hidden_layers: usize,
    /// Timbre encoder depth.
    pub num_timbre_encoder_hidden_layers: usize,
    /// Attention pooler and detokenizer depth.
    pub num_attention_pooler_hidden_layers: usize,
    /// Latent channels (64).
    pub audio_acoustic_hidden_dim: usize,
    /// Timbre reference channels (64).
    pub timbre_hidden_dim: usize,
    /// Frames per timbre reference (750).
    pub timbre_fix_frame: usize,
    /// Qwen3 hidden width fed to the text projector.
    pub text_hidden_dim: usize,
    /// DiT input channels (192 = x_t + src + mask).
    pub in_channels: usize,
    /// Temporal patch size of the DiT (2).
    pub patch_size: usize,
    /// Latent frames per 5 Hz token (5).
    pub pool_window_size: usize,
    /// FSQ width.
    pub fsq_dim: usize,
    /// FSQ levels per dimension.
    pub fsq_input_levels: Vec<u32>,
    /// Residual FSQ quantizers (1).
    #[serde(default = "one")]
    pub fsq_input_num_quantizers: usize,
    /// XL checkpoints: width of the condition encoder, audio tokenizer and detokenizer when it differs from the DiT.
    #[serde(default)]
    pub encoder_hidden_size: Option<usize>,
    /// XL checkpoints: MLP width of the encoder side.
    #[serde(default)]
    pub encoder_intermediate_size: Option<usize>,
    /// XL checkpoints: query heads of the encoder side.
    #[serde(default)]
    pub encoder_num_attention_heads: Option<usize>,
    /// XL checkpoints: key/value heads of the encoder side.
    #[serde(default)]
    pub encoder_num_key_value_heads: Option<usize>,
}

fn one() -> usize {
    1
}

impl AceStepConfig {
    /// The real `acestep-v15-turbo/config.json` values (docs/acestep-model.md §2), for building the full geometry
    /// without a download (random-weight tests and benchmarks).
    pub fn turbo() -> Self {
        Self {
            model_version: Some("turbo".into()),
            is_turbo: true,
            hidden_size: 2048,
            intermediate_size: 6144,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            num_key_value_heads: 8,
            head_dim: 128,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            sliding_window: 128,
            layer_types: (0..24)
                .map(|i| if i % 2 == 0 { LayerType::SlidingAttention } else { LayerType::FullAttention })
                .collect(),
            num_lyric_encoder_hidden_layers: 8,
            num_timbre_encoder_hidden_layers: 4,
            num_attention_pooler_hidden_layers: 2,
            audio_acoustic_hidden_dim: 64,
            timbre_hidden_dim: 64,
            timbre_fix_frame: 750,
            text_hidden_dim: 1024,
            in_channels: 192,
            patch_size: 2,
            pool_window_size: 5,
            fsq_dim: 2048,
            fsq_input_levels: vec![8, 8, 8, 5, 5, 5],
            fsq_input_num_quantizers: 1,
            encoder_hidden_size: None,
            encoder_intermediate_size: None,
            encoder_num_attention_heads: None,
            encoder_num_key_value_heads: None,
        }
    }

    /// The real `acestep-v15-xl-*/config.json` geometry (the XL row of the variants table in README.md): a DiT
    /// 2560 wide with 32 layers and 32 / 8 heads over the 2B encoder side (`encoder_*` = 2048 / 6144 / 16 / 8).
    pub fn xl(turbo: bool) -> Self {
        Self {
            model_version: Some(if turbo { "xl_turbo" } else { "xl_base" }.into()),
            is_turbo: turbo,
            hidden_size: 2560,
            intermediate_size: 9728,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            layer_types: (0..32)
                .map(|i| if i % 2 == 0 { LayerType::SlidingAttention } else { LayerType::FullAttention })
                .collect(),
            encoder_hidden_size: Some(2048),
            encoder_intermediate_size: Some(6144),
            encoder_num_attention_heads: Some(16),
            encoder_num_key_value_heads: Some(8),
            ..Self::turbo()
        }
    }

    /// The real config of `variant`'s DiT folder, for building its full geometry without a download: [`Self::xl`]
    /// for the XL variants, else the 2B [`Self::turbo`] geometry, with `is_turbo` as the variant is.
    pub fn for_variant(variant: Variant) -> Self {
        match variant {
            Variant::XlBase | Variant::XlSft | Variant::XlTurbo => Self::xl(variant.is_turbo()),
            _ => Self { model_version: Some(variant.name().into()), is_turbo: variant.is_turbo(), ..Self::turbo() },
        }
    }

    /// The config the condition encoder, audio tokenizer, detokenizer and `null_condition_emb` are built from: this
    /// one with the `encoder_*` widths in place of the DiT's (official `modeling_acestep_v15_xl_base.py`
    /// `AceStepConditionGenerationModel.__init__`, which deep-copies the config and overrides the four keys;
    /// `head_dim` stays). Without `encoder_*` keys (the 2B configs) it equals this config.
    pub fn encoder_side(&self) -> Self {
        Self {
            hidden_size: self.encoder_width(),
            intermediate_size: self.encoder_intermediate_size.unwrap_or(self.intermediate_size),
            num_attention_heads: self.encoder_num_attention_heads.unwrap_or(self.num_attention_heads),
            num_key_value_heads: self.encoder_num_key_value_heads.unwrap_or(self.num_key_value_heads),
            ..self.clone()
        }
    }

    /// Widths shared by the DiT and the encoder stacks (lyric, timbre, pooler, detokenizer).
    pub fn transformer_dims(&self) -> TransformerDims {
        TransformerDims {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            eps: self.rms_norm_eps,
        }
    }

    /// Attention masks of the first `layers` layers of a stack: every stack indexes the same `layer_types`
    /// (docs/acestep-model.md §2, §4; `sliding_attention` = bidirectional band of `sliding_window`).
    /// [`AceStepConfig::validate`] guarantees `layer_types` covers every stack, so the result has `layers` entries for
    /// a validated config.
    pub fn layer_masks(&self, layers: usize) -> Vec<AttnMask> {
        self.layer_types
            .iter()
            .take(layers)
            .map(|kind| match kind {
                LayerType::SlidingAttention => AttnMask::Sliding(self.sliding_window),
                LayerType::FullAttention => AttnMask::Full,
            })
            .collect()
    }

    /// Width of the condition encoder (and the packed encoder states).
    pub fn encoder_width(&self) -> usize {
        self.encoder_hidden_size.unwrap_or(self.hidden_size)
    }

    /// Checks the invariants the port relies on, so a wrong config fails at load and not mid-job.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let fail = |message: String| EngineError::Config { path: path.to_path_buf(), message };
        let encoder = self.encoder_side();
        for (prefix, cfg) in [("", self), ("encoder_", &encoder)] {
            if cfg.num_key_value_heads == 0 || !cfg.num_attention_heads.is_multiple_of(cfg.num_key_value_heads) {
                return Err(fail(format!(
                    "{prefix}num_attention_heads {} is not a multiple of {prefix}num_key_value_heads {}",
                    cfg.num_attention_heads, cfg.num_key_value_heads
                )));
            }
        }
        let deepest = self
            .num_hidden_layers
            .max(self.num_lyric_encoder_hidden_layers)
            .max(self.num_timbre_encoder_hidden_layers)
            .max(self.num_attention_pooler_hidden_layers);
        if self.layer_types.len() < deepest {
            return Err(fail(format!(
                "layer_types has {} entries but a stack has {deepest} layers",
                self.layer_types.len()
            )));
        }
        if self.in_channels != 3 * self.audio_acoustic_hidden_dim {
            return Err(fail(format!(
                "in_channels {} is not 3 × audio_acoustic_hidden_dim {}",
                self.in_channels, self.audio_acoustic_hidden_dim
            )));
        }
        if self.fsq_input_num_quantizers != 1 {
            return Err(EngineError::UnsupportedModel(format!(
                "{} FSQ quantizers (only 1 is supported)",
                self.fsq_input_num_quantizers
            )));
        }
        if self.fsq_input_levels.iter().any(|&l| l < 2) || self.patch_size == 0 || self.pool_window_size == 0 {
            return Err(fail("fsq_input_levels, patch_size and pool_window_size must be positive".into()));
        }
        // The codebook size is their product, an audio code is a u32 (model/audio_tokenizer.rs).
        if self.fsq_input_levels.iter().try_fold(1u32, |size, &levels| size.checked_mul(levels)).is_none() {
            return Err(fail(format!(
                "fsq_input_levels {:?} multiply to more than {} codes (ACE-Step 1.5: [8, 8, 8, 5, 5, 5], 64000)",
                self.fsq_input_levels,
                u32::MAX
            )));
        }
        Ok(())
    }
}

/// `vae/config.json` (diffusers `AutoencoderOobleck`).
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    /// Audio channels (2).
    pub audio_channels: usize,
    /// Width multipliers per block.
    pub channel_multiples: Vec<usize>,
    /// Base decoder width.
    pub decoder_channels: usize,
    /// Latent channels fed to the decoder (64).
    pub decoder_input_channels: usize,
    /// Per-block strides (hop = product).
    pub downsampling_ratios: Vec<usize>,
    /// Base encoder width; the encoder outputs this many channels (mean ‖ scale).
    pub encoder_hidden_size: usize,
    /// Audio rate (48000).
    pub sampling_rate: u32,
}

impl VaeConfig {
    /// The real ACE-Step 1.5 VAE (`vae/config.json` of ACE-Step/Ace-Step1.5, docs/acestep-model.md §2): 48 kHz stereo,
    /// 64 latent channels at 25 Hz (hop 1920).
    pub fn oobleck_48k() -> Self {
        Self {
            audio_channels: 2,
            channel_multiples: vec![1, 2, 4, 8, 16],
            decoder_channels: 128,
            decoder_input_channels: 64,
            downsampling_ratios: vec![2, 4, 4, 6, 10],
            encoder_hidden_size: 128,
            sampling_rate: 48_000,
        }
    }

    /// Audio samples per latent frame (1920).
    pub fn hop(&self) -> usize {
        self.downsampling_ratios.iter().product()
    }

    /// Checks the invariants the port relies on.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let fail = |message: String| EngineError::Config { path: path.to_path_buf(), message };
        if self.channel_multiples.len() != self.downsampling_ratios.len() || self.downsampling_ratios.is_empty() {
            return Err(fail("channel_multiples and downsampling_ratios must have the same, non-zero length".into()));
        }
        if self.downsampling_ratios.contains(&0) {
            return Err(fail("downsampling_ratios must be positive".into()));
        }
        // The hop (their product) must fit a latent frame into at most one second of audio; checked before it is
        // multiplied out, which could overflow.
        let hop = self
            .downsampling_ratios
            .iter()
            .try_fold(1usize, |hop, &ratio| hop.checked_mul(ratio).filter(|&hop| hop <= MODEL_SAMPLE_RATE as usize));
        if hop.is_none() {
            return Err(fail(format!(
                "downsampling_ratios {:?} multiply to more than {MODEL_SAMPLE_RATE} samples per latent frame \
                 (ACE-Step 1.5's VAE: [2, 4, 4, 6, 10], 1920)",
                self.downsampling_ratios
            )));
        }
        if self.sampling_rate != MODEL_SAMPLE_RATE {
            return Err(fail(format!(
                "sampling_rate is {} Hz, but Retake's pipelines and their timing run at {MODEL_SAMPLE_RATE} Hz \
                 (ACE-Step 1.5's VAE)",
                self.sampling_rate
            )));
        }
        if self.audio_channels != 2 {
            return Err(fail(format!(
                "audio_channels is {}, but Retake feeds the VAE stereo (2 channels)",
                self.audio_channels
            )));
        }
        if self.encoder_hidden_size != 2 * self.decoder_input_channels {
            return Err(fail(format!(
                "encoder_hidden_size {} is not 2 × decoder_input_channels {}",
                self.encoder_hidden_size, self.decoder_input_channels
            )));
        }
        Ok(())
    }
}

/// `Qwen3-Embedding-0.6B/config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Qwen3Config {
    /// Vocabulary rows of `embed_tokens`.
    pub vocab_size: usize,
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Depth.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
}

impl Qwen3Config {
    /// The real `Qwen3-Embedding-0.6B/config.json` values (docs/acestep-model.md §3.1), for building the full
    /// text-encoder geometry without a download (benchmarks).
    pub fn embedding_0_6b() -> Self {
        Self {
            vocab_size: 151_669,
            hidden_size: 1024,
            intermediate_size: 3072,
            num_hidden_layers: 28,
            num_attention_heads: 16,
            num_key_value_heads: 8,
            head_dim: 128,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
        }
    }

    /// Widths of the Qwen3 layers.
    pub fn transformer_dims(&self) -> TransformerDims {
        TransformerDims {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            eps: self.rms_norm_eps,
        }
    }

    /// Checks the invariants the port relies on.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.num_key_value_heads == 0 || !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return Err(EngineError::Config {
                path: path.to_path_buf(),
                message: "num_attention_heads is not a multiple of num_key_value_heads".into(),
            });
        }
        Ok(())
    }
}

/// Reads and parses a JSON config, mapping every failure to a typed error naming the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let hint = "point --model / RETAKE_MODEL_DIR at an ACE-Step 1.5 folder, or fetch ACE-Step/Ace-Step1.5 into the \
                Hugging Face cache";
    let text =
        std::fs::read_to_string(path).map_err(|source| EngineError::unreadable_model_file(path, source, hint))?;
    serde_json::from_str(&text).map_err(|e| EngineError::Config { path: path.to_path_buf(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(result: Result<()>) -> String {
        match result {
            Err(EngineError::Config { path, message }) => {
                assert_eq!(path, Path::new("vae/config.json"));
                message
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn the_real_configs_are_valid() {
        VaeConfig::oobleck_48k().validate(Path::new("vae/config.json")).unwrap();
        AceStepConfig::turbo().validate(Path::new("acestep-v15-turbo/config.json")).unwrap();
    }

    #[test]
    fn a_vae_at_another_sampling_rate_is_refused_naming_both_rates() {
        let vae = VaeConfig { sampling_rate: 44_100, ..VaeConfig::oobleck_48k() };
        let message = config_error(vae.validate(Path::new("vae/config.json")));
        assert!(message.contains("sampling_rate is 44100 Hz") && message.contains("run at 48000 Hz"), "{message}");
    }

    #[test]
    fn downsampling_ratios_whose_product_overflows_or_passes_a_second_are_refused_without_a_panic() {
        for ratios in [vec![usize::MAX, 2, 4, 4, 6], vec![1 << 40, 1 << 40, 1, 1, 1], vec![10, 10, 10, 10, 10]] {
            let vae = VaeConfig { downsampling_ratios: ratios.clone(), ..VaeConfig::oobleck_48k() };
            let message = config_error(vae.validate(Path::new("vae/config.json")));
            assert!(message.contains("multiply to more than 48000 samples per latent frame"), "{ratios:?}: {message}");
        }
    }

    #[test]
    fn a_mono_vae_is_refused() {
        let vae = VaeConfig { audio_channels: 1, ..VaeConfig::oobleck_48k() };
        assert!(config_error(vae.validate(Path::new("vae/config.json"))).contains("audio_channels is 1"));
    }

    #[test]
    fn fsq_levels_whose_codebook_overflows_a_u32_are_refused() {
        let config = AceStepConfig { fsq_input_levels: vec![1 << 16, 1 << 16, 2], ..AceStepConfig::turbo() };
        let err = config.validate(Path::new("acestep-v15-turbo/config.json")).unwrap_err().to_string();
        assert!(err.contains("fsq_input_levels [65536, 65536, 2] multiply to more than 4294967295 codes"), "{err}");
    }
}
