//! ETSI GS MEC 012 Radio Network Information API (RNIS, `/rni/v2`): the data types of the
//! resources ferry's emulated RAN serves (cell change subscriptions and notifications, RAB and
//! PLMN queries).
//!
//! Follows `shared/etsi-mec/MEC012_RniAPI.yaml` (v2.1.1). Where v2.1.1 is silent, fields that
//! v2.2.1 adds are taken too (`notificationType` and `_links.subscription` in notifications).
//! MEC 012 defines `AssociateId.type` and `hoStatus` as *numbers* (1 = UE_IPv4_ADDRESS,
//! 3 = COMPLETED) in every version, unlike other MEC APIs: they are numbers on the wire here.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `subscriptionType` of a cell change subscription.
pub const CELL_CHANGE_SUBSCRIPTION: &str = "CellChangeSubscription";
/// `notificationType` of a cell change notification.
pub const CELL_CHANGE_NOTIFICATION: &str = "CellChangeNotification";
/// `notificationType` of an expiry notification.
pub const EXPIRY_NOTIFICATION: &str = "ExpiryNotification";

/// Every `subscriptionType` MEC 012 defines, with the `subscription_type` query value that
/// selects it on `GET /subscriptions`.
pub const SUBSCRIPTION_TYPES: [(&str, &str); 9] = [
    ("cell_change", CELL_CHANGE_SUBSCRIPTION),
    ("rab_est", "RabEstSubscription"),
    ("rab_mod", "RabModSubscription"),
    ("rab_rel", "RabRelSubscription"),
    ("meas_rep_ue", "MeasRepUeSubscription"),
    ("nr_meas_rep_ue", "NrMeasRepUeSubscription"),
    ("timing_advance_ue", "MeasTaSubscription"),
    ("ca_reconf", "CaReconfSubscription"),
    ("s1_bearer", "S1BearerSubscription"),
];

/// `TimeStamp`: Unix time split in seconds and nanoseconds (MEC 012 and MEC 013 alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeStamp {
    pub seconds: u64,
    pub nano_seconds: u32,
}

impl TimeStamp {
    pub fn now() -> TimeStamp {
        TimeStamp::from_system_time(SystemTime::now())
    }

    /// Times before 1970 (never produced by ferry) become 0.
    pub fn from_system_time(t: SystemTime) -> TimeStamp {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        TimeStamp {
            seconds: d.as_secs(),
            nano_seconds: d.subsec_nanos(),
        }
    }

    pub fn to_system_time(self) -> SystemTime {
        // Saturate rather than overflow on absurd input from the network.
        UNIX_EPOCH
            .checked_add(Duration::new(
                self.seconds,
                self.nano_seconds.min(999_999_999),
            ))
            .unwrap_or(UNIX_EPOCH + Duration::from_secs(u32::MAX as u64))
    }
}

/// `Plmn`: Public Land Mobile Network identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Plmn {
    pub mcc: String,
    pub mnc: String,
}

/// `Ecgi`: E-UTRAN Cell Global Identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ecgi {
    pub plmn: Plmn,
    /// The 28-bit cell identity as a string (ferry uses the hex form from the topology file).
    pub cell_id: String,
}

/// `AssociateId.type` (MEC 012 `Type`): a number on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum AssociateIdType {
    Reserved = 0,
    UeIpv4Address = 1,
    UeIpv6Address = 2,
    NatedIpAddress = 3,
    GtpTeid = 4,
}

impl TryFrom<u8> for AssociateIdType {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        Ok(match v {
            0 => AssociateIdType::Reserved,
            1 => AssociateIdType::UeIpv4Address,
            2 => AssociateIdType::UeIpv6Address,
            3 => AssociateIdType::NatedIpAddress,
            4 => AssociateIdType::GtpTeid,
            _ => {
                return Err(format!(
                    "associateId type {v} is not one of 0..=4 (1 = UE_IPv4_ADDRESS)"
                ))
            }
        })
    }
}

impl From<AssociateIdType> for u8 {
    fn from(t: AssociateIdType) -> u8 {
        t as u8
    }
}

/// `AssociateId`: identifies a UE or a flow (ferry uses the UE's IPv4 address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociateId {
    #[serde(rename = "type")]
    pub type_: AssociateIdType,
    pub value: String,
}

impl AssociateId {
    pub fn ue_ipv4(address: std::net::Ipv4Addr) -> AssociateId {
        AssociateId {
            type_: AssociateIdType::UeIpv4Address,
            value: address.to_string(),
        }
    }
}

/// `HoStatus`: state of a handover procedure; a number on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum HoStatus {
    InPreparation = 1,
    InExecution = 2,
    Completed = 3,
    Rejected = 4,
    Cancelled = 5,
}

impl TryFrom<u8> for HoStatus {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        Ok(match v {
            1 => HoStatus::InPreparation,
            2 => HoStatus::InExecution,
            3 => HoStatus::Completed,
            4 => HoStatus::Rejected,
            5 => HoStatus::Cancelled,
            _ => return Err(format!("hoStatus {v} is not one of 1..=5 (3 = COMPLETED)")),
        })
    }
}

impl From<HoStatus> for u8 {
    fn from(s: HoStatus) -> u8 {
        s as u8
    }
}

/// `LinkType`: a hyperlink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkType {
    pub href: String,
}

/// `Links` of a subscription: its self-referring URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: LinkType,
}

/// `FilterCriteriaAssocHo`: which handovers a cell change subscription wants. An absent or empty
/// list does not filter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterCriteriaAssocHo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associate_id: Vec<AssociateId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ecgi: Vec<Ecgi>,
    /// Absent in a request means `[COMPLETED]`, which the response then carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ho_status: Vec<HoStatus>,
}

/// `CellChangeSubscription`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CellChangeSubscription {
    pub subscription_type: String,
    /// Required by v2.1.1; v2.2.1 also allows websockets, which ferry does not offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_reference: Option<String>,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<Links>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_deadline: Option<TimeStamp>,
    pub filter_criteria_assoc_ho: FilterCriteriaAssocHo,
}

/// `TempUeId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TempUeId {
    pub mmec: String,
    pub mtmsi: String,
}

/// `_links` of a notification (v2.2.1): the subscription it is sent for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationLinks {
    pub subscription: LinkType,
}

/// `CellChangeNotification`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CellChangeNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    #[serde(default)]
    pub associate_id: Vec<AssociateId>,
    pub src_ecgi: Ecgi,
    pub trg_ecgi: Vec<Ecgi>,
    pub ho_status: HoStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_ue_id: Option<TempUeId>,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<NotificationLinks>,
    /// ferry's extension: this notification stands for this many handovers of the UE (the
    /// RAN's queue to the subscriber was full, so it merged them: `srcEcgi` is the cell the
    /// first one left, `trgEcgi` and `timeStamp` those of the last). Absent: one handover.
    #[serde(
        rename = "ferryMergedHandovers",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ferry_merged_handovers: Option<u32>,
    /// ferry's extension: notifications of this subscription the producer could not deliver
    /// since the last one that said so (the subscriber should re-read where its UEs are).
    #[serde(
        rename = "ferryLostNotifications",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ferry_lost_notifications: Option<u64>,
}

/// `_links` of an `ExpiryNotification`: v2.1.1 names the subscription by `self` (a string),
/// v2.2.1 by `subscription` (a link); ferry sends both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryLinks {
    #[serde(rename = "self")]
    pub self_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<LinkType>,
}

/// `ExpiryNotification`: sent to the callback when a subscription's `expiryDeadline` passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryNotification {
    pub notification_type: String,
    #[serde(rename = "_links")]
    pub links: ExpiryLinks,
    pub expiry_deadline: TimeStamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
}

/// One entry of a `SubscriptionLinkList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRef {
    pub href: String,
    pub subscription_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionLinks {
    #[serde(rename = "self")]
    pub self_: LinkType,
    #[serde(default)]
    pub subscription: Vec<SubscriptionRef>,
}

/// `SubscriptionLinkList`: the answer of `GET /subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionLinkList {
    #[serde(rename = "_links")]
    pub links: SubscriptionLinks,
}

/// `QosInformation` (only for GBR bearers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QosInformation {
    pub erab_mbr_dl: u64,
    pub erab_mbr_ul: u64,
    pub erab_gbr_dl: u64,
    pub erab_gbr_ul: u64,
}

/// `ErabQosParameters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErabQosParameters {
    pub qci: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos_information: Option<QosInformation>,
}

/// `ErabInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErabInfo {
    pub erab_id: u32,
    pub erab_qos_parameters: ErabQosParameters,
}

/// `UeInfo` inside `RabInfo.cellUserInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UeInfo {
    pub associate_id: Vec<AssociateId>,
    pub erab_info: Vec<ErabInfo>,
}

/// `CellUserInfo`: the UEs of one cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CellUserInfo {
    pub ecgi: Ecgi,
    pub ue_info: Vec<UeInfo>,
}

/// `RabInfo`: the answer of `GET /queries/rab_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RabInfo {
    pub app_instance_id: String,
    pub request_id: String,
    #[serde(default)]
    pub cell_user_info: Vec<CellUserInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
}

/// `PlmnInfo`: one element of the answer of `GET /queries/plmn_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlmnInfo {
    pub app_instance_id: String,
    pub plmn: Vec<Plmn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_enums_on_the_wire() {
        let a = AssociateId::ue_ipv4("10.0.0.7".parse().unwrap());
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v, serde_json::json!({"type": 1, "value": "10.0.0.7"}));
        assert_eq!(serde_json::to_value(HoStatus::Completed).unwrap(), 3);
        let bad = serde_json::from_str::<HoStatus>("9")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("1..=5"), "{bad}");
        assert!(serde_json::from_str::<AssociateIdType>("\"UE_IPv4_ADDRESS\"").is_err());
    }

    #[test]
    fn subscription_round_trip_uses_spec_names() {
        let text = r#"{"subscriptionType":"CellChangeSubscription",
            "callbackReference":"http://127.0.0.1:9/cb",
            "expiryDeadline":{"seconds":1700000000,"nanoSeconds":5},
            "filterCriteriaAssocHo":{"associateId":[{"type":1,"value":"10.0.0.1"}],
              "ecgi":[{"plmn":{"mcc":"001","mnc":"01"},"cellId":"0000001"}],"hoStatus":[3]}}"#;
        let s: CellChangeSubscription = serde_json::from_str(text).unwrap();
        assert_eq!(
            s.filter_criteria_assoc_ho.ho_status,
            vec![HoStatus::Completed]
        );
        assert_eq!(s.expiry_deadline.unwrap().nano_seconds, 5);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["filterCriteriaAssocHo"]["ecgi"][0]["cellId"], "0000001");
        assert!(v.get("_links").is_none());
    }

    #[test]
    fn timestamp_converts_both_ways() {
        let t = TimeStamp {
            seconds: 1_700_000_000,
            nano_seconds: 42,
        };
        assert_eq!(TimeStamp::from_system_time(t.to_system_time()), t);
    }
}
