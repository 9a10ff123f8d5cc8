//! Phase 2 runs the shared conformance suite with the full profile:
//! keep-alive, CONNECT tunnels, concurrent exchanges.
testkit::conformance_suite!(
    env!("CARGO_BIN_EXE_phase2-threadpool"),
    testkit::Profile::FULL
);
