//! Placeholder: this rung is being built.
