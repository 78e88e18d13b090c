//! Kinds `vae_encode` and `vae_decode`: the Oobleck VAE (docs/acestep-model.md §8), encoder posterior mean and raw
//! decoder output.

use retake_engine::model::vae::{VaeDecoder, VaeEncoder};

use crate::harness::{Inputs, Produced};

/// Runs a VAE case: `in.audio` → `mid.encoder_out`, `out.latent_mean`; or `in.latents` → `out.audio`.
pub fn run(inputs: &Inputs) -> Result<Produced, String> {
    let checkpoint = inputs.checkpoint()?;
    let weights = checkpoint.vae_weights().map_err(err)?;
    let mut produced = Produced::new();
    match inputs.case.kind.as_str() {
        "vae_encode" => {
            let encoder = VaeEncoder::load(&checkpoint.vae, &weights).map_err(err)?;
            let moments = encoder.encode_moments(&inputs.tensor("in.audio")?).map_err(err)?;
            let mean = moments.narrow(1, 0, checkpoint.vae.decoder_input_channels).map_err(err)?;
            produced.insert("out.latent_mean".into(), mean);
            produced.insert("mid.encoder_out".into(), moments);
        }
        "vae_decode" => {
            let decoder = VaeDecoder::load(&checkpoint.vae, &weights).map_err(err)?;
            produced.insert("out.audio".into(), decoder.decode(&inputs.tensor("in.latents")?).map_err(err)?);
        }
        other => return Err(format!("the VAE handler does not run kind `{other}`")),
    }
    Ok(produced)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}
