//! The conformance suite: one set of cases, written once, that every phase
//! of the proxy must pass.
//!
//! The four phases differ only in their concurrency model, so they must
//! behave identically on the wire; the few documented differences (phase 1
//! closes after every response and answers CONNECT with 501) are captured by
//! a [`Profile`]. Each case spawns the real proxy binary on port 0, starts
//! an in-process [`origin::Origin`] as its upstream, and talks to the proxy
//! over raw TCP, so what is tested is exactly what a client sees, byte for
//! byte, including the command line, signals and the access log.
//!
//! # Adding a phase
//!
//! A phase crate lists `testkit` as a dev-dependency and adds one file,
//! `tests/conformance.rs`:
//!
//! ```text
//! testkit::conformance_suite!(env!("CARGO_BIN_EXE_phase2-threadpool"), testkit::Profile::FULL);
//! ```
//!
//! The macro expands to one `#[test]` per case, grouped in modules by topic
//! (`bodies::get_8mib_body_is_byte_identical`, ...), so cases run in parallel,
//! fail individually, and `cargo test -p phase2-threadpool --test conformance
//! bad_input` runs one topic.
//!
//! # Profiles
//!
//! A [`Profile`] says which of the documented per-phase behaviours to expect.
//! A case whose behaviour depends on the phase checks *both* sides (for
//! example `connect_follows_profile` checks 501 under [`Profile::PHASE1`]
//! and a working tunnel under [`Profile::FULL`]), so moving a phase to a new
//! profile is a one-word change, never new test code.
//!
//! # Reading a failure
//!
//! A failing case panics with what was expected, then the transcript of the
//! client connection: every byte sent and received, escaped so `\r\n` is
//! visible, long runs cut to their head and tail with their real length.
//! The proxy's stderr and stdout follow. See [`transcript`].
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`proxy`] | spawn the binary, read `listening on`, signal it, kill on drop |
//! | [`client`] | raw TCP client and an independent, strict response reader |
//! | [`transcript`] | bytes sent and received, for failure messages |
//! | [`process`] | what `/proc` says the proxy holds: resident memory, open descriptors |
//! | [`slowloris`] | a client that sends its head a byte at a time, many per thread |
//! | [`cases`] | the cases, one module per topic: they are the contract, readable |
//! | [`scaling`] | the scaling suite (phases 2-4): pooling, backpressure, capacity, lifecycle under load |
//!
//! # The scaling suite
//!
//! Phases 2-4 also run [`scaling_suite!`] with a [`Scale`] (how many
//! connections the phase is expected to hold, and the flags it needs):
//!
//! ```text
//! testkit::scaling_suite!(env!("CARGO_BIN_EXE_phase3-epoll"), testkit::Scale::EVENT_LOOP);
//! ```

pub mod cases;
pub mod client;
pub mod process;
pub mod proxy;
pub mod scaling;
pub mod slowloris;
pub mod transcript;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use client::{Client, Framing, Response};
pub use origin::{Origin, OriginConfig};
pub use proxy::Proxy;
pub use scaling::{Scale, ScalingSuite};

/// The documented behaviours that differ between phases.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// Shown in failure messages.
    pub name: &'static str,
    /// false: every response carries `Connection: close` and the proxy
    /// closes after it (phase 1). true: HTTP/1.1 connections persist,
    /// pipelined requests are answered in order, `--idle-timeout` applies.
    pub keep_alive: bool,
    /// false: CONNECT gets 501 in forward mode (phase 1). true: tunnel.
    pub connect_tunnel: bool,
    /// false: one exchange at a time (phase 1). true: a stuck upstream does
    /// not delay other clients.
    pub concurrent: bool,
}

impl Profile {
    /// Phase 1: one thread, one connection at a time, close after each response.
    pub const PHASE1: Profile = Profile {
        name: "phase1",
        keep_alive: false,
        connect_tunnel: false,
        concurrent: false,
    };

    /// Phases 2-4: keep-alive, CONNECT tunnels, concurrent exchanges.
    pub const FULL: Profile = Profile {
        name: "full",
        keep_alive: true,
        connect_tunnel: true,
        concurrent: true,
    };
}

/// One phase's binary and profile: what every case receives.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Path of the proxy binary (`env!("CARGO_BIN_EXE_...")`).
    pub bin: PathBuf,
    pub profile: Profile,
}

impl Suite {
    pub fn new(bin: impl Into<PathBuf>, profile: Profile) -> Suite {
        Suite {
            bin: bin.into(),
            profile,
        }
    }

    /// An in-process origin with the default configuration, on port 0.
    #[track_caller]
    pub fn origin(&self) -> Origin {
        self.origin_with(OriginConfig::default())
    }

    /// An in-process origin with `config`, on port 0.
    #[track_caller]
    pub fn origin_with(&self, config: OriginConfig) -> Origin {
        Origin::start_with(config).unwrap_or_else(|e| panic!("cannot start the origin: {e}"))
    }

    /// The proxy in reverse mode (`--upstream` = the origin).
    #[track_caller]
    pub fn reverse(&self, origin: &Origin, extra_args: &[&str]) -> Proxy {
        self.reverse_to(origin.addr(), extra_args)
    }

    /// The proxy in reverse mode towards any address (e.g. one where
    /// nothing listens).
    #[track_caller]
    pub fn reverse_to(&self, upstream: SocketAddr, extra_args: &[&str]) -> Proxy {
        let mut args = vec!["--upstream".to_string(), upstream.to_string()];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        Proxy::spawn(&self.bin, &args)
    }

    /// The proxy in forward mode (no `--upstream`).
    #[track_caller]
    pub fn forward(&self, extra_args: &[&str]) -> Proxy {
        let args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        Proxy::spawn(&self.bin, &args)
    }

    /// Checks what follows a complete response `r` to an HTTP/1.1 request
    /// in reverse mode, per profile. Without keep-alive: the response said
    /// `Connection: close` and the connection ends with nothing more. With
    /// keep-alive: the response did not say close, and the connection
    /// carries another exchange, which proves the previous body was framed
    /// exactly (one byte too many or too few and the next status line would
    /// not parse).
    #[track_caller]
    pub fn check_connection_after(&self, c: &mut Client, r: &Response) {
        if self.profile.keep_alive {
            c.check(
                !r.says_close(),
                format_args!(
                    "{} profile: the response must not say Connection: close",
                    self.profile.name
                ),
            );
            c.send(b"GET /bytes/7 HTTP/1.1\r\nHost: origin.test\r\n\r\n");
            let next = c.read_response();
            c.check_eq(
                next.status,
                200,
                "status of a second exchange on the same connection",
            );
            c.check_bytes(
                &next.body,
                &origin::pattern(7),
                "body of the second exchange",
            );
        } else {
            c.check(
                r.says_close(),
                format_args!(
                    "{} profile: every response must say Connection: close",
                    self.profile.name
                ),
            );
            c.expect_close();
        }
    }
}

/// Expands to one `#[test]` per conformance case for a proxy binary and a
/// [`Profile`]:
///
/// ```text
/// testkit::conformance_suite!(env!("CARGO_BIN_EXE_phase1-blocking"), testkit::Profile::PHASE1);
/// ```
///
/// Tests are grouped by topic into modules named like the modules of
/// [`cases`]; each test calls the case function of the same name.
#[macro_export]
macro_rules! conformance_suite {
    ($bin:expr, $profile:expr $(,)?) => {
        fn __testkit_suite() -> $crate::Suite {
            $crate::Suite::new($bin, $profile)
        }
        $crate::__conformance_cases! {
            bodies {
                get_empty_body_is_byte_identical,
                get_1kib_body_is_byte_identical,
                get_1mib_body_is_byte_identical,
                get_8mib_body_is_byte_identical,
                head_response_has_headers_but_no_body,
                status_204_has_no_body,
                status_304_with_content_length_has_no_body_and_does_not_hang,
                statuses_201_404_503_pass_through_with_their_bodies,
                chunked_upstream_body_reaches_http11_client_intact,
                chunked_upstream_body_with_trailers_reaches_client_intact,
                chunked_upstream_body_reaches_http10_client_unchunked_then_closes,
                close_delimited_upstream_body_reaches_client_intact,
            }
            uploads {
                content_length_upload_of_8mib_reaches_upstream_intact,
                chunked_upload_of_8mib_in_16kib_chunks_reaches_upstream_intact,
                chunked_upload_of_8mib_in_varied_chunks_reaches_upstream_intact,
                expect_100_continue_gets_interim_response_before_body_is_sent,
                expect_100_continue_rejected_by_upstream_gets_final_417_without_body,
                chunk_extensions_and_trailers_are_not_forwarded,
            }
            forwarding {
                methods_are_forwarded_as_given,
                hop_by_hop_request_fields_are_removed,
                end_to_end_request_fields_are_kept_in_order,
                via_is_appended_to_the_request,
                x_forwarded_for_is_set_to_the_client_ip,
                x_forwarded_for_is_appended_to_an_existing_value,
                path_and_query_are_forwarded_byte_exact,
                hop_by_hop_response_fields_are_removed_and_via_added,
                http10_request_without_host_gets_the_upstreams_host,
                connection_header_cannot_remove_host,
            }
            modes {
                forward_absolute_form_goes_to_its_host_with_host_rebuilt,
                forward_origin_form_gets_400_explaining_absolute_form,
                forward_unresolvable_host_gets_502,
                connect_follows_profile,
                connect_tunnel_carries_8mib_each_way_per_profile,
                connect_tunnel_passes_client_half_close_per_profile,
                reverse_connect_gets_405,
                reverse_absolute_form_goes_to_the_upstream,
            }
            persistence {
                sequential_requests_follow_keep_alive_profile,
                pipelined_requests_follow_keep_alive_profile,
                http10_connection_closes_unless_keep_alive_requested,
                idle_connection_is_closed_after_idle_timeout,
            }
            bad_input {
                content_length_with_transfer_encoding_gets_400,
                two_different_content_lengths_get_400,
                content_length_list_gets_400,
                content_length_with_plus_sign_gets_400,
                hex_content_length_gets_400,
                overflowing_content_length_gets_400,
                whitespace_before_colon_gets_400,
                obs_fold_gets_400,
                transfer_encoding_not_ending_in_chunked_gets_400,
                unknown_transfer_coding_gets_501,
                transfer_encoding_chunked_twice_gets_400,
                overflowing_chunk_size_gets_400,
                chunk_size_with_plus_sign_gets_400,
                chunk_size_with_minus_sign_gets_400,
                bare_lf_after_chunk_size_gets_400,
                empty_chunk_size_line_gets_400,
                missing_host_on_http11_gets_400,
                two_host_fields_get_400,
                nul_in_field_value_gets_400,
                bare_cr_in_field_value_gets_400,
                whitespace_line_after_request_line_gets_400,
                oversized_head_gets_431,
                overlong_target_gets_414,
                http2_version_gets_505,
                random_bytes_get_400,
                request_line_inside_content_length_body_is_body,
                empty_line_flood_before_a_head_gets_431_and_next_client_is_served,
                more_than_128_header_fields_get_431,
                refused_expect_100_body_is_never_parsed_as_a_request,
            }
            upstream_faults {
                refused_upstream_gets_502,
                silent_upstream_gets_504_after_upstream_timeout,
                malformed_upstream_response_gets_502,
                upstream_reset_gets_502,
                truncated_upstream_body_never_looks_complete,
                truncated_chunked_upstream_body_has_no_last_chunk,
                interim_response_flood_ends_in_504_or_502,
                truncated_chunked_body_to_http10_client_ends_in_a_reset,
                upstream_reset_mid_body_is_a_reset_for_http10_client,
                upstream_reset_mid_body_never_looks_complete_to_http11_client,
            }
            robustness {
                vanishing_clients_do_not_stop_the_proxy,
                partial_head_gets_408_or_close_after_header_timeout,
                silent_connection_is_closed_after_header_timeout,
            }
            concurrency {
                slow_exchange_follows_concurrency_profile,
            }
            lifecycle {
                sigterm_lets_in_flight_exchange_finish_then_exits_0,
                access_log_writes_one_line_per_exchange,
            }
            resources {
                file_descriptors_return_to_baseline_after_1000_exchanges,
                rss_stays_flat_across_repeated_64mib_transfers,
                slowloris_blocks_phase1_until_header_timeout,
            }
            cli {
                unknown_flag_exits_2_with_message,
                non_numeric_timeout_exits_2,
                help_mentions_every_flag,
                listen_port_0_prints_bound_address,
            }
        }
    };
}

/// Implementation detail of [`conformance_suite!`]: one module per topic,
/// one `#[test]` per case.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($( $topic:ident { $( $case:ident ),* $(,)? } )*) => {
        $(
            mod $topic {
                $(
                    #[test]
                    fn $case() {
                        $crate::cases::$topic::$case(&super::__testkit_suite());
                    }
                )*
            }
        )*
    };
}

/// Expands to one `#[test]` per scaling case for a proxy binary and a
/// [`Scale`], in a module `scaling` (so it can share a file with
/// [`conformance_suite!`], though a file of its own, `tests/scaling.rs`,
/// keeps the two runs apart):
///
/// ```text
/// testkit::scaling_suite!(env!("CARGO_BIN_EXE_phase3-epoll"), testkit::Scale::EVENT_LOOP);
/// ```
///
/// Tests are named `scaling::TOPIC::CASE` after the modules of
/// [`scaling`]; each calls the case function of the same name.
#[macro_export]
macro_rules! scaling_suite {
    ($bin:expr, $scale:expr $(,)?) => {
        fn __testkit_scaling_suite() -> $crate::ScalingSuite {
            $crate::ScalingSuite::new($bin, $scale)
        }
        $crate::__scaling_cases! {
            pooling {
                upstream_connections_are_reused,
                stale_pooled_connection_is_never_a_502,
            }
            backpressure {
                slow_reader_does_not_make_the_proxy_buffer,
                connect_tunnel_survives_slow_directions,
            }
            capacity {
                many_concurrent_keep_alive_connections,
                over_max_connections_new_clients_get_503_or_wait,
            }
            lifecycle {
                shutdown_finishes_in_flight_refuses_new_and_exits_0,
                shutdown_under_load_completes_started_responses,
            }
            resources {
                slowloris_is_cut_by_header_timeout_and_others_are_served,
            }
        }
    };
}

/// Implementation detail of [`scaling_suite!`]: a module `scaling` with one
/// module per topic, one `#[test]` per case.
#[doc(hidden)]
#[macro_export]
macro_rules! __scaling_cases {
    ($( $topic:ident { $( $case:ident ),* $(,)? } )*) => {
        mod scaling {
            $(
                mod $topic {
                    $(
                        #[test]
                        fn $case() {
                            $crate::scaling::$topic::$case(&super::super::__testkit_scaling_suite());
                        }
                    )*
                }
            )*
        }
    };
}
