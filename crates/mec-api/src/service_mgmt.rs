//! MEC 011 service management (`/mec_service_mgmt/v1`) data models: the service registry and
//! service availability subscriptions and notifications.
//!
//! Names follow `MEC011_MecServiceMgmtApi.yaml` (v2.1.1).

use crate::ams::{LinkType, SelfLink};
use serde::{Deserialize, Serialize};

/// `ServiceState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceState {
    Active,
    Inactive,
    /// MEC 011 v3.1.1: the platform missed the producer's heartbeats (service liveness).
    Suspended,
}

/// `SerializerType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SerializerType {
    Json,
    Xml,
    Protobuf3,
}

/// `LocalityType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LocalityType {
    MecSystem,
    MecHost,
    NfviPop,
    Zone,
    ZoneGroup,
    NfviNode,
}

/// `CategoryRef`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryRef {
    pub href: String,
    pub id: String,
    pub name: String,
    pub version: String,
}

/// `TransportType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransportType {
    RestHttp,
    MbTopicBased,
    MbRouting,
    MbPubsub,
    Rpc,
    RpcStreaming,
    Websocket,
}

/// `EndPointInfo.Address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndPointAddress {
    pub host: String,
    pub port: u16,
}

/// `EndPointInfo`: exactly one of its three forms (the file's `oneOf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EndPointInfo {
    Uris {
        uris: Vec<String>,
    },
    Addresses {
        addresses: Vec<EndPointAddress>,
    },
    Alternative {
        alternative: serde_json::Map<String, serde_json::Value>,
    },
}

/// `SecurityInfo.OAuth2Info.GrantType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GrantType {
    Oauth2AuthorizationCode,
    Oauth2ImplicitGrant,
    Oauth2ResourceOwner,
    Oauth2ClientCredentials,
}

/// `SecurityInfo.OAuth2Info` (1 to 4 grant types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Info {
    pub grant_types: Vec<GrantType>,
    pub token_endpoint: String,
}

/// `SecurityInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecurityInfo {
    #[serde(
        rename = "oAuth2Info",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub oauth2_info: Option<OAuth2Info>,
}

/// `TransportInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportInfo {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub type_: TransportType,
    pub protocol: String,
    pub version: String,
    pub endpoint: EndPointInfo,
    pub security: SecurityInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impl_specific_info: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `ServiceInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ser_instance_id: Option<String>,
    pub ser_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ser_category: Option<CategoryRef>,
    pub version: String,
    pub state: ServiceState,
    pub transport_info: TransportInfo,
    pub serializer: SerializerType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_of_locality: Option<LocalityType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_local_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_local: Option<bool>,
    /// MEC 011 v3.1.1: seconds between two heartbeats. In a request: the producer can send
    /// heartbeats (0: the platform picks the interval); in a response: the interval the
    /// platform expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_interval: Option<u32>,
    /// MEC 011 v3.1.1 `_links`: the service itself and, with heartbeats, where to send them.
    #[serde(rename = "_links", default, skip_serializing_if = "Option::is_none")]
    pub links: Option<ServiceLinks>,
    /// ferry extension: the app instance that produces the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferry_app_instance_id: Option<String>,
}

/// `ServiceInfo._links` (MEC 011 v3.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLinks {
    #[serde(rename = "self")]
    pub self_: crate::ams::LinkType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<crate::ams::LinkType>,
}

/// `ServiceLivenessInfo` (MEC 011 v3.1.1 clause 8.1.2.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLivenessInfo {
    pub state: ServiceState,
    /// When the last heartbeat came (or the service was registered).
    pub time_stamp: crate::rni::TimeStamp,
    pub interval: u32,
}

/// `ServiceLivenessUpdate` (MEC 011 v3.1.1 clause 8.1.2.5): a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLivenessUpdate {
    /// Shall be ACTIVE.
    pub state: ServiceState,
}

pub const SER_AVAILABILITY_SUBSCRIPTION: &str = "SerAvailabilityNotificationSubscription";
pub const SER_AVAILABILITY_NOTIFICATION: &str = "SerAvailabilityNotification";

/// `SerAvailabilityNotificationSubscription.FilteringCriteria`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SerAvailabilityFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ser_instance_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ser_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ser_categories: Vec<CategoryRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<ServiceState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_local: Option<bool>,
}

/// `SerAvailabilityNotificationSubscription`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SerAvailabilityNotificationSubscription {
    pub subscription_type: String,
    pub callback_reference: String,
    #[serde(rename = "_links", default, skip_serializing_if = "Option::is_none")]
    pub links: Option<SelfLink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtering_criteria: Option<SerAvailabilityFilter>,
}

/// `ServiceAvailabilityNotification.ChangeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeType {
    Added,
    Removed,
    StateChanged,
    AttributesChanged,
}

/// `ServiceAvailabilityNotification.ServiceReferences`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkType>,
    pub ser_name: String,
    pub ser_instance_id: String,
    pub state: ServiceState,
    pub change_type: ChangeType,
}

/// `Subscription` (the `_links` of a notification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionLinks {
    pub subscription: LinkType,
}

/// `ServiceAvailabilityNotification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAvailabilityNotification {
    pub notification_type: String,
    pub service_references: Vec<ServiceReference>,
    #[serde(rename = "_links")]
    pub links: SubscriptionLinks,
}
