//! Shared helpers for Retake's cross-crate and host tests.
