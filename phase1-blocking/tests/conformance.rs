//! Phase 1 runs the shared conformance suite (testkit) with its profile:
//! `Connection: close` on every response, CONNECT answered 501, one exchange at a time.
testkit::conformance_suite!(
    env!("CARGO_BIN_EXE_phase1-blocking"),
    testkit::Profile::PHASE1
);
