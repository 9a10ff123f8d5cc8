//! Fuzz target: the chunked body framer, fed arbitrary bytes in arbitrary
//! reads.
//!
//! Input layout: the first byte `k` (mod 8) says how many read sizes follow;
//! the next `k` bytes are those sizes (each 1..=256, cycled); the rest is
//! the stream. `k = 0` delivers the stream in one read.
//!
//! Checked, for every call: `consumed` within the input, `data` within
//! `consumed`, progress on non-empty input until the body is done, nothing
//! consumed after the end, an error that sticks. Across calls: the verdict
//! (data, bytes consumed, done, or the error) does not depend on how the
//! stream was split, and `step` and `advance` agree. A body that decoded is
//! re-chunked and decodes to the same data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_core::framing::{CHUNK_END, FramingError, LAST_CHUNK, chunk_size_line};
use proxy_core::{BodyFramer, BodyKind};

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 8).min(rest.len());
    let (sizes, stream) = rest.split_at(k);
    let reads = split(stream, sizes);

    let split_verdict = decode(&reads);
    let whole_verdict = decode(&[stream]);
    assert_eq!(
        split_verdict, whole_verdict,
        "the verdict depends on the split"
    );
    assert_eq!(
        advance(&reads),
        split_verdict
            .as_ref()
            .map(|d| (d.consumed, d.done))
            .map_err(Clone::clone)
    );

    if let Ok(Decoded {
        data: payload,
        done: true,
        ..
    }) = &split_verdict
    {
        let mut rechunked = Vec::new();
        for chunk in payload.chunks(sizes.first().map_or(1000, |&s| usize::from(s) + 1)) {
            rechunked.extend_from_slice(chunk_size_line(chunk.len()).as_bytes());
            rechunked.extend_from_slice(chunk);
            rechunked.extend_from_slice(CHUNK_END);
        }
        rechunked.extend_from_slice(LAST_CHUNK);
        let again = decode(&[&rechunked]);
        assert_eq!(
            again,
            Ok(Decoded {
                data: payload.clone(),
                consumed: rechunked.len(),
                done: true,
                finish: Ok(()),
            })
        );
    }
});

/// `stream` cut into reads of `sizes` (each byte + 1), cycled.
fn split<'a>(stream: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![stream];
    }
    let mut reads = Vec::new();
    let mut rest = stream;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, tail) = rest.split_at((usize::from(size) + 1).min(rest.len()));
        reads.push(read);
        rest = tail;
    }
    reads
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Decoded {
    data: Vec<u8>,
    consumed: usize,
    done: bool,
    /// What `finish` said when the peer "closed" after the last read.
    finish: Result<(), FramingError>,
}

/// Decodes `reads` with `step`, checking the step contract on every call.
fn decode(reads: &[&[u8]]) -> Result<Decoded, FramingError> {
    let mut framer = BodyFramer::new(BodyKind::Chunked);
    let mut out = Decoded {
        data: Vec::new(),
        consumed: 0,
        done: false,
        finish: Ok(()),
    };
    for read in reads {
        let mut rest = *read;
        loop {
            let was_done = framer.is_done();
            let step = match framer.step(rest) {
                Ok(step) => step,
                Err(error) => {
                    assert!(!matches!(error, FramingError::Truncated { .. }));
                    assert_eq!(framer.step(b"0\r\n\r\n"), Err(error.clone()));
                    assert_eq!(framer.finish(), Err(error.clone()));
                    assert!(!framer.is_done());
                    return Err(error);
                }
            };
            assert!(step.consumed <= rest.len());
            assert!(step.data.start <= step.data.end && step.data.end <= step.consumed);
            assert_eq!(step.done, framer.is_done());
            if was_done {
                assert_eq!(step.consumed, 0, "consumed after the end of the body");
            }
            if step.consumed == 0 {
                assert!(rest.is_empty() || framer.is_done(), "no progress");
                break;
            }
            out.data.extend_from_slice(&rest[step.data.clone()]);
            out.consumed += step.consumed;
            rest = &rest[step.consumed..];
        }
    }
    out.done = framer.is_done();
    assert_eq!(framer.data_seen(), out.data.len() as u64);
    out.finish = framer.finish();
    match &out.finish {
        Ok(()) => assert!(out.done),
        Err(FramingError::Truncated { expected_more }) => {
            assert!(!out.done && *expected_more > 0)
        }
        Err(other) => panic!("finish after a clean decode gave {other:?}"),
    }
    Ok(out)
}

/// Relays `reads` with `advance`; returns (consumed, done).
fn advance(reads: &[&[u8]]) -> Result<(usize, bool), FramingError> {
    let mut framer = BodyFramer::new(BodyKind::Chunked);
    let mut consumed = 0;
    for read in reads {
        let advance = framer.advance(read)?;
        assert!(advance.consumed <= read.len());
        assert!(advance.done || advance.consumed == read.len());
        consumed += advance.consumed;
    }
    Ok((consumed, framer.is_done()))
}
