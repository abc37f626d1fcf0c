//! HTTP plumbing shared by ferry's HTTP servers: the ETSI MEC producers (the RAN's MEC
//! 012/013 and the control plane's MEC 010-2/011/021) and, for serving and error bodies, the
//! host API, so every API follows the same rules:
//!
//! - [`serve`]: the one accept loop (HTTP/1.1 header names in Title-Case, graceful shutdown);
//! - [`http`]: errors as ETSI `ProblemDetails` (axum's own rejections included), tolerant
//!   JSON body parsing (unknown attributes ignored), query parsing, the `Accept` check (406)
//!   and absolute self links;
//! - [`oauth`]: OAuth 2.0 access tokens (issued by control, verified by every producer) and
//!   the middleware that admits a request as a part (certificate) or a client (token);
//! - [`raw`]: a bare HTTP/1.1 client for tests that check the bytes of an answer;
//! - [`notify`]: notifications delivered to subscribers' callbacks, in order per key (a UE, an
//!   app instance) with several in flight, coalesced per key when a queue is full, a down
//!   subscriber paused and caught up; never blocking the API.

pub mod http;
pub mod notify;
pub mod oauth;
pub mod raw;
pub mod serve;
