//! Notification delivery to subscribers' callbacks: ferry's shared MEC producer mechanism
//! (`mec_http::notify`: a queue and worker per subscription, in order, with retries).

pub use mec_http::notify::*;
