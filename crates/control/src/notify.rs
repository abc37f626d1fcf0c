//! Notification delivery to subscribers' callbacks: ferry's shared MEC producer mechanism
//! (`mec_http::notify`: a queue and worker per subscription, in order per key, several in
//! flight, paused and caught up while the subscriber is down).

pub use mec_http::notify::*;
