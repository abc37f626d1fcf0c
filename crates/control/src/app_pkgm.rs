//! MEC 010-2 application package management (`/app_pkgm/v1`): create a package resource,
//! upload its content, onboard it (the image goes to every MEC host), read its AppD, delete it.
//!
//! Package content (`PUT .../{appPkgId}/package_content`) is a tar archive (ferry's layout,
//! not the ETSI CSAR zip) with two members at its top level:
//! - `appd.json`: the AppD (JSON; the fields of `mec_api::app_pkgm::AppD`, ferry's extensions
//!   `ferryStateRelocation` and `ferryContainer` included);
//! - `image.tar` (or `image.tar.gz`): the app's OCI image archive, as `ferry image pack` makes.
//!
//! The package's `checksum` (algorithm `SHA-256`) is checked against the whole uploaded tar.
//! The image is imported on every host under the name `appDId`. The onboarded package is
//! kept as uploaded and served back (`GET .../package_content`, by appPkgId or appDId) as
//! `application/x-tar`.
//!
//! Subscriptions (`/subscriptions`) get an `AppPkgNotification` when a package is onboarded,
//! enabled or disabled (`PATCH app_packages/{id}`), or deleted.

use crate::filter::Filter;
use crate::http::{self, ApiError};
use crate::store::Table;
use crate::Control;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use mec_api::app_pkgm::*;
use sha2::Digest;
use std::io::Read;

/// Path prefix of this API.
pub const ROOT: &str = "/app_pkgm/v1";

/// Largest package content accepted (images of edge apps are tens of MiB).
const MAX_CONTENT: usize = 1 << 30;

pub(crate) fn routes() -> Router<Control> {
    Router::new()
        .route("/app_pkgm/v1/app_packages", get(list).post(create))
        .route(
            "/app_pkgm/v1/app_packages/{id}",
            get(read).delete(remove).patch(modify),
        )
        .route(
            "/app_pkgm/v1/subscriptions",
            get(list_subs).post(create_sub),
        )
        .route(
            "/app_pkgm/v1/subscriptions/{id}",
            get(read_sub).delete(delete_sub),
        )
        .route("/app_pkgm/v1/app_packages/{id}/appd", get(appd))
        .route(
            "/app_pkgm/v1/app_packages/{id}/package_content",
            // The limit wraps the handler, not the method router: a layered method router
            // answers 405 without its Allow header.
            axum::routing::put(axum::handler::Handler::layer(
                upload,
                axum::extract::DefaultBodyLimit::max(MAX_CONTENT),
            ))
            .get(content),
        )
        .route(
            "/app_pkgm/v1/onboarded_app_packages/{app_d_id}/package_content",
            get(onboarded_content),
        )
        .route(
            "/app_pkgm/v1/onboarded_app_packages/{app_d_id}/appd",
            get(onboarded_appd),
        )
}

fn is_sha256(algorithm: &str) -> bool {
    matches!(
        algorithm
            .to_ascii_uppercase()
            .replace(['-', '_'], "")
            .as_str(),
        "SHA256"
    )
}

fn no_package(id: &str) -> ApiError {
    ApiError::not_found(format!("no app package '{id}'"))
}

async fn create(
    State(c): State<Control>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateAppPkg = http::parse_body(&headers, &body)?;
    if req.app_pkg_name.trim().is_empty() {
        return Err(ApiError::bad_request("appPkgName must not be empty"));
    }
    if !is_sha256(&req.checksum.algorithm) {
        return Err(ApiError::bad_request(format!(
            "checksum.algorithm '{}' is not supported (use SHA-256)",
            req.checksum.algorithm
        )));
    }
    if hex::decode(req.checksum.hash.trim()).map(|h| h.len()) != Ok(32) {
        return Err(ApiError::bad_request(
            "checksum.hash must be 64 hex digits (a SHA-256)",
        ));
    }
    let id = c.store().next_id("pkg")?;
    let base = format!("{}{ROOT}/app_packages/{id}", http::base_url(&headers));
    let info = AppPkgInfo {
        id: id.clone(),
        app_d_id: String::new(),
        app_provider: req.app_provider.clone(),
        app_name: req.app_pkg_name.clone(),
        app_software_version: req.app_pkg_version.clone(),
        app_d_version: String::new(),
        checksum: req.checksum.clone(),
        software_images: serde_json::json!([]),
        onboarding_state: OnboardingState::Created,
        operational_state: PkgOperationalState::Disabled,
        usage_state: UsageState::NotInUse,
        user_defined_data: req.user_defined_data.clone(),
        links: AppPkgLinks {
            self_: LinkType { href: base.clone() },
            app_d: LinkType {
                href: format!("{base}/appd"),
            },
            app_pkg_content: LinkType {
                href: format!("{base}/package_content"),
            },
        },
    };
    c.store().put(Table::Packages, &id, &info)?;
    tracing::info!(package = %id, name = %req.app_pkg_name, "app package created");
    let mut resp = http::json(StatusCode::CREATED, &info);
    if let Ok(v) = base.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn list(State(c): State<Control>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = http::query_pairs_raw(q.as_deref(), &["filter"])?;
    let filter =
        Filter::parse(&http::values(&pairs, "filter").join(";")).map_err(ApiError::bad_request)?;
    let out: Vec<serde_json::Value> = c
        .store()
        .list::<serde_json::Value>(Table::Packages)?
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| filter.matches(v))
        .collect();
    Ok(http::json(StatusCode::OK, &out))
}

async fn read(State(c): State<Control>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let p: AppPkgInfo = c
        .store()
        .get(Table::Packages, &id)?
        .ok_or_else(|| no_package(&id))?;
    Ok(http::json(StatusCode::OK, &p))
}

async fn remove(State(c): State<Control>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let p: AppPkgInfo = c
        .store()
        .get(Table::Packages, &id)?
        .ok_or_else(|| no_package(&id))?;
    let users: Vec<String> = c
        .store()
        .list::<mec_api::app_lcm::AppInstanceInfo>(Table::Instances)?
        .into_iter()
        .filter(|(_, i)| i.app_pkg_id == p.id)
        .map(|(id, _)| id)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "app package '{id}' is used by app instances {}: delete them first",
            users.join(", ")
        )));
    }
    notify(&c, &p, "AppPackageDeletion", "AppPackageDeleted")?;
    c.store().delete(Table::Packages, &id)?;
    c.store().delete(Table::AppDs, &id)?;
    let _ = std::fs::remove_dir_all(package_dir(&c, &id));
    tracing::info!(package = %id, "app package deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn appd(State(c): State<Control>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let p: AppPkgInfo = c
        .store()
        .get(Table::Packages, &id)?
        .ok_or_else(|| no_package(&id))?;
    let d: AppD = c.store().get(Table::AppDs, &id)?.ok_or_else(|| {
        ApiError::conflict(format!(
            "app package '{id}' is {:?}, not onboarded: upload its package_content first",
            p.onboarding_state
        ))
    })?;
    Ok(http::json(StatusCode::OK, &d))
}

async fn onboarded_appd(
    State(c): State<Control>,
    Path(app_d_id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, d) = find_onboarded(&c, &app_d_id)?.ok_or_else(|| {
        ApiError::not_found(format!("no onboarded app package with appDId '{app_d_id}'"))
    })?;
    Ok(http::json(StatusCode::OK, &d))
}

/// The onboarded package (id, AppD) with this appDId.
pub fn find_onboarded(
    c: &Control,
    app_d_id: &str,
) -> Result<Option<(AppPkgInfo, AppD)>, crate::store::StoreError> {
    for (id, p) in c.store().list::<AppPkgInfo>(Table::Packages)? {
        if p.onboarding_state == OnboardingState::Onboarded && p.app_d_id == app_d_id {
            if let Some(d) = c.store().get::<AppD>(Table::AppDs, &id)? {
                return Ok(Some((p, d)));
            }
        }
    }
    Ok(None)
}

fn package_dir(c: &Control, id: &str) -> std::path::PathBuf {
    c.config().state_dir.join("packages").join(id)
}

/// The package as uploaded, kept once it is onboarded.
const CONTENT_FILE: &str = "package.tar";

async fn content(State(c): State<Control>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let p: AppPkgInfo = c
        .store()
        .get(Table::Packages, &id)?
        .ok_or_else(|| no_package(&id))?;
    if p.onboarding_state != OnboardingState::Onboarded {
        return Err(ApiError::conflict(format!(
            "app package '{id}' is {:?}: it has content once ONBOARDED",
            p.onboarding_state
        )));
    }
    serve_content(&c, &id).await
}

async fn onboarded_content(
    State(c): State<Control>,
    Path(app_d_id): Path<String>,
) -> Result<Response, ApiError> {
    let (p, _) = find_onboarded(&c, &app_d_id)?.ok_or_else(|| {
        ApiError::not_found(format!("no onboarded app package with appDId '{app_d_id}'"))
    })?;
    serve_content(&c, &p.id).await
}

/// Streams the kept package (up to [`MAX_CONTENT`]: not read into memory).
async fn serve_content(c: &Control, id: &str) -> Result<Response, ApiError> {
    let path = package_dir(c, id).join(CONTENT_FILE);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::internal(format!(
            "the content of package '{id}' is not kept ({}: {e}); it was onboarded by an \
             older ferry: create and upload it again",
            path.display()
        ))
    })?;
    let len = file.metadata().await.map(|m| m.len()).ok();
    let mut resp = Response::new(axum::body::Body::from_stream(
        tokio_util::io::ReaderStream::new(file),
    ));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-tar"),
    );
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, len.into());
    }
    Ok(resp)
}

/// appDIds become image names on the hosts: `[a-z0-9][a-z0-9._-]{0,127}`.
fn check_app_d_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&id.len())
        && id.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "AppD appDId '{id}' must be 1-128 characters of a-z, 0-9, '.', '_', '-' (it names the image on the hosts)"
        )))
    }
}

/// Reads `appd.json` and the image member out of the package tar.
fn unpack(content: &[u8]) -> Result<(AppD, Vec<u8>), ApiError> {
    let mut appd = None;
    let mut image = None;
    let mut archive = tar::Archive::new(content);
    let entries = archive
        .entries()
        .map_err(|e| ApiError::bad_request(format!("package content is not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            ApiError::bad_request(format!("package content is not a tar archive: {e}"))
        })?;
        let path = entry
            .path()
            .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
            .unwrap_or_default();
        let is_appd = match path.as_str() {
            "appd.json" => true,
            "image.tar" | "image.tar.gz" => false,
            _ => continue,
        };
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).map_err(|e| {
            ApiError::bad_request(format!("cannot read '{path}' from the package: {e}"))
        })?;
        if is_appd {
            appd = Some(buf);
        } else {
            image = Some(buf);
        }
    }
    let appd = appd.ok_or_else(|| {
        ApiError::bad_request("package content has no 'appd.json' at its top level")
    })?;
    let image = image.ok_or_else(|| {
        ApiError::bad_request(
            "package content has no 'image.tar' (or 'image.tar.gz') at its top level",
        )
    })?;
    let d: AppD = serde_json::from_slice(&appd)
        .map_err(|e| ApiError::bad_request(format!("appd.json is not a valid AppD: {e}")))?;
    d.validate().map_err(ApiError::bad_request)?;
    check_app_d_id(&d.app_d_id)?;
    Ok((d, image))
}

async fn upload(
    State(c): State<Control>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let p: AppPkgInfo = c
        .store()
        .get(Table::Packages, &id)?
        .ok_or_else(|| no_package(&id))?;
    if p.onboarding_state != OnboardingState::Created {
        return Err(ApiError::conflict(format!(
            "app package '{id}' is {:?}: content can only be uploaded once, to a CREATED package",
            p.onboarding_state
        )));
    }
    // Hashing and unpacking a large package is CPU work: keep it off the async workers.
    let expected = p.checksum.hash.trim().to_string();
    let content = body.clone();
    let (d, image, image_sha) = tokio::task::spawn_blocking(move || {
        let digest = hex::encode(sha2::Sha256::digest(&body));
        if !digest.eq_ignore_ascii_case(&expected) {
            return Err(ApiError::bad_request(format!(
                "package content SHA-256 is {digest}, the package's checksum says {expected}"
            )));
        }
        let (d, image) = unpack(&body)?;
        let image_sha = hex::encode(sha2::Sha256::digest(&image));
        Ok((d, image, image_sha))
    })
    .await
    .map_err(|e| ApiError::internal(format!("package check failed: {e}")))??;
    if let Some((other, _)) = find_onboarded(&c, &d.app_d_id)? {
        return Err(ApiError::conflict(format!(
            "appDId '{}' is already onboarded as package '{}'",
            d.app_d_id, other.id
        )));
    }
    set_state(&c, &id, OnboardingState::Processing)?;
    // Keep the package (to serve it back; its image for hosts that join later), then push
    // the image to every host now.
    let dir = package_dir(&c, &id);
    // Up to a GiB: written off the async workers, as `serve_content` reads it.
    let kept = match tokio::fs::create_dir_all(&dir).await {
        Ok(()) => tokio::fs::write(dir.join(CONTENT_FILE), &content).await,
        Err(e) => Err(e),
    };
    if let Err(e) = kept {
        set_state(&c, &id, OnboardingState::Created)?;
        return Err(ApiError::internal(format!("cannot keep the package: {e}")));
    }
    // All hosts at once: onboarding takes as long as the slowest host, not the sum.
    let image = Bytes::from(image);
    let names = c.hosts().names();
    let uploads = names
        .iter()
        .map(|host| c.hosts().upload_image(host, &d.app_d_id, image.clone()));
    let results = futures_util::future::join_all(uploads).await;
    for (host, r) in names.iter().zip(results) {
        if let Err(e) = r {
            set_state(&c, &id, OnboardingState::Created)?;
            return Err(ApiError::bad_gateway(format!(
                "onboarding failed, package left CREATED: {e}"
            )));
        }
        tracing::info!(package = %id, %host, image = %d.app_d_id, "image distributed");
    }
    c.store().put(Table::AppDs, &id, &d)?;
    c.store()
        .update(Table::Packages, &id, |p: &mut AppPkgInfo| {
            p.app_d_id = d.app_d_id.clone();
            p.app_provider = Some(d.app_provider.clone());
            p.app_name = d.app_name.clone();
            p.app_software_version = d.app_soft_version.clone();
            p.app_d_version = d.app_d_version.clone();
            p.software_images = serde_json::json!([{
                "name": d.app_d_id, "containerFormat": "OCI", "size": image.len(),
                "checksum": {"algorithm": "SHA-256", "hash": image_sha},
            }]);
            p.onboarding_state = OnboardingState::Onboarded;
            p.operational_state = PkgOperationalState::Enabled;
            Ok::<_, ApiError>(())
        })?
        .ok_or_else(|| no_package(&id))??;
    tracing::info!(package = %id, app = %d.app_d_id, "app package onboarded");
    if let Some(p) = c.store().get::<AppPkgInfo>(Table::Packages, &id)? {
        notify(&c, &p, "AppPackageOnBoarding", "AppPackageOnBoarded")?;
    }
    Ok(StatusCode::ACCEPTED)
}

fn set_state(c: &Control, id: &str, s: OnboardingState) -> Result<(), ApiError> {
    c.store()
        .update(Table::Packages, id, |p: &mut AppPkgInfo| {
            p.onboarding_state = s;
            Ok::<_, ApiError>(())
        })?
        .ok_or_else(|| no_package(id))?
}

// ---- operational state ----

async fn modify(
    State(c): State<Control>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let m: AppPkgInfoModifications = http::parse_body(&headers, &body)?;
    let p = c
        .store()
        .update(Table::Packages, &id, |p: &mut AppPkgInfo| {
            if p.onboarding_state != OnboardingState::Onboarded {
                return Err(ApiError::conflict(format!(
                    "app package '{id}' is {:?}: only an ONBOARDED package has an operational state",
                    p.onboarding_state
                )));
            }
            if p.operational_state == m.operation_state {
                return Err(ApiError::conflict(format!(
                    "app package '{id}' is already {:?}",
                    m.operation_state
                )));
            }
            p.operational_state = m.operation_state;
            Ok(p.clone())
        })?
        .ok_or_else(|| no_package(&id))??;
    let kind = match m.operation_state {
        PkgOperationalState::Enabled => "AppPacakgeEnabled",
        PkgOperationalState::Disabled => "AppPacakgeDisabled",
    };
    notify(&c, &p, "AppPacakgeOperationChange", kind)?;
    Ok(http::json(StatusCode::OK, &m))
}

// ---- subscriptions ----

/// Queues an `AppPkgNotification` of `kind` to every subscription of `sub_type` whose filters
/// select the package.
fn notify(
    c: &Control,
    p: &AppPkgInfo,
    sub_type: &str,
    kind: &str,
) -> Result<(), crate::store::StoreError> {
    let v = serde_json::to_value(p).unwrap_or_default();
    for (id, s) in c
        .store()
        .list::<AppPkgSubscriptionInfo>(Table::PkgSubscriptions)?
    {
        let selected = s.subscription_type == sub_type
            && s.app_pkg_filter
                .iter()
                .all(|f| Filter::parse(f).is_ok_and(|f| f.matches(&v)));
        if !selected {
            continue;
        }
        let n = AppPkgNotification {
            id: c.store().next_id("pkg-note")?,
            notification_type: kind.to_string(),
            subscription_id: id.clone(),
            time_stamp: mec_api::rni::TimeStamp::now(),
            app_pkg_id: p.id.clone(),
            app_d_id: p.app_d_id.clone(),
            operational_state: p.operational_state,
            links: mec_api::ams::NotificationLinks {
                subscription: s.links.self_.clone(),
            },
        };
        if let Ok(body) = serde_json::to_value(&n) {
            c.deliver(&id, body);
        }
    }
    Ok(())
}

/// Restarts the delivery workers of the stored subscriptions.
pub(crate) fn restore(c: &Control) -> Result<(), crate::store::StoreError> {
    for (id, s) in c
        .store()
        .list::<AppPkgSubscriptionInfo>(Table::PkgSubscriptions)?
    {
        c.start_delivery(&id, &s.callback_uri);
    }
    Ok(())
}

async fn create_sub(
    State(c): State<Control>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: AppPkgSubscription = http::parse_body(&headers, &body)?;
    if !PKG_SUBSCRIPTION_TYPES.contains(&req.subsctiption_type.as_str()) {
        return Err(ApiError::bad_request(format!(
            "subsctiptionType '{}' is not one of {}",
            req.subsctiption_type,
            PKG_SUBSCRIPTION_TYPES.join(", ")
        )));
    }
    http::check_callback(&req.callback_uri, "callbackUri")?;
    for f in &req.app_pkg_filter {
        Filter::parse(f).map_err(|e| ApiError::bad_request(format!("appPkgFilter: {e}")))?;
    }
    let id = c.store().next_id("pkg-sub")?;
    let href = format!("{}{ROOT}/subscriptions/{id}", http::base_url(&headers));
    let info = AppPkgSubscriptionInfo {
        id: id.clone(),
        subscription_type: req.subsctiption_type,
        callback_uri: req.callback_uri,
        app_pkg_filter: req.app_pkg_filter,
        links: mec_api::ams::SelfLink {
            self_: LinkType { href: href.clone() },
        },
    };
    c.store().put(Table::PkgSubscriptions, &id, &info)?;
    c.start_delivery(&id, &info.callback_uri);
    let mut resp = http::json(StatusCode::CREATED, &info);
    if let Ok(v) = href.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn list_subs(State(c): State<Control>, headers: HeaderMap) -> Result<Response, ApiError> {
    let subs: Vec<serde_json::Value> = c
        .store()
        .list::<AppPkgSubscriptionInfo>(Table::PkgSubscriptions)?
        .into_iter()
        .map(|(_, s)| {
            serde_json::json!({"href": s.links.self_.href, "subscriptionType": s.subscription_type})
        })
        .collect();
    let self_href = format!("{}{ROOT}/subscriptions", http::base_url(&headers));
    Ok(http::json(
        StatusCode::OK,
        &serde_json::json!({"_links": {"self": {"href": self_href}, "subscriptions": subs}}),
    ))
}

fn no_sub(id: &str) -> ApiError {
    ApiError::not_found(format!("no app package subscription '{id}'"))
}

async fn read_sub(State(c): State<Control>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let s: AppPkgSubscriptionInfo = c
        .store()
        .get(Table::PkgSubscriptions, &id)?
        .ok_or_else(|| no_sub(&id))?;
    Ok(http::json(StatusCode::OK, &s))
}

async fn delete_sub(
    State(c): State<Control>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !c.store().delete(Table::PkgSubscriptions, &id)? {
        return Err(no_sub(&id));
    }
    c.stop_delivery(&id);
    Ok(StatusCode::NO_CONTENT)
}
