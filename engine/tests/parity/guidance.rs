//! Kind `apg_guidance`: the official APG (momentum, norm clip, projection, cfg interval) step by step, through the
//! engine's `pipeline::guidance` (tests/fixtures-variants/README.md, kind `apg_guidance`).

use candle_core::{DType, Tensor};
use retake_engine::pipeline::guidance::{Apg, CfgInterval, Guidance};
use serde_json::Value;

use crate::harness::{Inputs, Produced};

pub fn run(inputs: &Inputs) -> Result<Produced, String> {
    let sequences = inputs.arg("sequences").as_array().ok_or("case has no `sequences`")?;
    let mut produced = Produced::new();
    for sequence in sequences {
        let tag = sequence["tag"].as_str().ok_or("sequence without tag")?;
        produced.extend(run_sequence(inputs, sequence, tag).map_err(|e| format!("sequence {tag}: {e}"))?);
    }
    Ok(produced)
}

fn run_sequence(inputs: &Inputs, args: &Value, tag: &str) -> Result<Produced, String> {
    let num = |key: &str| args[key].as_f64().ok_or_else(|| format!("no numeric `{key}`"));
    for (key, engine) in [("momentum", Apg::MOMENTUM), ("eta", Apg::ETA), ("norm_threshold", Apg::NORM_THRESHOLD)] {
        if num(key)? != engine {
            return Err(format!("{key} {} differs from the apg_classic value {engine} the engine uses", num(key)?));
        }
    }
    let err = |e: candle_core::Error| e.to_string();
    let interval = CfgInterval { start: num("cfg_interval_start")?, end: num("cfg_interval_end")? };
    let cond = inputs.tensor(&format!("in.pred_cond_{tag}"))?;
    let uncond = inputs.tensor(&format!("in.pred_uncond_{tag}"))?;
    let sigmas = inputs.stored(&format!("in.sigmas_{tag}"))?.to_dtype(DType::F32).and_then(|t| t.to_vec1::<f32>());
    let initial = inputs.tensor(&format!("in.momentum_init_{tag}"))?;
    let fresh = initial.abs().and_then(|t| t.max_all()).and_then(|t| t.to_scalar::<f32>()).map_err(err)? == 0.0;
    let apg = Apg::new(num("guidance_scale")?, interval);
    let mut guidance = Guidance::Apg(if fresh { apg } else { apg.with_running_average(initial.clone()) });
    let (mut velocities, mut guided, mut momenta) = (Vec::new(), Vec::new(), Vec::new());
    for (s, sigma) in sigmas.map_err(err)?.into_iter().enumerate() {
        let (c, u) = (cond.get(s).map_err(err)?, uncond.get(s).map_err(err)?);
        let on = guidance.guides(sigma);
        velocities.push(if on { guidance.combine(&c, &u).map_err(|e| e.to_string())? } else { c });
        guided.push(i64::from(on));
        let Guidance::Apg(apg) = &guidance else { unreachable!("built as APG above") };
        momenta.push(apg.running_average().unwrap_or(&initial).clone());
    }
    let stack = |rows: &[Tensor]| Tensor::stack(rows, 0).map_err(err);
    let guided = Tensor::new(guided, &candle_core::Device::Cpu).map_err(err)?;
    Ok(Produced::from([
        (format!("out.velocity_{tag}"), stack(&velocities)?),
        (format!("mid.momentum_{tag}"), stack(&momenta)?),
        (format!("mid.guided_{tag}"), guided),
    ]))
}
