//! The counter's OAuth 2.0 client (client credentials grant, RFC 6749 section 4.4): the
//! platform gives each app instance its own client in its environment (`MEC_CLIENT_ID`,
//! `MEC_CLIENT_SECRET`, `MEC_TOKEN_URL`); the token is fetched when first needed, kept until
//! shortly before it expires, and dropped when an API answers 401.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::{client, lock};

/// Fetch a new token this long before the old one expires (clock skew, a slow call).
const EARLY: Duration = Duration::from_secs(30);

pub struct Credentials {
    client_id: String,
    secret: String,
    token_url: String,
    cached: Mutex<Option<(String, Instant)>>,
}

impl Credentials {
    /// From the environment; `None` when the platform gave none (plain HTTP, no tokens).
    pub fn from_env() -> Option<Credentials> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Some(Credentials {
            client_id: var("MEC_CLIENT_ID")?,
            secret: var("MEC_CLIENT_SECRET")?,
            token_url: var("MEC_TOKEN_URL")?,
            cached: Mutex::new(None),
        })
    }

    /// A token that is good for a while yet.
    pub fn token(&self) -> Result<String, String> {
        if let Some((t, until)) = lock(&self.cached).as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.client_id, self.secret));
        let a = client::post_form(
            &self.token_url,
            &basic,
            &[("grant_type", "client_credentials")],
        )?;
        if a.status != 200 {
            return Err(format!(
                "token endpoint {} answered {}: {}",
                self.token_url,
                a.status,
                String::from_utf8_lossy(&a.body)
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&a.body)
            .map_err(|e| format!("token endpoint: unexpected answer: {e}"))?;
        let token = v["access_token"]
            .as_str()
            .ok_or("token endpoint: no access_token in the answer")?
            .to_string();
        let life = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(60));
        let until = Instant::now() + life.saturating_sub(EARLY);
        *lock(&self.cached) = Some((token.clone(), until));
        Ok(token)
    }

    /// The API refused the token (expired early, its client re-keyed): get a new one next.
    pub fn invalidate(&self) {
        *lock(&self.cached) = None;
    }
}
