//! Notification delivery to subscribers' callbacks: ferry's shared MEC producer mechanism
//! (`mec_http::notify`: a queue and worker per subscription, in order per UE, several in
//! flight, coalesced per UE when full, paused and caught up while the subscriber is down).

pub use mec_http::notify::*;
