//! MEC 010-2 application package management (`/app_pkgm/v1`) data models, and the application
//! descriptor (AppD) subset ferry reads, with ferry's prefixed extension fields.
//!
//! Names follow `MEC010-2_AppPkgMgmt.yaml` (v2.1.1). Fields ferry does not interpret are kept
//! verbatim (`extra`), so a richer AppD or request survives a round trip.

use serde::{Deserialize, Serialize};

pub use crate::ams::LinkType;

/// `Checksum`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    pub algorithm: String,
    pub hash: String,
}

/// `CreateAppPkg`. ETSI requires `appPkgPath` (where the orchestrator fetches the package);
/// ferry has no internet access to fetch from, so it is optional and the content is uploaded
/// with `PUT .../package_content` instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateAppPkg {
    pub app_pkg_name: String,
    pub app_pkg_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_provider: Option<String>,
    pub checksum: Checksum,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_pkg_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_defined_data: Option<serde_json::Value>,
}

/// `OnboardingState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnboardingState {
    Created,
    Uploading,
    Processing,
    Onboarded,
}

/// `AppPkg.OperationalState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PkgOperationalState {
    Enabled,
    Disabled,
}

/// `UsageState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UsageState {
    InUse,
    NotInUse,
}

/// `AppPkgInfo.links`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPkgLinks {
    #[serde(rename = "self")]
    pub self_: LinkType,
    pub app_d: LinkType,
    pub app_pkg_content: LinkType,
}

/// `AppPkgInfo`. Before onboarding the AppD fields are empty strings (ETSI marks them required
/// although they are only known from the package content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPkgInfo {
    pub id: String,
    pub app_d_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_provider: Option<String>,
    pub app_name: String,
    pub app_software_version: String,
    pub app_d_version: String,
    pub checksum: Checksum,
    /// `AppPkgSWImageInfo`: ferry lists its one OCI image.
    pub software_images: serde_json::Value,
    pub onboarding_state: OnboardingState,
    pub operational_state: PkgOperationalState,
    pub usage_state: UsageState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_defined_data: Option<serde_json::Value>,
    #[serde(rename = "_links")]
    pub links: AppPkgLinks,
}

/// ferry extension `ferryStateRelocation.mode`: who moves the user context on relocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateRelocationMode {
    /// The ETSI default: the application transfers its context and says so through AMS.
    #[default]
    Application,
    /// The MEC system migrates the container with its memory (ferry's extension).
    ContainerMigration,
}

/// ferry extension `ferryStateRelocation` of the AppD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FerryStateRelocation {
    pub mode: StateRelocationMode,
    /// Only meaningful with `CONTAINER_MIGRATION` (default `auto`); an unknown one is refused
    /// when the AppD is parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technique: Option<ferry_wire::Technique>,
}

/// ferry extension `ferryContainer` of the AppD: how to run the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FerryContainer {
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// TCP port the app serves on (for `CommunicationInterface` in AMS answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// The AppD fields ferry reads (ETSI GS MEC 010-2 clause 6.2.1.2); the rest is kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppD {
    pub app_d_id: String,
    pub app_name: String,
    pub app_provider: String,
    pub app_soft_version: String,
    pub app_d_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferry_state_relocation: Option<FerryStateRelocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferry_container: Option<FerryContainer>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl AppD {
    /// Checks what serde cannot: non-empty ids.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("appDId", &self.app_d_id),
            ("appName", &self.app_name),
            ("appProvider", &self.app_provider),
        ] {
            if v.trim().is_empty() {
                return Err(format!("AppD {name} must not be empty"));
            }
        }
        Ok(())
    }
}

/// `SubsctiptionType.AppPkg` values (spelled as in the v2.1.1 file, typos included).
pub const PKG_SUBSCRIPTION_TYPES: [&str; 3] = [
    "AppPackageOnBoarding",
    "AppPacakgeOperationChange",
    "AppPackageDeletion",
];

/// `AppPkgSubscription` (the request; the v2.1.1 file spells `subsctiptionType`, and the
/// correct spelling is accepted too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPkgSubscription {
    pub callback_uri: String,
    #[serde(alias = "subscriptionType")]
    pub subsctiption_type: String,
    /// MEC 009 attribute filters over `AppPkgInfo` (all must match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_pkg_filter: Vec<String>,
}

/// `AppPkgSubscriptionInfo` (the answer), plus the filters it was created with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPkgSubscriptionInfo {
    pub id: String,
    pub subscription_type: String,
    pub callback_uri: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_pkg_filter: Vec<String>,
    #[serde(rename = "_links")]
    pub links: crate::ams::SelfLink,
}

/// `AppPkgInfoModifications` (PATCH body and answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPkgInfoModifications {
    pub operation_state: PkgOperationalState,
}

/// `AppPkgNotification`; `notificationType` is one of AppPackageOnBoarded,
/// AppPacakgeEnabled, AppPacakgeDisabled, AppPackageDeleted (v2.1.1 spelling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPkgNotification {
    pub id: String,
    pub notification_type: String,
    pub subscription_id: String,
    pub time_stamp: crate::rni::TimeStamp,
    pub app_pkg_id: String,
    pub app_d_id: String,
    pub operational_state: PkgOperationalState,
    #[serde(rename = "_links")]
    pub links: crate::ams::NotificationLinks,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appd_keeps_unknown_fields_and_checks_technique() {
        let j = serde_json::json!({"appDId": "d1", "appName": "counter", "appProvider": "ferry",
            "appSoftVersion": "1", "appDVersion": "1", "mecVersion": ["2.1.1"],
            "ferryStateRelocation": {"mode": "CONTAINER_MIGRATION", "technique": "pre-copy"}});
        let d: AppD = serde_json::from_value(j.clone()).unwrap();
        assert_eq!(
            d.ferry_state_relocation.as_ref().unwrap().mode,
            StateRelocationMode::ContainerMigration
        );
        assert!(d.validate().is_ok());
        assert_eq!(serde_json::to_value(&d).unwrap(), j);
        let mut bad = j.clone();
        bad["ferryStateRelocation"]["technique"] = "teleport".into();
        let e = serde_json::from_value::<AppD>(bad).unwrap_err().to_string();
        assert!(e.contains("teleport") && e.contains("post-copy"), "{e}");
    }
}
