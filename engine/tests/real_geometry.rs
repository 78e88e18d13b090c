//! The DiT in the real turbo geometry (docs/acestep-model.md §2, §6, §12) with seeded random weights: no download
//! needed, so this catches shape bugs that the tiny fixture config cannot (e.g. GQA 16/8, head_dim 128, 24 blocks).

use candle_core::{DType, Device, Tensor};
use retake_engine::model::config::AceStepConfig;
use retake_engine::model::dit::Dit;
use retake_engine::model::weights::Weights;

#[test]
fn turbo_dit_forward_on_two_seconds_gives_finite_velocity_of_the_latent_shape() {
    let cfg = AceStepConfig::turbo();
    cfg.validate(std::path::Path::new("turbo()")).unwrap();
    let device = Device::Cpu;
    // Build only the DiT (≈1.58 B parameters, ≈6.3 GB in f32).
    let dit = Dit::new(&Weights::random(11, DType::F32, &device).pp("decoder"), &cfg).unwrap();
    assert_eq!(dit.blocks().len(), 24);

    let frames = 50; // 2 s at 25 Hz
    let encoder_len = 100;
    let latent = cfg.audio_acoustic_hidden_dim;
    let latents = Tensor::randn(0f32, 1., (1, frames, latent), &device).unwrap();
    let context = Tensor::randn(0f32, 1., (1, frames, cfg.in_channels - latent), &device).unwrap();
    let encoder_states = Tensor::randn(0f32, 1., (1, encoder_len, cfg.encoder_width()), &device).unwrap();

    let context = dit.shell().prepare_context(&context).unwrap();
    let cross = dit.cross_cache(&encoder_states).unwrap();
    let timestep = dit.shell().timestep(1000.0).unwrap();
    let velocity = dit.forward(&latents, &context, &cross, &timestep).unwrap();

    assert_eq!(velocity.dims(), &[1, frames, latent]);
    let values: Vec<f32> = velocity.flatten_all().unwrap().to_vec1().unwrap();
    assert!(values.iter().all(|v| v.is_finite()), "non-finite velocity");
}
