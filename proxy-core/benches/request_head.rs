//! What one request head costs the proxy, without any I/O: parse and
//! validate it (`parse_request`), decide where it goes (`route`), and build
//! the head sent upstream (`upstream_request`). This is the per-exchange
//! work every phase shares; the load benchmarks (bench-harness) show what
//! the concurrency model adds on top.
//!
//! `cargo bench -p proxy-core --bench request_head`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use proxy_core::rewrite::upstream_request;
use proxy_core::target::{Authority, route};
use proxy_core::{Mode, Parsed, parse_request};

/// What wrk sends: the smallest realistic head.
const WRK: &[u8] = b"GET /bytes/1024 HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\n";

/// A browser-like head: a dozen fields, a cookie, hop-by-hop fields to strip
/// and Via / X-Forwarded-For to append to.
const BROWSER: &[u8] = b"GET /articles/2024/proxy-ladder?lang=en&page=2 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/articles/2024/\r\n\
Cookie: session=4f1c2d9e8a7b6c5d4e3f2a1b; theme=dark; consent=yes\r\n\
Connection: keep-alive, X-Trace\r\n\
X-Trace: 7d3f\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Via: 1.1 edge-cache\r\n\
X-Forwarded-For: 203.0.113.9\r\n\
Cache-Control: max-age=0\r\n\r\n";

const MAX_HEAD: usize = 16 * 1024;

fn request_head(c: &mut Criterion) {
    let upstream = Authority::parse("127.0.0.1:9000", None).expect("a valid authority");
    let mode = Mode::Reverse {
        upstream: upstream.clone(),
    };
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    let mut group = c.benchmark_group("request_head");
    for (name, head) in [("wrk", WRK), ("browser", BROWSER)] {
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse", name), head, |b, head| {
            b.iter(|| parse_request(black_box(head), MAX_HEAD))
        });
        group.bench_with_input(
            BenchmarkId::new("parse_route_rewrite", name),
            head,
            |b, head| {
                b.iter(|| {
                    let Ok(Parsed::Complete { head: request, .. }) =
                        parse_request(black_box(head), MAX_HEAD)
                    else {
                        panic!("the benchmark heads are complete and valid");
                    };
                    let route = route(&request, &mode).expect("reverse mode routes GET");
                    let out = upstream_request(&request, &upstream, client, true);
                    (route, out)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, request_head);
criterion_main!(benches);
