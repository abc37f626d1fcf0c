//! MEC 011 application support (`/mec_app_support/v1`) data models: readiness and termination
//! confirmation, traffic rules, DNS rules, timing.
//!
//! Names follow `MEC011_MecAppSupportApi.yaml` (v2.1.1). The nested traffic filter and
//! destination interface are kept as JSON (ferry reads only `dstAddress` / `dstIpAddress`).

use serde::{Deserialize, Serialize};

/// `TrafficRule.FilterType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterType {
    Flow,
    Packet,
}

/// `TrafficRule.Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TrafficAction {
    Drop,
    ForwardDecapsulated,
    ForwardEncapsulated,
    Passthrough,
    DuplicateDecapsulated,
    DuplicateEncapsulated,
}

/// `TrafficRule.State` / `DnsRule.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuleState {
    Active,
    Inactive,
}

/// `TrafficRule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRule {
    pub traffic_rule_id: String,
    pub filter_type: FilterType,
    pub priority: u8,
    /// `TrafficFilter` list, kept as sent.
    pub traffic_filter: Vec<serde_json::Value>,
    pub action: TrafficAction,
    /// `DestinationInterface`, kept as sent; `dstIpAddress` names the MEC host's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_interface: Option<serde_json::Value>,
    pub state: RuleState,
    /// ferry extension: the MEC host the rule steers to (the data plane's route target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferry_host: Option<String>,
}

/// `DnsRule.IpAddressType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpAddressType {
    #[serde(rename = "IP_V6")]
    IpV6,
    #[serde(rename = "IP_V4")]
    IpV4,
}

/// `DnsRule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsRule {
    pub dns_rule_id: String,
    pub domain_name: String,
    pub ip_address_type: IpAddressType,
    pub ip_address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    pub state: RuleState,
}

/// `AppReadyConfirmation` (`indication` must be "READY").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppReadyConfirmation {
    pub indication: String,
}

/// `OperationActionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationActionType {
    Stopping,
    Terminating,
}

/// `AppTerminationConfirmation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppTerminationConfirmation {
    pub operation_action: OperationActionType,
}

/// `TimeSourceStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TimeSourceStatus {
    Traceable,
    Nontraceable,
}

/// `CurrentTime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentTime {
    pub seconds: u64,
    pub nano_seconds: u32,
    pub time_source_status: TimeSourceStatus,
}

/// `TimingCaps` (ferry has no NTP or PTP configuration to report: the lists are absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimingCaps {
    pub time_stamp: crate::rni::TimeStamp,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ntp_servers: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ptp_masters: Vec<serde_json::Value>,
}

/// `AppTerminationNotificationSubscription.subscriptionType` (and the notification's type).
pub const APP_TERMINATION_SUBSCRIPTION: &str = "AppTerminationNotificationSubscription";
pub const APP_TERMINATION_NOTIFICATION: &str = "AppTerminationNotification";

/// `AppTerminationNotificationSubscription`. The file requires `_links` in the request too; it
/// is the server's to set, so a request may leave it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppTerminationNotificationSubscription {
    pub subscription_type: String,
    pub callback_reference: String,
    #[serde(rename = "_links", default, skip_serializing_if = "Option::is_none")]
    pub links: Option<crate::ams::SelfLink>,
    pub app_instance_id: String,
}

/// `AppTerminationNotification.Links`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppTerminationNotificationLinks {
    pub subscription: crate::ams::LinkType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm_termination: Option<crate::ams::LinkType>,
}

/// `AppTerminationNotification`: the platform is about to stop or terminate the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppTerminationNotification {
    pub notification_type: String,
    pub operation_action: OperationActionType,
    /// Seconds the instance has to finish (0: none, a forceful termination).
    pub max_graceful_timeout: u32,
    #[serde(rename = "_links")]
    pub links: AppTerminationNotificationLinks,
}

/// `MecAppSuptApiSubscriptionLinkList.Subscription`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionLink {
    pub href: String,
    pub rel: String,
}

/// `MecAppSuptApiSubscriptionLinkList.Links`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionLinkListLinks {
    #[serde(rename = "self")]
    pub self_: crate::ams::LinkType,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionLink>,
}

/// `MecAppSuptApiSubscriptionLinkList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionLinkList {
    #[serde(rename = "_links")]
    pub links: SubscriptionLinkListLinks,
}
