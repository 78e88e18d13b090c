//! The three tasks Retake offers — cover, repaint, text2music — assembled from the model components
//! (spec §9, §10, §13). `request` holds the API types.

pub mod masks;
pub mod request;
