//! The benchmark's client: a thread inside the client's network namespace that sends
//! `GET /` to the app every 5 ms (a fresh connection each time, 20 ms budget per request) and
//! records when each good reply arrived, on its own clock. Downtime is the longest gap
//! between consecutive good replies around the migration (DESIGN.md section 4).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PERIOD: Duration = Duration::from_millis(5);
pub const TIMEOUT: Duration = Duration::from_millis(20);

/// One good reply: when it arrived (ms since the probe's epoch) and what the app said.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub at_ms: f64,
    pub counter: u64,
    pub started_at_ms: u64,
}

/// A running client; [`Probe::stop`] returns every good reply in arrival order.
pub struct Probe {
    epoch: Instant,
    stop: Arc<AtomicBool>,
    replies: Arc<Mutex<Vec<Reply>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Probe {
    /// Starts polling `addr` from network namespace `netns`.
    pub fn start(netns: &str, addr: SocketAddr, epoch: Instant) -> anyhow::Result<Probe> {
        let path = ferry_runtime::net::netns_path(netns);
        let file = std::fs::File::open(&path)
            .map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(Mutex::new(Vec::new()));
        let (flag, out) = (stop.clone(), replies.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // The thread's sockets live in the client's namespace.
            let entered = nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET);
            let _ = ready_tx.send(entered.map_err(|e| e.to_string()));
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                if let Some(v) = get_once(addr, TIMEOUT) {
                    let reply = Reply {
                        at_ms: epoch.elapsed().as_secs_f64() * 1000.0,
                        counter: v["counter"].as_u64().unwrap_or(0),
                        started_at_ms: v["started_at_ms"].as_u64().unwrap_or(0),
                    };
                    if let Ok(mut r) = out.lock() {
                        r.push(reply);
                    }
                }
                next += PERIOD;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    // Late (a timeout): poll again at once, the next period from now.
                    next = now;
                }
            }
        });
        ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the client thread died"))?
            .map_err(|e| anyhow::anyhow!("cannot enter namespace {netns}: {e}"))?;
        Ok(Probe {
            epoch,
            stop,
            replies,
            thread: Some(thread),
        })
    }

    pub fn now_ms(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1000.0
    }

    /// When the latest good reply arrived.
    pub fn last_reply_ms(&self) -> Option<f64> {
        self.replies.lock().ok()?.last().map(|r| r.at_ms)
    }

    pub fn stop(mut self) -> Vec<Reply> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.replies.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `GET /` on a fresh connection within `budget`; the parsed JSON body, or None for any
/// failure (refused, timeout, malformed): the client only counts good replies.
pub fn get_once(addr: SocketAddr, budget: Duration) -> Option<Value> {
    let deadline = Instant::now() + budget;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    };
    let mut s = TcpStream::connect_timeout(&addr, left()?).ok()?;
    s.set_nodelay(true).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        s.set_read_timeout(Some(left()?)).ok()?;
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(body) = complete_body(&buf) {
            return serde_json::from_slice(body).ok();
        }
    }
    complete_body(&buf).and_then(|b| serde_json::from_slice(b).ok())
}

/// The body of a complete HTTP/1.1 200 response with Content-Length, else None.
fn complete_body(buf: &[u8]) -> Option<&[u8]> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    let len: usize = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })?;
    buf.get(end + 4..end + 4 + len)
}

/// What the client saw of one migration.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// Longest gap between consecutive good replies that ends after the trigger, in ms.
    pub downtime_ms: f64,
    /// The reply before and after that gap.
    pub before: Reply,
    pub after: Reply,
}

/// Downtime from the replies (arrival order) and the trigger time (same clock). The gap
/// considered: from the last good reply before the trigger onwards, each pair of
/// consecutive replies. None when there is no reply before or none after the trigger (the
/// app never answered, or never came back: the run failed).
pub fn downtime(replies: &[Reply], trigger_ms: f64) -> Option<Seen> {
    let first = replies.iter().rposition(|r| r.at_ms <= trigger_ms)?;
    let window = &replies[first..];
    window
        .windows(2)
        .map(|w| (w[1].at_ms - w[0].at_ms, &w[0], &w[1]))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(gap, before, after)| Seen {
            downtime_ms: gap,
            before: before.clone(),
            after: after.clone(),
        })
}

/// Checks that the app continued rather than restarted: one `started_at_ms` throughout, and
/// a counter that only grows. Returns why not.
pub fn continuity(replies: &[Reply]) -> Result<(), String> {
    let Some(first) = replies.first() else {
        return Err("no reply at all".into());
    };
    for w in replies.windows(2) {
        if w[1].started_at_ms != first.started_at_ms {
            return Err(format!(
                "started_at_ms changed {} -> {} at {:.0} ms: the app restarted",
                first.started_at_ms, w[1].started_at_ms, w[1].at_ms
            ));
        }
        if w[1].counter <= w[0].counter {
            return Err(format!(
                "counter went {} -> {} at {:.0} ms: state lost",
                w[0].counter, w[1].counter, w[1].at_ms
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(at_ms: f64, counter: u64) -> Reply {
        Reply {
            at_ms,
            counter,
            started_at_ms: 7,
        }
    }

    #[test]
    fn downtime_is_the_longest_gap_from_the_last_reply_before_the_trigger() {
        // A long gap before the trigger (a slow start) does not count.
        let replies = [
            r(0.0, 1),
            r(500.0, 2),
            r(505.0, 3),
            r(510.0, 4),
            r(900.0, 5),
            r(905.0, 6),
        ];
        let seen = downtime(&replies, 507.0).unwrap();
        assert_eq!(
            seen.downtime_ms, 390.0,
            "the 500 ms before the trigger is excluded"
        );
        assert_eq!((seen.before.counter, seen.after.counter), (4, 5));
        // Trigger between two replies: the gap spanning it counts.
        let seen = downtime(&replies, 600.0).unwrap();
        assert_eq!(seen.downtime_ms, 390.0);
        assert_eq!(seen.before.counter, 4);
    }

    #[test]
    fn no_reply_before_or_after_is_no_measurement() {
        assert!(downtime(&[], 10.0).is_none());
        assert!(downtime(&[r(20.0, 1), r(25.0, 2)], 10.0).is_none());
        assert!(downtime(&[r(5.0, 1)], 10.0).is_none(), "never came back");
    }

    #[test]
    fn continuity_catches_restart_and_lost_state() {
        assert!(continuity(&[r(0.0, 1), r(5.0, 2), r(300.0, 9)]).is_ok());
        assert!(continuity(&[r(0.0, 5), r(5.0, 1)])
            .unwrap_err()
            .contains("state lost"));
        let mut restarted = r(10.0, 6);
        restarted.started_at_ms = 8;
        assert!(continuity(&[r(0.0, 5), restarted])
            .unwrap_err()
            .contains("restarted"));
        assert!(continuity(&[]).is_err());
    }

    #[test]
    fn body_only_from_complete_200_responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(complete_body(ok), Some(&b"{}"[..]));
        assert_eq!(
            complete_body(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}"),
            None
        );
        assert_eq!(
            complete_body(b"HTTP/1.1 503 X\r\nContent-Length: 2\r\n\r\n{}"),
            None
        );
        assert_eq!(complete_body(b"HTTP/1.1 200 OK\r\n"), None);
    }
}
