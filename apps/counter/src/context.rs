//! The counter's user context on the wire: what one instance hands to another when the app
//! relocates itself (ETSI MEC 021, application-driven). `POST /context` with
//! `application/octet-stream`:
//!
//! ```text
//! "FRYCTX01" | counter | checksum | rng | n | n ballast words      (all u64 little-endian)
//! ```
//!
//! The receiver recomputes the ballast's checksum and refuses a context whose sum does not
//! match, so a damaged transfer is never taken for state.

use crate::http;
use crate::{lock, term, State};
use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::time::Duration;

const MAGIC: &[u8; 8] = b"FRYCTX01";
const HEAD: u64 = 40;
/// Words per read or write.
const CHUNK: usize = 8192;

/// Sends this instance's context to `url` (another instance's `/context`), retrying the
/// connection for a while (the target instance may still be starting) unless `give_up`.
/// Holds the ballast lock while sending, so the context sent is one consistent state.
/// Returns the bytes sent.
pub fn send(state: &State, url: &str, give_up: &dyn Fn() -> bool) -> Result<u64, String> {
    let ballast = lock(&state.ballast);
    let words = &ballast.words;
    let len = HEAD + 8 * words.len() as u64;
    let mut head = Vec::with_capacity(HEAD as usize);
    head.extend_from_slice(MAGIC);
    for v in [
        state.counter.load(Ordering::SeqCst),
        state.checksum.load(Ordering::SeqCst),
        ballast.rng,
        words.len() as u64,
    ] {
        head.extend_from_slice(&v.to_le_bytes());
    }
    let answer = http::send(
        "POST",
        url,
        Some("application/octet-stream"),
        len,
        Duration::from_secs(20),
        give_up,
        |w| {
            w.write_all(&head)?;
            let mut buf = Vec::with_capacity(CHUNK * 8);
            for chunk in words.chunks(CHUNK) {
                buf.clear();
                for word in chunk {
                    buf.extend_from_slice(&word.to_le_bytes());
                }
                w.write_all(&buf)?;
            }
            Ok(())
        },
    )?;
    if answer.status / 100 != 2 {
        return Err(format!(
            "{url} answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    Ok(len)
}

/// Why a received context was refused: the HTTP status and the reason.
pub struct Refused(pub &'static str, pub String);

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Reads a context of `length` bytes from `r` and makes it this instance's state. Nothing
/// changes unless all of it arrived and its checksum holds. An I/O error means the
/// connection is unusable.
pub fn receive(
    state: &State,
    r: &mut impl BufRead,
    length: u64,
) -> std::io::Result<Result<u64, Refused>> {
    if length < HEAD || !(length - HEAD).is_multiple_of(8) {
        return Ok(Err(Refused(
            "400 Bad Request",
            format!("a context is {HEAD} bytes plus 8 per word, not {length}"),
        )));
    }
    let mut head = [0u8; HEAD as usize];
    r.read_exact(&mut head)?;
    let (counter, checksum, rng, n) = (
        u64_at(&head, 8),
        u64_at(&head, 16),
        u64_at(&head, 24),
        u64_at(&head, 32),
    );
    if &head[..8] != MAGIC || n != (length - HEAD) / 8 {
        return Ok(Err(Refused(
            "400 Bad Request",
            "not a ferry-counter context (magic or length)".to_string(),
        )));
    }
    // Into a new buffer: if the transfer breaks off, the current state stays as it was.
    let mut words: Vec<u64> = Vec::new();
    if words.try_reserve_exact(n as usize).is_err() {
        return Ok(Err(Refused(
            "413 Content Too Large",
            format!("no memory for {n} ballast words"),
        )));
    }
    let mut buf = vec![0u8; CHUNK * 8];
    let mut left = n as usize;
    while left > 0 {
        let take = left.min(CHUNK);
        r.read_exact(&mut buf[..take * 8])?;
        words.extend(buf[..take * 8].chunks_exact(8).map(|b| u64_at(b, 0)));
        left -= take;
    }
    let computed = words
        .iter()
        .enumerate()
        .fold(0u64, |s, (i, &w)| s.wrapping_add(term(i, w)));
    if computed != checksum {
        return Ok(Err(Refused(
            "422 Unprocessable Content",
            format!("ballast checksum {computed:016x} does not match the sent {checksum:016x}"),
        )));
    }
    let mut ballast = lock(&state.ballast);
    ballast.words = words;
    ballast.rng = rng;
    state.checksum.store(checksum, Ordering::SeqCst);
    state.counter.store(counter, Ordering::SeqCst);
    state
        .ballast_mib
        .store(n as usize * 8 / (1024 * 1024), Ordering::SeqCst);
    Ok(Ok(length))
}
