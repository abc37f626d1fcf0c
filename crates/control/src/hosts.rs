//! The MEC hosts the orchestrator manages: one typed client (`ferry-host-client`) per host,
//! by name. Onboarding pushes images, instantiation creates and starts containers, terminate
//! stops and deletes them, the relocation controller migrates them.

use std::collections::BTreeMap;

use ferry_host_client::HostClient;
pub use ferry_host_client::HostError;
use ferry_wire::container::{Container, ContainerRequest};
use ferry_wire::migration::{MigrateRequest, MigrationId, MigrationView, SettleRequest};

/// Errors talking to a MEC host; the text names the host and what it answered.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("no MEC host named '{0}' (known: {1})")]
    Unknown(String, String),
    #[error("MEC host '{host}': {source}")]
    Host { host: String, source: HostError },
}

impl HostsError {
    /// The host's own error, if it was asked at all.
    pub fn host_error(&self) -> Option<&HostError> {
        match self {
            HostsError::Host { source, .. } => Some(source),
            HostsError::Unknown(..) => None,
        }
    }
}

/// The known MEC hosts and one HTTP connection pool for all of them.
#[derive(Clone)]
pub struct Hosts {
    clients: BTreeMap<String, HostClient>,
}

impl Hosts {
    /// `urls`: name -> base URL. A URL that is not one fails here, at start. With `tls`
    /// (control's certificate, the operator's CA) every host is called over mutual TLS.
    pub fn new(
        urls: &BTreeMap<String, String>,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<Hosts, String> {
        let http = ferry_host_client::http_client(tls).map_err(|e| e.to_string())?;
        let mut clients = BTreeMap::new();
        for (name, url) in urls {
            let c = HostClient::with_http(url, http.clone())
                .map_err(|e| format!("host '{name}': {e}"))?;
            clients.insert(name.clone(), c);
        }
        Ok(Hosts { clients })
    }

    pub fn names(&self) -> Vec<String> {
        self.clients.keys().cloned().collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.clients.contains_key(name)
    }

    pub fn client(&self, name: &str) -> Result<&HostClient, HostsError> {
        self.clients
            .get(name)
            .ok_or_else(|| HostsError::Unknown(name.to_string(), self.names().join(", ")))
    }

    /// The base URL of a host (e.g. `http://10.0.0.1:7100`).
    pub fn url(&self, name: &str) -> Result<&str, HostsError> {
        self.client(name).map(HostClient::base)
    }

    fn tag<T>(host: &str, r: Result<T, HostError>) -> Result<T, HostsError> {
        r.map_err(|source| HostsError::Host {
            host: host.to_string(),
            source,
        })
    }

    /// Imports an OCI image archive on a host under `name`, replacing an older one.
    /// `archive` is shared, not copied, between concurrent uploads.
    pub async fn upload_image(
        &self,
        host: &str,
        name: &str,
        archive: axum::body::Bytes,
    ) -> Result<(), HostsError> {
        let c = self.client(host)?;
        Self::tag(host, c.upload_image(name, archive, true).await.map(|_| ()))
    }

    pub async fn create(&self, host: &str, req: &ContainerRequest) -> Result<(), HostsError> {
        let c = self.client(host)?;
        Self::tag(host, c.create(req).await.map(|_| ()))
    }

    pub async fn start(&self, host: &str, name: &str) -> Result<(), HostsError> {
        let c = self.client(host)?;
        Self::tag(host, c.start(name).await.map(|_| ()))
    }

    pub async fn stop(&self, host: &str, name: &str) -> Result<(), HostsError> {
        let c = self.client(host)?;
        Self::tag(host, c.stop(name).await.map(|_| ()))
    }

    pub async fn delete(&self, host: &str, name: &str) -> Result<(), HostsError> {
        let c = self.client(host)?;
        Self::tag(host, c.delete(name).await)
    }

    /// The container's record on `host`, `None` if the host has none.
    pub async fn find_container(
        &self,
        host: &str,
        name: &str,
    ) -> Result<Option<Container>, HostsError> {
        let c = self.client(host)?;
        Self::tag(host, c.find_container(name).await)
    }

    /// Starts a migration on the source host (202): its view as it began.
    pub async fn migrate(
        &self,
        source: &str,
        name: &str,
        req: &MigrateRequest,
    ) -> Result<MigrationView, HostsError> {
        let c = self.client(source)?;
        Self::tag(source, c.migrate(name, req).await)
    }

    /// The migration's record on `host`, `None` if the host has none of that id.
    pub async fn find_migration(
        &self,
        host: &str,
        id: &MigrationId,
    ) -> Result<Option<MigrationView>, HostsError> {
        let c = self.client(host)?;
        Self::tag(host, c.find_migration(id).await)
    }

    pub async fn settle(
        &self,
        host: &str,
        id: &MigrationId,
        req: &SettleRequest,
    ) -> Result<MigrationView, HostsError> {
        let c = self.client(host)?;
        Self::tag(host, c.settle(id, req).await)
    }
}
