//! The client side of the `ferry host` API (`/ferry/v1`): what the orchestrator asks of a MEC
//! host. Onboarding pushes images, instantiation creates and starts containers, terminate
//! stops and deletes them.

use std::collections::BTreeMap;
use std::time::Duration;

/// Errors talking to a MEC host; the text names the host and what it answered.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("no MEC host named '{0}' (known: {1})")]
    Unknown(String, String),
    #[error("MEC host '{host}' unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("MEC host '{host}' refused {what}: {status} {body}")]
    Refused {
        host: String,
        what: String,
        status: u16,
        body: String,
    },
}

/// What `POST /ferry/v1/containers` takes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub args: Option<Vec<String>>,
    pub env: Vec<String>,
    pub memory_mib: Option<u64>,
    pub cpus: Option<f64>,
    pub ip: String,
}

/// The known MEC hosts (name -> base URL) and one HTTP client for all of them.
#[derive(Clone)]
pub struct Hosts {
    urls: BTreeMap<String, String>,
    client: reqwest::Client,
}

impl Hosts {
    pub fn new(urls: BTreeMap<String, String>) -> Hosts {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            // Image uploads and container starts can take a while on a busy machine.
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Hosts { urls, client }
    }

    pub fn names(&self) -> Vec<String> {
        self.urls.keys().cloned().collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.urls.contains_key(name)
    }

    /// The base URL of a host (e.g. `http://10.0.0.1:7100`).
    pub fn url(&self, name: &str) -> Result<&str, HostError> {
        self.urls
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| HostError::Unknown(name.to_string(), self.names().join(", ")))
    }

    async fn call(
        &self,
        host: &str,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(), HostError> {
        let resp = req.send().await.map_err(|e| HostError::Unreachable {
            host: host.to_string(),
            reason: e.to_string(),
        })?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Err(HostError::Refused {
            host: host.to_string(),
            what: what.to_string(),
            status,
            body: body.chars().take(300).collect(),
        })
    }

    /// Imports an OCI image archive on a host under `name`, replacing an older one.
    /// `archive` is shared, not copied, between concurrent uploads.
    pub async fn upload_image(
        &self,
        host: &str,
        name: &str,
        archive: axum::body::Bytes,
    ) -> Result<(), HostError> {
        let url = format!("{}/ferry/v1/images", self.url(host)?);
        let req = self
            .client
            .post(url)
            .query(&[("name", name), ("replace", "true")])
            .header("content-type", "application/x-tar")
            .body(archive);
        self.call(host, &format!("image '{name}'"), req).await
    }

    pub async fn create(&self, host: &str, spec: &ContainerSpec) -> Result<(), HostError> {
        let url = format!("{}/ferry/v1/containers", self.url(host)?);
        let req = self.client.post(url).json(spec);
        self.call(host, &format!("container '{}'", spec.name), req)
            .await
    }

    pub async fn start(&self, host: &str, name: &str) -> Result<(), HostError> {
        self.action(host, name, "start").await
    }

    pub async fn stop(&self, host: &str, name: &str) -> Result<(), HostError> {
        self.action(host, name, "stop").await
    }

    async fn action(&self, host: &str, name: &str, verb: &str) -> Result<(), HostError> {
        let url = format!("{}/ferry/v1/containers/{name}/{verb}", self.url(host)?);
        let req = self.client.post(url);
        self.call(host, &format!("{verb} of '{name}'"), req).await
    }

    pub async fn delete(&self, host: &str, name: &str) -> Result<(), HostError> {
        let url = format!("{}/ferry/v1/containers/{name}", self.url(host)?);
        let req = self.client.delete(url);
        self.call(host, &format!("delete of '{name}'"), req).await
    }

    /// The shared client (for the relocation seam).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}
