//! Phase 2 runs the scaling suite shared by phases 2-4 (upstream reuse,
//! backpressure, capacity, lifecycle), with enough workers for its
//! many-connections case: blocking I/O needs a thread per connection served.
testkit::scaling_suite!(
    env!("CARGO_BIN_EXE_phase2-threadpool"),
    testkit::Scale::THREAD_POOL
);
