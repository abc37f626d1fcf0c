//! HTTP plumbing shared by ferry's ETSI MEC API producers (the RAN's MEC 012/013 and the
//! control plane's MEC 010-2/011/021), so every API follows the same rules:
//!
//! - [`http`]: errors as ETSI `ProblemDetails`, strict JSON body and query parsing (a bad
//!   request is a 400 naming the field, never a panic or a silent default), the `Accept`
//!   check (406) and absolute self links;
//! - [`notify`]: notifications delivered to subscribers' callbacks, in order per subscriber,
//!   with retries, never blocking the API.

pub mod http;
pub mod notify;
