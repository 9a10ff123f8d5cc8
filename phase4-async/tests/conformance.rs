//! Phase 4 runs the shared conformance suite (testkit) with the full
//! profile: keep-alive, CONNECT tunnels, concurrent exchanges.
testkit::conformance_suite!(env!("CARGO_BIN_EXE_phase4-async"), testkit::Profile::FULL);
