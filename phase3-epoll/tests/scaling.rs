//! Phase 3 runs the shared scaling suite (testkit) at the event-loop scale:
//! 5,000 concurrent keep-alive connections, upstream reuse, bounded memory
//! for a slow reader, load shedding, shutdown, tunnels.
testkit::scaling_suite!(
    env!("CARGO_BIN_EXE_phase3-epoll"),
    testkit::Scale::EVENT_LOOP
);
