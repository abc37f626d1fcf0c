//! A small client of `ferry control`'s MEC 010-2 API, for the CLI (`ferry control onboard`,
//! `ferry control instantiate`) and for programs such as the demo: build a package in ferry's
//! layout, onboard it, create and instantiate an instance.

use serde_json::{json, Value};
use sha2::Digest;

/// A refused or failed call; the text is the answer's ProblemDetails detail.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("ferry control at {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{what} refused ({status}): {detail}")]
    Refused {
        what: String,
        status: u16,
        detail: String,
    },
    #[error("cannot build the package: {0}")]
    Package(String),
}

/// Builds package content in ferry's layout: a tar with `appd.json` and `image.tar` (or
/// `image.tar.gz` when the archive is gzip-compressed).
pub fn build_package(appd: &Value, image: &[u8]) -> Result<Vec<u8>, ClientError> {
    let appd = serde_json::to_vec_pretty(appd).map_err(|e| ClientError::Package(e.to_string()))?;
    let image_name = if image.starts_with(&[0x1f, 0x8b]) {
        "image.tar.gz"
    } else {
        "image.tar"
    };
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [("appd.json", appd.as_slice()), (image_name, image)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data)
            .map_err(|e| ClientError::Package(e.to_string()))?;
    }
    b.into_inner()
        .map_err(|e| ClientError::Package(e.to_string()))
}

/// Where to instantiate.
#[derive(Debug, Clone)]
pub enum Placement {
    /// On this MEC host.
    Host(String),
    /// On the host serving this UE (IPv4 address).
    Ue(String),
}

/// The client: a base URL (`http://ADDR:PORT`) and an HTTP client.
pub struct ControlClient {
    base: String,
    http: reqwest::Client,
}

impl ControlClient {
    /// Over plain HTTP (a control plane on loopback without TLS).
    pub fn new(base: &str) -> ControlClient {
        ControlClient::with_tls(base, None)
    }

    /// With the operator's client configuration (`https://` control planes).
    pub fn with_tls(
        base: &str,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> ControlClient {
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(600));
        if let Some(tls) = tls {
            b = b.use_preconfigured_tls((*tls).clone());
        }
        ControlClient {
            base: base.trim_end_matches('/').to_string(),
            // A client with a given TLS configuration and no proxy settings has no failing input.
            http: b.build().unwrap_or_else(|_| reqwest::Client::new()),
        }
    }

    /// Registers an OAuth client with `scopes`; the answer carries its secret (shown once).
    pub async fn register_client(&self, id: &str, scopes: &[String]) -> Result<Value, ClientError> {
        self.call(
            "client registration",
            self.http
                .post(format!("{}/ferry/control/v1/clients", self.base))
                .json(&json!({"clientId": id, "scopes": scopes})),
        )
        .await
    }

    /// A one-time login link to the dashboard (the full URL, on this client's base).
    pub async fn dashboard_link(&self) -> Result<(String, u64), ClientError> {
        let v = self
            .call(
                "dashboard login link",
                self.http
                    .post(format!("{}{}", self.base, crate::dashboard::LINKS_PATH)),
            )
            .await?;
        let link: crate::dashboard::LoginLink =
            serde_json::from_value(v).map_err(|e| ClientError::Refused {
                what: "dashboard login link".into(),
                status: 200,
                detail: format!("unexpected answer: {e}"),
            })?;
        Ok((format!("{}{}", self.base, link.path), link.expires_in_s))
    }

    /// Tells control what a client of the app saw of relocation `id`.
    pub async fn client_downtime(&self, id: &str, ms: u64) -> Result<(), ClientError> {
        self.call(
            "client downtime",
            self.http
                .put(format!(
                    "{}/ferry/control/v1/relocations/{id}/client_downtime",
                    self.base
                ))
                .json(&crate::controller::ClientDowntime { downtime_ms: ms }),
        )
        .await
        .map(|_| ())
    }

    pub async fn clients(&self) -> Result<Value, ClientError> {
        self.call(
            "client list",
            self.http
                .get(format!("{}/ferry/control/v1/clients", self.base)),
        )
        .await
    }

    pub async fn remove_client(&self, id: &str) -> Result<(), ClientError> {
        self.call(
            "client removal",
            self.http
                .delete(format!("{}/ferry/control/v1/clients/{id}", self.base)),
        )
        .await
        .map(|_| ())
    }

    async fn call(&self, what: &str, req: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(ClientError::Refused {
            what: what.to_string(),
            status: status.as_u16(),
            detail: body["detail"].as_str().map(str::to_string).unwrap_or(text),
        })
    }

    /// Creates a package for `appd` and uploads `image` with it; returns the `AppPkgInfo`.
    pub async fn onboard(&self, appd: &Value, image: &[u8]) -> Result<Value, ClientError> {
        let content = build_package(appd, image)?;
        let hash = hex::encode(sha2::Sha256::digest(&content));
        let name = appd["appName"].as_str().unwrap_or("app");
        let version = appd["appSoftVersion"].as_str().unwrap_or("1");
        let created = self
            .call(
                "package creation",
                self.http
                    .post(format!("{}/app_pkgm/v1/app_packages", self.base))
                    .json(&json!({"appPkgName": name, "appPkgVersion": version,
                        "appProvider": appd["appProvider"],
                        "checksum": {"algorithm": "SHA-256", "hash": hash}})),
            )
            .await?;
        let id = created["id"].as_str().unwrap_or_default().to_string();
        self.call(
            "package upload",
            self.http
                .put(format!(
                    "{}/app_pkgm/v1/app_packages/{id}/package_content",
                    self.base
                ))
                .header("content-type", "application/x-tar")
                .body(content),
        )
        .await?;
        self.call(
            "package read",
            self.http
                .get(format!("{}/app_pkgm/v1/app_packages/{id}", self.base)),
        )
        .await
    }

    /// Every relocation record (`/ferry/control/v1/relocations`).
    pub async fn relocations(&self) -> Result<Value, ClientError> {
        self.call(
            "relocation list",
            self.http
                .get(format!("{}/ferry/control/v1/relocations", self.base)),
        )
        .await
    }

    /// Settles a relocation that needs an operator; returns the source host's migration view.
    pub async fn settle(
        &self,
        relocation: &str,
        req: &ferry_wire::migration::SettleRequest,
    ) -> Result<Value, ClientError> {
        self.call(
            "settle",
            self.http
                .post(format!(
                    "{}/ferry/control/v1/relocations/{relocation}/settle",
                    self.base
                ))
                .json(req),
        )
        .await
    }

    /// Creates an instance of `app_d_id` and instantiates it; returns the `AppInstanceInfo`.
    pub async fn instantiate(
        &self,
        app_d_id: &str,
        name: Option<&str>,
        placement: &Placement,
    ) -> Result<Value, ClientError> {
        let mut req = json!({"appDId": app_d_id});
        if let Some(n) = name {
            req["appInstanceName"] = json!(n);
        }
        let created = self
            .call(
                "instance creation",
                self.http
                    .post(format!("{}/app_lcm/v1/app_instances", self.base))
                    .json(&req),
            )
            .await?;
        let id = created["id"].as_str().unwrap_or_default().to_string();
        let body = match placement {
            Placement::Host(h) => {
                json!({"selectedMECHostInfo": [{"hostName": h, "hostId": {"name": h}}]})
            }
            Placement::Ue(ip) => {
                json!({"ferryAssociateId": {"type": "UE_IPv4_ADDRESS", "value": ip}})
            }
        };
        self.call(
            "instantiation",
            self.http
                .post(format!(
                    "{}/app_lcm/v1/app_instances/{id}/instantiate",
                    self.base
                ))
                .json(&body),
        )
        .await?;
        self.call(
            "instance read",
            self.http
                .get(format!("{}/app_lcm/v1/app_instances/{id}", self.base)),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_layout_names_gzip_images() {
        let appd = json!({"appDId": "x"});
        for (image, name) in [
            (&b"plain"[..], "image.tar"),
            (&[0x1f, 0x8b, 8][..], "image.tar.gz"),
        ] {
            let p = build_package(&appd, image).unwrap();
            let mut a = tar::Archive::new(p.as_slice());
            let names: Vec<String> = a
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().display().to_string())
                .collect();
            assert_eq!(names, ["appd.json", name]);
        }
    }
}
