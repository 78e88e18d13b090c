//! Shared helpers for Retake's cross-crate and host tests: a headless CLAP host, the test signal, nice-plug's
//! state format, Retake sessions and round trips driven through the CLAP bundle, and the ACE-Step API servers.

pub mod clap_host;
pub mod paths;
pub mod plugin_state;
pub mod retake_session;
pub mod scenarios;
pub mod servers;
pub mod signal;
