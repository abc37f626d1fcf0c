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

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::StatusCode;

use crate::{client, lock, term, State};

const MAGIC: &[u8; 8] = b"FRYCTX01";
const HEAD: u64 = 40;
/// Words per write.
const CHUNK: usize = 8192;
/// How long the sender retries a refused connection (the target instance may still start).
const PATIENCE: Duration = Duration::from_secs(20);

/// The context on the wire, read out of the (locked) ballast: the head, then the words.
struct Wire<'a> {
    head: &'a [u8],
    words: &'a [u64],
    buf: Vec<u8>,
    at: usize,
}

impl Read for Wire<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
            if !self.head.is_empty() {
                self.buf.extend_from_slice(self.head);
                self.head = &[];
            } else {
                let (now, rest) = self.words.split_at(self.words.len().min(CHUNK));
                for w in now {
                    self.buf.extend_from_slice(&w.to_le_bytes());
                }
                self.words = rest;
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

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
    let answer = client::post_stream(
        url,
        "application/octet-stream",
        len,
        PATIENCE,
        give_up,
        || Wire {
            head: &head,
            words,
            buf: Vec::with_capacity(CHUNK * 8),
            at: 0,
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
pub struct Refused(pub StatusCode, pub String);

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

fn bad(why: impl Into<String>) -> Refused {
    Refused(StatusCode::BAD_REQUEST, why.into())
}

/// Reads a context of `length` bytes from `body` and makes it this instance's state.
/// Nothing changes unless all of it arrived and its checksum holds.
pub async fn receive(state: &Arc<State>, mut body: Incoming, length: u64) -> Result<u64, Refused> {
    if length < HEAD || !(length - HEAD).is_multiple_of(8) {
        return Err(bad(format!(
            "a context is {HEAD} bytes plus 8 per word, not {length}"
        )));
    }
    let n = (length - HEAD) / 8;
    let mut head = Vec::with_capacity(HEAD as usize);
    // Into a new buffer: if the transfer breaks off, the current state stays as it was.
    let mut words: Vec<u64> = Vec::new();
    // A word split between two frames.
    let mut carry = Vec::with_capacity(8);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| bad(format!("the context broke off: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let mut data = &data[..];
        if head.len() < HEAD as usize {
            let take = (HEAD as usize - head.len()).min(data.len());
            head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if head.len() < HEAD as usize {
                continue;
            }
            if &head[..8] != MAGIC || u64_at(&head, 32) != n {
                return Err(bad("not a ferry-counter context (magic or length)"));
            }
            if words.try_reserve_exact(n as usize).is_err() {
                return Err(Refused(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("no memory for {n} ballast words"),
                ));
            }
        }
        if !carry.is_empty() {
            let take = (8 - carry.len()).min(data.len());
            carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if carry.len() == 8 {
                words.push(u64_at(&carry, 0));
                carry.clear();
            }
        }
        let whole = data.chunks_exact(8);
        carry.extend_from_slice(whole.remainder());
        words.extend(whole.map(|b| u64_at(b, 0)));
        if words.len() as u64 > n {
            return Err(bad("more ballast words than the head says"));
        }
    }
    if head.len() < HEAD as usize || words.len() as u64 != n || !carry.is_empty() {
        return Err(bad("the context is cut off"));
    }
    let (counter, checksum, rng) = (u64_at(&head, 8), u64_at(&head, 16), u64_at(&head, 24));
    // Recomputing and installing 100s of MiB is CPU work: off the async threads.
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let computed = words
            .iter()
            .enumerate()
            .fold(0u64, |s, (i, &w)| s.wrapping_add(term(i, w)));
        if computed != checksum {
            return Err(Refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("ballast checksum {computed:016x} does not match the sent {checksum:016x}"),
            ));
        }
        let mut ballast = lock(&state.ballast);
        ballast.words = words;
        ballast.rng = rng;
        state.checksum.store(checksum, Ordering::SeqCst);
        state.counter.store(counter, Ordering::SeqCst);
        state
            .ballast_mib
            .store(n as usize * 8 / (1024 * 1024), Ordering::SeqCst);
        Ok(length)
    })
    .await
    .unwrap_or_else(|_| {
        Err(Refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "installing the context failed".into(),
        ))
    })
}
