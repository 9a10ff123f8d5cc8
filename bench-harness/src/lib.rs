//! Placeholder lib (being written).
pub mod loadgen;
pub mod results;
