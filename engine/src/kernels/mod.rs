//! How the maths runs fast: every `std::arch` intrinsic, candle `CustomOp` and CUDA call of the engine. The model
//! files in `model/` say *what* ACE-Step 1.5 computes and pick one of these kernels where a device has a
//! faster way; nothing here knows a model. The split follows candle's (`candle-transformers` model files call
//! `candle_nn::ops`, whose `CustomOp`s hold `cpu_fwd` / `cuda_fwd`) and llama.cpp's (`src/models/` beside
//! `ggml-cpu/`, `ggml-cuda/`).
//!
//! - [`storage`]: reading and writing the f32 storage of CPU tensors, and when the CPU fast paths apply.
//! - [`mask`]: which keys an attention query sees, and the query chunking every attention path shares.
//! - [`cpu`]: the CPU f32 kernels (AVX-512 where the CPU has it, a scalar form elsewhere).
//! - [`cuda`]: CUDA kernels and the device's memory counters.

pub mod cpu;
pub mod cuda;
pub mod mask;
pub mod storage;
