//! How fast the streaming body framer crosses a body, in bytes per second.
//!
//! A relay calls `BodyFramer::advance` on every read to learn how much of
//! it is body. Content-Length bodies are crossed in one step per read;
//! chunked bodies walk every framing byte through a small state machine
//! (chunk-size lines, CRLFs) while data runs are skipped in bulk, so the
//! cost depends on how many chunks there are: 64-byte chunks are the worst
//! realistic case, 8 KiB chunks the usual one (the origin's default).
//!
//! `cargo bench -p proxy-core --bench chunked_framer`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use proxy_core::framing::{BodyFramer, BodyKind};

const BODY: usize = 1024 * 1024;
/// Reads of this size, like a relay's buffer.
const READ: usize = 16 * 1024;

/// `BODY` bytes of payload as a chunked body with `chunk`-byte chunks.
fn chunked(chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(BODY + BODY / chunk * 8 + 16);
    let mut left = BODY;
    while left > 0 {
        let n = left.min(chunk);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend(std::iter::repeat_n(b'x', n));
        out.extend_from_slice(b"\r\n");
        left -= n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Feeds `body` to a framer in `READ`-sized pieces, as a relay would.
fn cross(kind: BodyKind, body: &[u8]) -> u64 {
    let mut framer = BodyFramer::new(kind);
    for piece in body.chunks(READ) {
        let advance = framer.advance(black_box(piece)).expect("a valid body");
        black_box(advance.consumed);
    }
    assert!(framer.is_done());
    framer.data_seen()
}

fn framer(c: &mut Criterion) {
    let mut group = c.benchmark_group("body_framer");

    let plain = vec![b'x'; BODY];
    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("content_length", "1MiB"),
        &plain,
        |b, body| b.iter(|| cross(BodyKind::Length(BODY as u64), body)),
    );

    for chunk in [64usize, 8192] {
        let body = chunked(chunk);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("chunked", format!("1MiB_in_{chunk}B_chunks")),
            &body,
            |b, body| b.iter(|| cross(BodyKind::Chunked, body)),
        );
    }
    group.finish();
}

criterion_group!(benches, framer);
criterion_main!(benches);
