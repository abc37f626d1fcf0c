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
