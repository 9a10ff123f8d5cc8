//! Phase 4 runs the shared scaling suite (testkit): upstream reuse, stale
//! pooled connections, backpressure from a slow reader, 5,000 concurrent
//! keep-alive connections, the connection limit, shutdown, slowloris.
testkit::scaling_suite!(env!("CARGO_BIN_EXE_phase4-async"), testkit::Scale::ASYNC);
