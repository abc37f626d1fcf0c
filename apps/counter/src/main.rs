//! `ferry-counter`: the stateful workload for ferry's tests, demo and benchmarks.
//!
//! A small HTTP/1.1 server (`server.rs`, hyper; a static binary, so CRIU sees one plain
//! process and its container needs nothing else) that keeps
//! - a request counter,
//! - a ballast of N MiB of pseudo-random data, of which R MiB/s are rewritten by a background
//!   thread (the "dirty rate" that live migration has to chase),
//! - a checksum of the ballast that the writer keeps up to date incrementally, and
//! - its own start time.
//!
//! `GET /` answers `{"counter":..,"checksum":..,"started_at_ms":..,...}` cheaply, so a client can
//! poll every few milliseconds. `GET /verify` recomputes the checksum over the whole ballast and
//! says whether it still matches the maintained one: after a checkpoint/restore or a migration,
//! `ok:true` proves every page arrived intact, and an unchanged `started_at_ms` plus a counter
//! that continues prove the process was never restarted.
//!
//! Connections are kept alive (HTTP/1.1), so a client can hold one TCP connection open across
//! a checkpoint/restore and keep using it.
//!
//! With `MEC_API_ROOT` and `MEC_APP_INSTANCE_ID` in its environment it is also an ETSI MEC 021
//! application that relocates its own state (`mec.rs`): `POST /context` takes another
//! instance's user context (counter and ballast, `context.rs`) and replaces its own, and
//! `POST /mec/mobility_procedure` takes AMS notifications.

mod client;
mod context;
mod mec;
mod oauth;
mod server;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PAGE_WORDS: usize = 4096 / 8;

struct Options {
    ballast_mib: usize,
    dirty_mib_s: f64,
    port: u16,
}

fn usage() -> ! {
    eprintln!("usage: ferry-counter [--ballast-mib N] [--dirty-mib-s R] [--port P]");
    std::process::exit(2)
}

fn parse_options() -> Options {
    let mut opts = Options {
        ballast_mib: 0,
        dirty_mib_s: 0.0,
        port: 8080,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        let bad = |what: &str| -> ! {
            eprintln!("ferry-counter: {flag} takes {what}, got '{value}'");
            std::process::exit(2)
        };
        match flag.as_str() {
            "--ballast-mib" => opts.ballast_mib = value.parse().unwrap_or_else(|_| bad("MiB")),
            "--dirty-mib-s" => {
                opts.dirty_mib_s = value.parse().unwrap_or_else(|_| bad("MiB/s"));
                if !(opts.dirty_mib_s >= 0.0 && opts.dirty_mib_s.is_finite()) {
                    bad("a rate >= 0")
                }
            }
            "--port" => opts.port = value.parse().unwrap_or_else(|_| bad("a port")),
            _ => usage(),
        }
    }
    opts
}

/// splitmix64: fast, good enough to make the ballast incompressible and to mix checksums.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A word's contribution to the checksum depends on its position, so moved or zeroed pages
/// change the sum, and one word can be replaced in O(1).
fn term(index: usize, word: u64) -> u64 {
    mix(word ^ mix(index as u64))
}

struct Ballast {
    words: Vec<u64>,
    rng: u64,
}

impl Ballast {
    fn new(mib: usize, seed: u64) -> (Ballast, u64) {
        let n = mib * 1024 * 1024 / 8;
        let mut rng = seed;
        let mut words = Vec::with_capacity(n);
        let mut sum = 0u64;
        for i in 0..n {
            rng = mix(rng);
            words.push(rng);
            sum = sum.wrapping_add(term(i, rng));
        }
        (Ballast { words, rng }, sum)
    }

    fn checksum(&self) -> u64 {
        self.words
            .iter()
            .enumerate()
            .fold(0u64, |s, (i, &w)| s.wrapping_add(term(i, w)))
    }

    /// Rewrites one word in each of `pages` random pages; returns the checksum delta.
    fn dirty(&mut self, pages: usize, sum: u64) -> u64 {
        let n_pages = self.words.len() / PAGE_WORDS;
        if n_pages == 0 {
            return sum;
        }
        let mut sum = sum;
        for _ in 0..pages {
            self.rng = mix(self.rng);
            let page = (self.rng as usize) % n_pages;
            let i = page * PAGE_WORDS + (self.rng >> 32) as usize % PAGE_WORDS;
            let new = mix(self.rng ^ 0x5555);
            sum = sum
                .wrapping_sub(term(i, self.words[i]))
                .wrapping_add(term(i, new));
            self.words[i] = new;
        }
        sum
    }
}

struct State {
    counter: AtomicU64,
    checksum: AtomicU64,
    started_at_ms: u64,
    ballast_mib: AtomicUsize,
    dirty_mib_s: f64,
    ballast: Mutex<Ballast>,
    /// The user context was (or is being) handed to another instance: requests that would
    /// change it are refused. Readers hold it while they change the state, so a hand-off
    /// (the writer) starts from a state no request changes any more.
    frozen: RwLock<bool>,
    /// The ETSI MEC application role, when configured.
    mec: Option<mec::Mec>,
}

impl State {
    fn new(ballast_mib: usize, dirty_mib_s: f64, mec: Option<mec::Mec>) -> State {
        let started_at_ms = now_ms();
        let (ballast, checksum) = Ballast::new(ballast_mib, started_at_ms ^ 0x00fe_77e5);
        State {
            counter: AtomicU64::new(0),
            checksum: AtomicU64::new(checksum),
            started_at_ms,
            ballast_mib: AtomicUsize::new(ballast_mib),
            dirty_mib_s,
            ballast: Mutex::new(ballast),
            frozen: RwLock::new(false),
            mec,
        }
    }

    fn freeze(&self) {
        *self.frozen.write().unwrap_or_else(|e| e.into_inner()) = true;
    }

    fn resume(&self) {
        *self.frozen.write().unwrap_or_else(|e| e.into_inner()) = false;
    }

    fn frozen(&self) -> bool {
        *self.frozen.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Locks even if a panicking thread poisoned the mutex (the state stays consistent: the
/// checksum is written under the same lock as the words).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn dirtier(state: Arc<State>) {
    // Dirty pages in 10 ms ticks; carry fractions so low rates still add up.
    let pages_per_s = state.dirty_mib_s * 256.0;
    let tick = Duration::from_millis(10);
    let mut owed = 0.0f64;
    let mut last = Instant::now();
    loop {
        std::thread::sleep(tick);
        let now = Instant::now();
        owed += pages_per_s * now.duration_since(last).as_secs_f64();
        last = now;
        let pages = owed as usize;
        owed -= pages as f64;
        if pages == 0 || state.frozen() {
            continue;
        }
        let mut ballast = lock(&state.ballast);
        let sum = ballast.dirty(pages, state.checksum.load(Ordering::SeqCst));
        state.checksum.store(sum, Ordering::SeqCst);
    }
}

extern "C" fn on_term(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

fn main() {
    // As PID 1 of its container the kernel ignores SIGTERM unless a handler is installed:
    // without one every `stop` would wait for the grace period and SIGKILL.
    // SAFETY: installing a handler that only calls an async-signal-safe function.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
    let opts = parse_options();
    let state = Arc::new(State::new(
        opts.ballast_mib,
        opts.dirty_mib_s,
        mec::Mec::from_env(opts.port),
    ));
    if opts.dirty_mib_s > 0.0 {
        let s = state.clone();
        std::thread::spawn(move || dirtier(s));
    }
    let listener = match TcpListener::bind(("0.0.0.0", opts.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ferry-counter: cannot listen on port {}: {e}", opts.port);
            std::process::exit(1)
        }
    };
    eprintln!(
        "ferry-counter: listening on :{} with {} MiB ballast, {} MiB/s dirty",
        opts.port, opts.ballast_mib, opts.dirty_mib_s
    );
    // After the listener exists: AMS may call back as soon as the subscription is made.
    mec::start(state.clone());
    if let Err(e) = server::run(listener, state) {
        eprintln!("ferry-counter: cannot serve: {e}");
        std::process::exit(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_checksum_tracks_rewrites() {
        let (mut b, sum) = Ballast::new(1, 42);
        assert_eq!(sum, b.checksum());
        let sum2 = b.dirty(100, sum);
        assert_ne!(sum, sum2, "rewriting pages must change the checksum");
        assert_eq!(sum2, b.checksum());
    }

    #[test]
    fn a_lost_page_is_detected() {
        let (mut b, sum) = Ballast::new(1, 7);
        for w in &mut b.words[PAGE_WORDS..2 * PAGE_WORDS] {
            *w = 0;
        }
        assert_ne!(sum, b.checksum());
    }
}
