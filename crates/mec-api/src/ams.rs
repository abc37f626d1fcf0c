//! MEC 021 Application Mobility Service (AMS, `/amsi/v1`) data models.
//!
//! Field names and enums follow `MEC021_AppMobilityService.yaml` (v2.1.1, string enums) and the
//! notification schemas of its stf593 branch and AdvantEDGE's v2.2.1 copy (`_links`,
//! `associateId` in notifications, `adjacentAppInfo` as a list).

use crate::rni::TimeStamp;
use serde::{Deserialize, Serialize};

pub const MOBILITY_PROCEDURE_SUBSCRIPTION: &str = "MobilityProcedureSubscription";
pub const ADJACENT_APP_INFO_SUBSCRIPTION: &str = "AdjacentAppInfoSubscription";
pub const MOBILITY_PROCEDURE_NOTIFICATION: &str = "MobilityProcedureNotification";
pub const ADJACENT_APP_INFO_NOTIFICATION: &str = "AdjacentAppInfoNotification";
pub const EXPIRY_NOTIFICATION: &str = "ExpiryNotification";

/// `LinkType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkType {
    pub href: String,
}

/// `_links` with a `self` link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfLink {
    #[serde(rename = "self")]
    pub self_: LinkType,
}

/// `AssociateId.type` (MEC 021 spells it as a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssociateIdType {
    #[serde(rename = "UE_IPv4_ADDRESS")]
    UeIpv4Address,
    #[serde(rename = "UE_IPV6_ADDRESS")]
    UeIpv6Address,
    #[serde(rename = "NATED_IP_ADDRESS")]
    NatedIpAddress,
    #[serde(rename = "GTP_TEID")]
    GtpTeid,
}

/// `AssociateId`: identifies a UE (ferry uses `UE_IPv4_ADDRESS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociateId {
    #[serde(rename = "type")]
    pub type_: AssociateIdType,
    pub value: String,
}

impl AssociateId {
    pub fn ue_ipv4(addr: impl ToString) -> AssociateId {
        AssociateId {
            type_: AssociateIdType::UeIpv4Address,
            value: addr.to_string(),
        }
    }
}

/// `AppMobilityServiceLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppMobilityServiceLevel {
    /// Keep the instance where it is; only traffic is steered.
    AppMobilityNotAllowed,
    /// Relocate once the application confirmed (it PUTs its registration).
    AppMobilityWithConfirmation,
    /// Relocate without asking.
    AppMobilityWithoutConfirmation,
}

/// `contextTransferState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContextTransferState {
    NotTransferred,
    UserContextTransferCompleted,
}

/// `MobilityStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MobilityStatus {
    InterhostMoveoutTriggered,
    InterhostMoveoutCompleted,
    InterhostMoveoutFailed,
}

/// `RegistrationInfo.serviceConsumerId`: exactly one of the two is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConsumerId {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mep_id: Option<String>,
}

/// `RegistrationInfo.deviceInformation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInformation {
    pub associate_id: AssociateId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_mobility_service_level: Option<AppMobilityServiceLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_transfer_state: Option<ContextTransferState>,
}

/// `RegistrationInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_mobility_service_id: Option<String>,
    pub service_consumer_id: ServiceConsumerId,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_information: Vec<DeviceInformation>,
    /// Seconds the registration lives (0 or absent: no expiry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_time: Option<u32>,
}

/// `MobilityProcedureSubscription.filterCriteria`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MobilityProcedureFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associate_id: Vec<AssociateId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mobility_status: Vec<MobilityStatus>,
}

/// `MobilityProcedureSubscription`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MobilityProcedureSubscription {
    pub subscription_type: String,
    pub callback_reference: String,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<SelfLink>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_deadline: Option<TimeStamp>,
    pub filter_criteria: MobilityProcedureFilter,
}

/// `AdjacentAppInfoSubscription.filterCriteria`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AdjacentAppInfoFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_id: Option<String>,
}

/// `AdjacentAppInfoSubscription`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdjacentAppInfoSubscription {
    pub subscription_type: String,
    pub callback_reference: String,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<SelfLink>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_deadline: Option<TimeStamp>,
    pub filter_criteria: AdjacentAppInfoFilter,
}

/// Either AMS subscription, told apart by `subscriptionType` as on the wire (both have the
/// same shape otherwise, so this is not an untagged serde enum on input: use `from_value`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AmsSubscription {
    MobilityProcedure(MobilityProcedureSubscription),
    AdjacentAppInfo(AdjacentAppInfoSubscription),
}

impl AmsSubscription {
    /// Parses a subscription body by its `subscriptionType`; the error says what is wrong.
    pub fn from_value(v: serde_json::Value) -> Result<AmsSubscription, String> {
        let kind = v
            .get("subscriptionType")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_string();
        match kind.as_str() {
            MOBILITY_PROCEDURE_SUBSCRIPTION => serde_json::from_value(v)
                .map(AmsSubscription::MobilityProcedure)
                .map_err(|e| format!("malformed {kind}: {e}")),
            ADJACENT_APP_INFO_SUBSCRIPTION => serde_json::from_value(v)
                .map(AmsSubscription::AdjacentAppInfo)
                .map_err(|e| format!("malformed {kind}: {e}")),
            "" => Err(format!(
                "subscriptionType is missing (use \"{MOBILITY_PROCEDURE_SUBSCRIPTION}\" or \"{ADJACENT_APP_INFO_SUBSCRIPTION}\")"
            )),
            other => Err(format!(
                "unknown subscriptionType '{other}' (use \"{MOBILITY_PROCEDURE_SUBSCRIPTION}\" or \"{ADJACENT_APP_INFO_SUBSCRIPTION}\")"
            )),
        }
    }
    pub fn callback_reference(&self) -> &str {
        match self {
            AmsSubscription::MobilityProcedure(s) => &s.callback_reference,
            AmsSubscription::AdjacentAppInfo(s) => &s.callback_reference,
        }
    }
    pub fn expiry_deadline(&self) -> Option<TimeStamp> {
        match self {
            AmsSubscription::MobilityProcedure(s) => s.expiry_deadline,
            AmsSubscription::AdjacentAppInfo(s) => s.expiry_deadline,
        }
    }
    pub fn subscription_type(&self) -> &'static str {
        match self {
            AmsSubscription::MobilityProcedure(_) => MOBILITY_PROCEDURE_SUBSCRIPTION,
            AmsSubscription::AdjacentAppInfo(_) => ADJACENT_APP_INFO_SUBSCRIPTION,
        }
    }
    pub fn set_self(&mut self, href: String) {
        let l = Some(SelfLink {
            self_: LinkType { href },
        });
        match self {
            AmsSubscription::MobilityProcedure(s) => s.links = l,
            AmsSubscription::AdjacentAppInfo(s) => s.links = l,
        }
    }
    pub fn self_href(&self) -> String {
        let l = match self {
            AmsSubscription::MobilityProcedure(s) => &s.links,
            AmsSubscription::AdjacentAppInfo(s) => &s.links,
        };
        l.as_ref().map(|l| l.self_.href.clone()).unwrap_or_default()
    }
}

/// `SubscriptionLinkList.subscription`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionLink {
    pub href: String,
    pub subscription_type: String,
}

/// `SubscriptionLinkList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionLinkList {
    #[serde(rename = "_links")]
    pub links: SelfLink,
    #[serde(default)]
    pub subscription: Vec<SubscriptionLink>,
}

/// `CommunicationInterface.ipAddresses` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAddress {
    pub host: String,
    pub port: u16,
}

/// `CommunicationInterface`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationInterface {
    #[serde(default)]
    pub ip_addresses: Vec<IpAddress>,
}

/// `MECHostInformation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MecHostInformation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// `KeyValuePairs`; ferry puts `{"name": HOST}` in it.
    pub host_id: serde_json::Value,
}

/// `AdjacentAppInstanceInfo`: an answer item of `queries/adjacent_app_instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdjacentAppInstanceInfo {
    pub app_d_id: String,
    pub app_instance_comm_link: Vec<CommunicationInterface>,
    pub app_instance_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mec_host_information: Option<MecHostInformation>,
}

/// `MobilityProcedureNotification.targetAppInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetAppInfo {
    pub app_instance_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm_interface: Option<CommunicationInterface>,
}

/// `_links` of a notification: the subscription it is sent for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationLinks {
    pub subscription: LinkType,
}

/// `MobilityProcedureNotification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MobilityProcedureNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    pub associate_id: Vec<AssociateId>,
    pub mobility_status: MobilityStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_app_info: Option<TargetAppInfo>,
    #[serde(rename = "_links")]
    pub links: NotificationLinks,
}

/// `AdjacentAppInfoNotification.adjacentAppInfo` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdjacentAppInfo {
    pub app_instance_id: String,
    pub comm_interface: Vec<CommunicationInterface>,
}

/// `AdjacentAppInfoNotification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdjacentAppInfoNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associate_id: Vec<AssociateId>,
    pub adjacent_app_info: Vec<AdjacentAppInfo>,
    #[serde(rename = "_links")]
    pub links: NotificationLinks,
}

/// `ExpiryNotification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    #[serde(rename = "_links")]
    pub links: NotificationLinks,
    pub expiry_deadline: TimeStamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_round_trips_with_etsi_names() {
        let j = serde_json::json!({
            "serviceConsumerId": {"appInstanceId": "i1"},
            "deviceInformation": [{
                "associateId": {"type": "UE_IPv4_ADDRESS", "value": "10.0.0.1"},
                "appMobilityServiceLevel": "APP_MOBILITY_WITH_CONFIRMATION",
                "contextTransferState": "NOT_TRANSFERRED"
            }],
            "expiryTime": 60
        });
        let r: RegistrationInfo = serde_json::from_value(j.clone()).unwrap();
        assert_eq!(
            r.device_information[0].app_mobility_service_level,
            Some(AppMobilityServiceLevel::AppMobilityWithConfirmation)
        );
        assert_eq!(serde_json::to_value(&r).unwrap(), j);
        let bad = serde_json::json!({"serviceConsumerId": {}, "deviceInformation": [{
            "associateId": {"type": "UE_IPv4_ADDRESS", "value": "x"},
            "appMobilityServiceLevel": "SOMETIMES"}]});
        assert!(serde_json::from_value::<RegistrationInfo>(bad).is_err());
    }

    #[test]
    fn mobility_status_is_a_string_enum() {
        assert_eq!(
            serde_json::to_value(MobilityStatus::InterhostMoveoutTriggered).unwrap(),
            "INTERHOST_MOVEOUT_TRIGGERED"
        );
    }
}
