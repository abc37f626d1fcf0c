//! MEC 010-2 application lifecycle management (`/app_lcm/v1`) data models.
//!
//! Names follow `MEC010-2_AppLcm.yaml` (v2.1.1); ferry's extension fields carry a `ferry`
//! prefix.

use crate::ams::{LinkType, MecHostInformation};
use crate::rni::TimeStamp;
use serde::{Deserialize, Serialize};

/// `CreateAppInstanceRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateAppInstanceRequest {
    pub app_d_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_description: Option<String>,
}

/// `InstantiateAppRequest`. Either `selectedMECHostInfo` names the host (`hostId.name` or
/// `hostName`), or the extension `ferryAssociateId` names the UE whose serving host is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstantiateAppRequest {
    #[serde(default, rename = "selectedMECHostInfo")]
    pub selected_mec_host_info: Vec<MecHostInformation>,
    /// ferry extension: place the instance on the host serving this UE (`UE_IPv4_ADDRESS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferry_associate_id: Option<crate::ams::AssociateId>,
}

/// `InstantiationState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstantiationState {
    NotInstantiated,
    Instantiated,
}

/// `OperationalState` / `ChangeStateTo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationalState {
    Started,
    Stopped,
}

/// `InstantiatedAppState`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstantiatedAppState {
    pub operational_state: OperationalState,
}

/// `StopType` / `TerminationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StopType {
    Forceful,
    Graceful,
}

/// `OperateAppRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperateAppRequest {
    pub change_state_to: OperationalState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_type: Option<StopType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graceful_stop_timeout: Option<u32>,
}

/// `TerminateAppRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminateAppRequest {
    pub termination_type: StopType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graceful_termination_timeout: Option<u32>,
}

/// `AppInstanceInfo.links`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInstanceLinks {
    #[serde(rename = "self")]
    pub self_: LinkType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instantiate: Option<LinkType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminate: Option<LinkType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operate: Option<LinkType>,
}

/// `AppInstanceInfo`, plus where ferry runs it (`ferryHost`, `ferryAddress`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInstanceInfo {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_description: Option<String>,
    pub app_d_id: String,
    pub app_provider: String,
    pub app_name: String,
    pub app_soft_version: String,
    pub app_d_version: String,
    pub app_pkg_id: String,
    pub instantiation_state: InstantiationState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instantiated_app_state: Option<InstantiatedAppState>,
    /// ferry extension: the MEC host the instance runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ferry_host: Option<String>,
    /// ferry extension: the instance's IPv4 address (kept across relocations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ferry_address: Option<String>,
    #[serde(rename = "_links")]
    pub links: AppInstanceLinks,
}

/// `LcmOperation` (the v2.1.1 file spells the first value `INSTATIATE`; ferry uses it as is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LcmOperation {
    #[serde(rename = "INSTATIATE")]
    Instantiate,
    #[serde(rename = "OPERATE")]
    Operate,
    #[serde(rename = "TERMINATE")]
    Terminate,
}

/// `OperationState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationState {
    Starting,
    Processing,
    Completed,
    Failed,
}

/// `AppInstanceLcmOpOcc.links`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpOccLinks {
    #[serde(rename = "self")]
    pub self_: LinkType,
    pub app_instance: LinkType,
}

/// `AppInstanceLcmOpOcc`, plus `ferryError` (why a FAILED operation failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInstanceLcmOpOcc {
    pub id: String,
    pub operation_state: OperationState,
    pub state_entered_time: TimeStamp,
    pub start_time: TimeStamp,
    pub lcm_operation: LcmOperation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_params: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ferry_error: Option<String>,
    #[serde(rename = "_links")]
    pub links: OpOccLinks,
}

/// `AppInst.SubscriptionType` value.
pub const APP_INSTANCE_STATE_CHANGE: &str = "AppInstanceStateChange";

/// `AppInstSubscriptionRequest` / `AppInstSubscriptionInfo` (the answer adds `id`,
/// `notificationType` and `_links`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInstSubscription {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub subscription_type: String,
    pub callback_uri: String,
    /// `AppInstanceState`: NOT_INSTANTIATED, STARTED or STOPPED; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_instance_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_instance_subscription_filter: Option<serde_json::Value>,
    #[serde(rename = "_links", default, skip_serializing_if = "Option::is_none")]
    pub links: Option<crate::ams::SelfLink>,
}

/// `AppInstNotification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInstNotification {
    pub id: String,
    /// NOT_INSTANTIATED, STARTED or STOPPED.
    pub notification_type: String,
    pub subscription_id: String,
    pub time_stamp: TimeStamp,
    pub app_instance_id: String,
    pub app_pkg_id: String,
    pub app_d_id: String,
    #[serde(rename = "_links")]
    pub links: serde_json::Value,
}
