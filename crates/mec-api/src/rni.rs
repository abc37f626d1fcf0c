//! ETSI GS MEC 012 Radio Network Information API (RNIS, `/rni/v2`): the data types of the
//! resources ferry's emulated RAN serves (cell change subscriptions and notifications, RAB and
//! PLMN queries).
//!
//! Follows `shared/etsi-mec/MEC012_RniAPI.yaml` (v2.1.1). Where v2.1.1 is silent, fields that
//! v2.2.1 adds are taken too (`notificationType` and `_links.subscription` in notifications),
//! and the NR and carrier aggregation notifications follow v2.2.1's schemas.
//! MEC 012 defines `AssociateId.type` and `hoStatus` as *numbers* (1 = UE_IPv4_ADDRESS,
//! 3 = COMPLETED) in every version, unlike other MEC APIs: they are numbers on the wire here.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `subscriptionType` of a cell change subscription.
pub const CELL_CHANGE_SUBSCRIPTION: &str = "CellChangeSubscription";
/// `notificationType` of a cell change notification.
pub const CELL_CHANGE_NOTIFICATION: &str = "CellChangeNotification";
/// `notificationType` of the other notifications.
pub const RAB_EST_NOTIFICATION: &str = "RabEstNotification";
pub const RAB_MOD_NOTIFICATION: &str = "RabModNotification";
pub const RAB_REL_NOTIFICATION: &str = "RabRelNotification";
pub const MEAS_REP_UE_NOTIFICATION: &str = "MeasRepUeNotification";
pub const MEAS_TA_NOTIFICATION: &str = "MeasTaNotification";
pub const S1_BEARER_NOTIFICATION: &str = "S1BearerNotification";
pub const NR_MEAS_REP_UE_NOTIFICATION: &str = "NrMeasRepUeNotification";
pub const CA_RECONF_NOTIFICATION: &str = "CaReconfNotification";
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

/// `FilterCriteriaAssoc` (MeasTa, CaReconf): which UEs and cells. Empty lists do not filter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterCriteriaAssoc {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associate_id: Vec<AssociateId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ecgi: Vec<Ecgi>,
}

/// `FilterCriteriaAssocTri` (MeasRepUe): UEs, cells and report triggers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterCriteriaAssocTri {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associate_id: Vec<AssociateId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ecgi: Vec<Ecgi>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trigger: Vec<Trigger>,
}

/// `NRcgi`: NR Cell Global Identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nrcgi {
    pub plmn: Plmn,
    pub nrcell_id: String,
}

/// `FilterCriteriaNrMrs` (NrMeasRepUe): UEs, NR cells and report triggers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterCriteriaNrMrs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associate_id: Vec<AssociateId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nrcgi: Vec<Nrcgi>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trigger_nr: Vec<TriggerNr>,
}

/// `FilterCriteriaQci` (RabEst) and `FilterCriteriaQci1` (RabMod, RabRel, which also require
/// `erabId`): bearers of one QCI, optionally one E-RAB id, in some cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterCriteriaQci {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ecgi: Vec<Ecgi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erab_id: Option<u32>,
    pub qci: u32,
}

/// `S1BearerSubscriptionCriteria`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S1BearerSubscriptionCriteria {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associate_id: Vec<AssociateId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ecgi: Vec<Ecgi>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erab_id: Vec<u32>,
}

/// Declares a numeric enum of MEC 012 (numbers on the wire, refused with a reason if unknown).
macro_rules! numeric_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $n:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "u8", into = "u8")]
        pub enum $name { $($(#[$vm])* $v = $n),+ }

        impl TryFrom<u8> for $name {
            type Error = String;
            fn try_from(v: u8) -> Result<Self, String> {
                match v {
                    $($n => Ok($name::$v),)+
                    _ => Err(format!(
                        "{} {v} is not one of {:?}", stringify!($name), [$($n),+]
                    )),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(t: $name) -> u8 {
                t as u8
            }
        }
    };
}

numeric_enum!(
    /// `Trigger`: what made an E-UTRAN measurement report (TS 36.331).
    Trigger {
        NotAvailable = 0,
        PeriodicalReportStrongestCells = 1,
        PeriodicalReportStrongestCellsForSon = 2,
        PeriodicalReportCgi = 3,
        IntraPeriodicalReportStrongestCells = 4,
        IntraPeriodicalReportCgi = 5,
        EventA1 = 10,
        EventA2 = 11,
        EventA3 = 12,
        EventA4 = 13,
        EventA5 = 14,
        EventA6 = 15,
        EventB1 = 20,
        EventB2 = 21,
        EventC1 = 30,
        EventC2 = 31,
        EventW1 = 40,
        EventW2 = 41,
        EventW3 = 42,
        EventV1 = 50,
        EventV2 = 51,
        EventH1 = 60,
        EventH2 = 61,
    }
);

numeric_enum!(
    /// `TriggerNr`: what made a 5G measurement report (TS 38.331).
    TriggerNr {
        NotAvailable = 0,
        NrPeriodical = 1,
        NrCgi = 2,
        EventA1 = 10,
        EventA2 = 11,
        EventA3 = 12,
        EventA4 = 13,
        EventA5 = 14,
        EventA6 = 15,
        InterRatPeriodical = 20,
        InterRatCgi = 21,
        EventB1 = 30,
        EventB2 = 31,
    }
);

numeric_enum!(
    /// S1 bearer events (`S1BearerSubscription.eventType`, `S1BearerNotification.s1Event`).
    S1Event {
        Reserved = 0,
        Establish = 1,
        Modify = 2,
        Release = 3,
    }
);

/// What a subscription is about: its `subscriptionType` and the criteria of that type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "subscriptionType")]
pub enum SubscriptionKind {
    #[serde(rename = "CellChangeSubscription", rename_all = "camelCase")]
    CellChange {
        filter_criteria_assoc_ho: FilterCriteriaAssocHo,
    },
    #[serde(rename = "RabEstSubscription", rename_all = "camelCase")]
    RabEst {
        filter_criteria_qci: FilterCriteriaQci,
    },
    #[serde(rename = "RabModSubscription", rename_all = "camelCase")]
    RabMod {
        filter_criteria_qci: FilterCriteriaQci,
    },
    #[serde(rename = "RabRelSubscription", rename_all = "camelCase")]
    RabRel {
        filter_criteria_qci: FilterCriteriaQci,
    },
    #[serde(rename = "MeasRepUeSubscription", rename_all = "camelCase")]
    MeasRepUe {
        filter_criteria_assoc_tri: FilterCriteriaAssocTri,
    },
    #[serde(rename = "NrMeasRepUeSubscription", rename_all = "camelCase")]
    NrMeasRepUe {
        filter_criteria_nr_mrs: FilterCriteriaNrMrs,
    },
    #[serde(rename = "MeasTaSubscription", rename_all = "camelCase")]
    MeasTa {
        filter_criteria_assoc: FilterCriteriaAssoc,
    },
    #[serde(rename = "CaReconfSubscription", rename_all = "camelCase")]
    CaReconf {
        filter_criteria_assoc: FilterCriteriaAssoc,
    },
    #[serde(rename = "S1BearerSubscription", rename_all = "camelCase")]
    S1Bearer {
        #[serde(rename = "S1BearerSubscriptionCriteria")]
        criteria: S1BearerSubscriptionCriteria,
        event_type: Vec<S1Event>,
    },
}

impl SubscriptionKind {
    /// Its `subscriptionType` and the `subscription_type` query value selecting it.
    pub fn names(&self) -> (&'static str, &'static str) {
        let i = match self {
            SubscriptionKind::CellChange { .. } => 0,
            SubscriptionKind::RabEst { .. } => 1,
            SubscriptionKind::RabMod { .. } => 2,
            SubscriptionKind::RabRel { .. } => 3,
            SubscriptionKind::MeasRepUe { .. } => 4,
            SubscriptionKind::NrMeasRepUe { .. } => 5,
            SubscriptionKind::MeasTa { .. } => 6,
            SubscriptionKind::CaReconf { .. } => 7,
            SubscriptionKind::S1Bearer { .. } => 8,
        };
        (SUBSCRIPTION_TYPES[i].1, SUBSCRIPTION_TYPES[i].0)
    }
}

/// A MEC 012 subscription of any type (`CellChangeSubscription`, `RabEstSubscription`, ...):
/// the attributes all types share, and the type with its criteria.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RniSubscription {
    #[serde(flatten)]
    pub kind: SubscriptionKind,
    /// Required by v2.1.1; v2.2.1 also allows websockets, which ferry does not offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_reference: Option<String>,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<Links>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_deadline: Option<TimeStamp>,
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

/// `RabEstNotification`: the UE's E-RAB was set up in `ecgi`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RabEstNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    #[serde(default)]
    pub associate_id: Vec<AssociateId>,
    pub ecgi: Ecgi,
    pub erab_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erab_qos_parameters: Option<ErabQosParameters>,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<NotificationLinks>,
}

/// `RabModNotification`: the QoS of the UE's E-RAB in `ecgi` changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RabModNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    #[serde(default)]
    pub associate_id: Vec<AssociateId>,
    pub ecgi: Ecgi,
    pub erab_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erab_qos_parameters: Option<ErabQosParameters>,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<NotificationLinks>,
}

/// `ErabReleaseInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErabReleaseInfo {
    pub erab_id: u32,
}

/// `RabRelNotification`: the UE's E-RAB in `ecgi` was released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RabRelNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    #[serde(default)]
    pub associate_id: Vec<AssociateId>,
    pub ecgi: Ecgi,
    pub erab_release_info: ErabReleaseInfo,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<NotificationLinks>,
}

/// `EutranNeighbourCellMeasInfo`: a neighbour cell in a `MeasRepUeNotification` (report
/// ranges of TS 36.133).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EutranNeighbourCellMeasInfo {
    pub ecgi: Ecgi,
    pub rsrp: u8,
    pub rsrq: u8,
    pub sinr: u8,
}

/// `MeasRepUeNotification`: one E-UTRAN measurement report of a UE (TS 36.133 ranges: rsrp
/// 0..=97, rsrq 0..=34, sinr 0..=127).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasRepUeNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    #[serde(default)]
    pub associate_id: Vec<AssociateId>,
    pub ecgi: Ecgi,
    pub rsrp: u8,
    pub rsrq: u8,
    pub sinr: u8,
    pub trigger: Trigger,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eutran_neighbour_cell_meas_info: Vec<EutranNeighbourCellMeasInfo>,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<NotificationLinks>,
}

/// `MeasTaNotification`: a UE's timing advance towards its serving cell (TS 36.213 units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasTaNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    #[serde(default)]
    pub associate_id: Vec<AssociateId>,
    pub ecgi: Ecgi,
    pub timing_advance: u32,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<NotificationLinks>,
}

/// `MeasQuantityResultsNr`: one NR cell's (or beam's) SS or CSI-RS measurement, as TS 38.133
/// report indices (rsrp 0..=126, rsrq 0..=127, sinr 0..=127).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasQuantityResultsNr {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsrp: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsrq: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sinr: Option<u8>,
}

/// `SCell` / `NCell` of a `ServCellMeasInfo`: the serving cell's and its best neighbour's
/// measurements (ferry reports the SS/PBCH block ones only; no beam-level results).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NrCellMeas {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meas_quantity_results_ssb_cell: Option<MeasQuantityResultsNr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meas_quantity_results_csi_rs_cell: Option<MeasQuantityResultsNr>,
}

/// `ServCellMeasInfo`: an NR serving cell in a `NrMeasRepUeNotification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServCellMeasInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nrcgi: Option<Nrcgi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s_cell: Option<NrCellMeas>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_cell: Option<NrCellMeas>,
}

/// `NrNeighCellMeasInfo`: an NR neighbour cell (v2.2.1: `nrcgi` is an `NRcgi` object; v2.1.1
/// had a bare string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NrNeighCellMeasInfo {
    pub nrcgi: Nrcgi,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meas_quantity_results_ssb_cell: Option<MeasQuantityResultsNr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meas_quantity_results_csi_rs_cell: Option<MeasQuantityResultsNr>,
}

/// `EutraNeighCellMeasInfo`: an E-UTRA neighbour in a `NrMeasRepUeNotification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EutraNeighCellMeasInfo {
    pub ecgi: Ecgi,
    pub rsrp: u8,
    pub rsrq: u8,
    pub sinr: u8,
}

/// `NrMeasRepUeNotification`: one 5G measurement report of a UE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NrMeasRepUeNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    #[serde(default)]
    pub associate_id: Vec<AssociateId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serv_cell_meas_info: Vec<ServCellMeasInfo>,
    /// The spec allows this or `eutraNeighCellMeasInfo`, never both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nr_neigh_cell_meas_info: Vec<NrNeighCellMeasInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eutra_neigh_cell_meas_info: Vec<EutraNeighCellMeasInfo>,
    pub trigger_nr: TriggerNr,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<NotificationLinks>,
}

/// `CarrierAggregationMeasInfo` (v2.2.1 `CarrierAggregationMeasInfo1`): one secondary carrier
/// (`Nei`) against the primary cell (`Srv`), TS 36.133 report indices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CarrierAggregationMeasInfo {
    pub cell_id_srv: String,
    pub cell_id_nei: String,
    pub rsrp_srv: u8,
    pub rsrq_srv: u8,
    pub sinr_srv: u8,
    pub rsrp_nei: u8,
    pub rsrq_nei: u8,
    pub sinr_nei: u8,
}

/// `SecondaryCellAdd` / `SecondaryCellRemove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondaryCell {
    pub ecgi: Ecgi,
}

/// `CaReconfNotification`: a UE's carrier aggregation changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaReconfNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    #[serde(default)]
    pub associate_id: Vec<AssociateId>,
    /// The primary cell.
    pub ecgi: Ecgi,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carrier_aggregation_meas_info: Vec<CarrierAggregationMeasInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_cell_add: Vec<SecondaryCell>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_cell_remove: Vec<SecondaryCell>,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<NotificationLinks>,
}

/// `EnbInfo` / `SGwInfo`: one end of an S1-U bearer (transport address and GTP-U TEID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelEnd {
    pub ip_address: String,
    pub tunnel_id: String,
}

/// `S1BearerInfoDetailed` / `S1BearerInfo1`: one S1 bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S1BearerDetail {
    pub erab_id: u32,
    pub enb_info: TunnelEnd,
    #[serde(rename = "sGwInfo")]
    pub sgw_info: TunnelEnd,
}

/// `S1UeInfo` (query answer; the bearers under `s1BearerInfoDetailed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S1UeInfo {
    pub associate_id: Vec<AssociateId>,
    pub ecgi: Vec<Ecgi>,
    pub s1_bearer_info_detailed: Vec<S1BearerDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_ue_id: Option<TempUeId>,
}

/// `S1BearerInfo`: the answer of `GET /queries/s1_bearer_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S1BearerInfo {
    pub s1_ue_info: Vec<S1UeInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
}

/// `S1UeInfo1` (notification; the bearers under `s1BearerInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S1NotifiedUe {
    #[serde(default)]
    pub associate_id: Vec<AssociateId>,
    pub ecgi: Vec<Ecgi>,
    pub s1_bearer_info: Vec<S1BearerDetail>,
}

/// `S1BearerNotification`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S1BearerNotification {
    pub notification_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<TimeStamp>,
    pub s1_event: S1Event,
    pub s1_ue_info: S1NotifiedUe,
    #[serde(rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<NotificationLinks>,
}

/// `CellInfo` of `L2Meas` (names as in the spec, snake case). Only what the emulated RAN
/// can estimate is given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct L2CellInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecgi: Option<Ecgi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dl_gbr_prb_usage_cell: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ul_gbr_prb_usage_cell: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dl_nongbr_prb_usage_cell: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ul_nongbr_prb_usage_cell: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dl_total_prb_usage_cell: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ul_total_prb_usage_cell: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_active_ue_dl_gbr_cell: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_active_ue_ul_gbr_cell: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_active_ue_dl_nongbr_cell: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_active_ue_ul_nongbr_cell: Option<u32>,
}

/// `CellUEInfo` of `L2Meas`: one UE's estimates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct L2UeInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecgi: Option<Ecgi>,
    #[serde(rename = "associateId", skip_serializing_if = "Option::is_none")]
    pub associate_id: Option<AssociateId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dl_gbr_throughput_ue: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ul_gbr_throughput_ue: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dl_nongbr_throughput_ue: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ul_nongbr_throughput_ue: Option<u32>,
}

/// `L2Meas`: the answer of `GET /queries/layer2_meas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2Meas {
    #[serde(default)]
    pub cell_info: Vec<L2CellInfo>,
    #[serde(rename = "cellUEInfo", default)]
    pub cell_ue_info: Vec<L2UeInfo>,
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
        let s: RniSubscription = serde_json::from_str(text).unwrap();
        let SubscriptionKind::CellChange {
            filter_criteria_assoc_ho: f,
        } = &s.kind
        else {
            panic!("{s:?}")
        };
        assert_eq!(f.ho_status, vec![HoStatus::Completed]);
        assert_eq!(s.expiry_deadline.unwrap().nano_seconds, 5);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["filterCriteriaAssocHo"]["ecgi"][0]["cellId"], "0000001");
        assert!(v.get("_links").is_none());
        assert_eq!(v["subscriptionType"], "CellChangeSubscription");
    }

    #[test]
    fn every_type_round_trips_with_its_spec_name() {
        let bodies = [
            r#"{"subscriptionType":"RabEstSubscription","callbackReference":"c","filterCriteriaQci":{"qci":9}}"#,
            r#"{"subscriptionType":"RabModSubscription","callbackReference":"c","filterCriteriaQci":{"qci":9,"erabId":1}}"#,
            r#"{"subscriptionType":"RabRelSubscription","callbackReference":"c","filterCriteriaQci":{"qci":9,"erabId":1}}"#,
            r#"{"subscriptionType":"MeasRepUeSubscription","callbackReference":"c","filterCriteriaAssocTri":{"trigger":[1,12]}}"#,
            r#"{"subscriptionType":"NrMeasRepUeSubscription","callbackReference":"c","filterCriteriaNrMrs":{"triggerNr":[1]}}"#,
            r#"{"subscriptionType":"MeasTaSubscription","callbackReference":"c","filterCriteriaAssoc":{}}"#,
            r#"{"subscriptionType":"CaReconfSubscription","callbackReference":"c","filterCriteriaAssoc":{}}"#,
            r#"{"subscriptionType":"S1BearerSubscription","callbackReference":"c","S1BearerSubscriptionCriteria":{"erabId":[1]},"eventType":[1,3]}"#,
        ];
        for (b, (query, name)) in bodies.iter().zip(&SUBSCRIPTION_TYPES[1..]) {
            let s: RniSubscription = serde_json::from_str(b).unwrap();
            assert_eq!(s.kind.names(), (*name, *query));
            let back = serde_json::to_value(&s).unwrap();
            let orig: serde_json::Value = serde_json::from_str(b).unwrap();
            assert_eq!(back, orig, "{name}");
        }
        let bad = serde_json::from_str::<RniSubscription>(
            r#"{"subscriptionType":"MeasRepUeSubscription","filterCriteriaAssocTri":{"trigger":[7]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("Trigger 7"), "{bad}");
        assert!(serde_json::from_str::<RniSubscription>(
            r#"{"subscriptionType":"RabEstSubscription","callbackReference":"c"}"#
        )
        .is_err());
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
