//! ETSI GS MEC 013 Location API (`/location/v2`): the data types of the resources ferry's
//! emulated RAN serves (user, zone, access point and distance queries; user tracking and zonal
//! traffic subscriptions and their `ZonalPresenceNotification`s; distance and circle
//! subscriptions and their `SubscriptionNotification`s).
//!
//! Follows `docs/etsi-mec/MEC013_LocationAPI.yaml` (v2.2.1). Request and response bodies are
//! wrapped in an object named after the type (`{"userTrackingSubscription": {...}}`), as the
//! spec's paths define; the `*Body` types are those wrappers.

use serde::{Deserialize, Serialize};

/// MEC 013 defines the same `TimeStamp` as MEC 012.
pub use crate::rni::TimeStamp;

/// `UserEventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserEventType {
    Entering,
    Leaving,
    Transferring,
}

/// `ConnectionType` of an access point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionType {
    Femto,
    #[serde(rename = "LTE-femto")]
    LteFemto,
    Smallcell,
    #[serde(rename = "LTE-smallcell")]
    LteSmallcell,
    Wifi,
    Pico,
    Micro,
    Macro,
    Wimax,
    Unknown,
}

/// `OperationStatus` of an access point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationStatus {
    Serviceable,
    Unserviceable,
    Unknown,
}

/// `LocationInfo`, as a point (`shape` 2 = ELLIPSOID_POINT) in ferry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationInfo {
    pub latitude: Vec<f64>,
    pub longitude: Vec<f64>,
    pub shape: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<TimeStamp>,
}

impl LocationInfo {
    /// `shape` value of a point without uncertainty.
    pub const ELLIPSOID_POINT: u8 = 2;

    pub fn point(latitude: f64, longitude: f64, timestamp: Option<TimeStamp>) -> LocationInfo {
        LocationInfo {
            latitude: vec![latitude],
            longitude: vec![longitude],
            shape: Self::ELLIPSOID_POINT,
            timestamp,
        }
    }
}

/// `UserInfo`: where one user is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// `acr:<IPv4>` in ferry.
    pub address: String,
    pub access_point_id: String,
    pub zone_id: String,
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    pub timestamp: TimeStamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_info: Option<LocationInfo>,
}

/// `UserList`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserList {
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    #[serde(default)]
    pub user: Vec<UserInfo>,
}

/// `ZoneInfo`: in ferry a zone is the set of cells one MEC host serves (zoneId = host name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneInfo {
    pub zone_id: String,
    pub number_of_access_points: u32,
    pub number_of_unserviceable_access_points: u32,
    pub number_of_users: u32,
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
}

/// `ZoneList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneList {
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    #[serde(default)]
    pub zone: Vec<ZoneInfo>,
}

/// `AccessPointInfo`: in ferry an access point is a cell (accessPointId = cell name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPointInfo {
    pub access_point_id: String,
    pub connection_type: ConnectionType,
    pub operation_status: OperationStatus,
    pub number_of_users: u32,
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_info: Option<LocationInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interest_realm: Option<String>,
}

/// `AccessPointList`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPointList {
    pub zone_id: String,
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    #[serde(default)]
    pub access_point: Vec<AccessPointInfo>,
}

/// `CallbackReference`: where notifications go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackReference {
    #[serde(rename = "notifyURL")]
    pub notify_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    /// `XML` or `JSON`; ferry only sends JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_format: Option<String>,
}

/// `Link`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub rel: String,
    pub href: String,
}

/// `UserTrackingSubscription`: zone events of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserTrackingSubscription {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_correlator: Option<String>,
    pub callback_reference: CallbackReference,
    pub address: String,
    /// Absent: every event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_event_criteria: Option<Vec<UserEventType>>,
    #[serde(rename = "resourceURL", skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
}

/// `ZonalTrafficSubscription`: users entering, leaving or moving inside one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZonalTrafficSubscription {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_correlator: Option<String>,
    pub callback_reference: CallbackReference,
    pub zone_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interest_realm: Option<Vec<String>>,
    /// Absent: every event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_event_criteria: Option<Vec<UserEventType>>,
    /// Seconds the subscription lasts (absent or 0: until deleted, ferry's policy). In a
    /// response: the seconds it is still valid for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    #[serde(rename = "resourceURL", skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
}

/// `ZonalPresenceNotification`: sent for both subscription kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZonalPresenceNotification {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_correlator: Option<String>,
    pub zone_id: String,
    pub address: String,
    pub user_event_type: UserEventType,
    pub current_access_point_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_access_point_id: Option<String>,
    pub timestamp: TimeStamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<Link>,
}

/// `NotificationSubscriptionList` (the kinds ferry serves).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSubscriptionList {
    #[serde(rename = "resourceURL")]
    pub resource_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_tracking_subscription: Option<Vec<UserTrackingSubscription>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zonal_traffic_subscription: Option<Vec<ZonalTrafficSubscription>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_notification_subscription: Option<Vec<DistanceNotificationSubscription>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circle_notification_subscription: Option<Vec<CircleNotificationSubscription>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub periodic_notification_subscription: Option<Vec<PeriodicNotificationSubscription>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_status_subscription: Option<Vec<ZoneStatusSubscription>>,
}

/// `{"userTrackingSubscription": ...}`: request and response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserTrackingSubscriptionBody {
    pub user_tracking_subscription: UserTrackingSubscription,
}

/// `{"zonalTrafficSubscription": ...}`: request and response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZonalTrafficSubscriptionBody {
    pub zonal_traffic_subscription: ZonalTrafficSubscription,
}

/// `{"zonalPresenceNotification": ...}`: the body POSTed to a callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZonalPresenceNotificationBody {
    pub zonal_presence_notification: ZonalPresenceNotification,
}

/// `{"notificationSubscriptionList": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSubscriptionListBody {
    pub notification_subscription_list: NotificationSubscriptionList,
}

/// `{"userList": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserListBody {
    pub user_list: UserList,
}

/// `{"zoneList": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneListBody {
    pub zone_list: ZoneList,
}

/// `{"zoneInfo": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneInfoBody {
    pub zone_info: ZoneInfo,
}

/// `{"accessPointList": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPointListBody {
    pub access_point_list: AccessPointList,
}

/// `{"accessPointInfo": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPointInfoBody {
    pub access_point_info: AccessPointInfo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_subscription_parses() {
        // The request example of POST /subscriptions/userTracking in the v2.2.1 file.
        let text = r#"{"userTrackingSubscription":{"clientCorrelator":"0123",
            "callbackReference":{"notifyURL":"http://my.callback.com/location_notifications/some-id"},
            "address":"acr:10.0.0.1","userEventCriteria":["Transferring"]}}"#;
        let b: UserTrackingSubscriptionBody = serde_json::from_str(text).unwrap();
        let s = b.user_tracking_subscription;
        assert_eq!(
            s.user_event_criteria,
            Some(vec![UserEventType::Transferring])
        );
        assert!(s.callback_reference.notify_url.ends_with("some-id"));
    }

    #[test]
    fn notification_uses_spec_field_names() {
        let n = ZonalPresenceNotification {
            client_correlator: None,
            zone_id: "edge-a".into(),
            address: "acr:10.0.0.1".into(),
            user_event_type: UserEventType::Entering,
            current_access_point_id: "cell-1".into(),
            previous_access_point_id: Some("cell-0".into()),
            timestamp: TimeStamp {
                seconds: 1,
                nano_seconds: 2,
            },
            callback_data: None,
            link: vec![],
        };
        let v = serde_json::to_value(ZonalPresenceNotificationBody {
            zonal_presence_notification: n,
        })
        .unwrap();
        let n = &v["zonalPresenceNotification"];
        assert_eq!(n["userEventType"], "Entering");
        assert_eq!(n["currentAccessPointId"], "cell-1");
        assert_eq!(n["timestamp"]["nanoSeconds"], 2);
        assert_eq!(
            serde_json::to_value(ConnectionType::LteSmallcell).unwrap(),
            "LTE-smallcell"
        );
    }
}

/// `DistanceCriteria`: when a distance subscription notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DistanceCriteria {
    AllWithinDistance,
    AnyWithinDistance,
    AllBeyondDistance,
    AnyBeyondDistance,
}

/// `EnteringLeavingCriteria`: when an area (circle) subscription notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnteringLeavingCriteria {
    Entering,
    Leaving,
}

/// `DistanceNotificationSubscription`: the distance of users to a reference user (or between
/// the users) crossing `distance` metres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DistanceNotificationSubscription {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_correlator: Option<String>,
    pub callback_reference: CallbackReference,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_address: Vec<String>,
    pub monitored_address: Vec<String>,
    pub distance: f64,
    pub tracking_accuracy: f64,
    pub criteria: DistanceCriteria,
    pub check_immediate: bool,
    /// Minimum seconds between notifications.
    pub frequency: u32,
    /// Seconds the subscription lasts (absent or 0: until deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// Notifications after which the subscription ends (absent or 0: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    #[serde(rename = "resourceURL", skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<Link>,
}

/// `CircleNotificationSubscription`: users entering or leaving a circle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircleNotificationSubscription {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_correlator: Option<String>,
    pub callback_reference: CallbackReference,
    pub address: Vec<String>,
    pub latitude: f64,
    pub longitude: f64,
    /// Metres.
    pub radius: f64,
    pub tracking_accuracy: f64,
    pub entering_leaving_criteria: EnteringLeavingCriteria,
    pub check_immediate: bool,
    /// Minimum seconds between notifications.
    pub frequency: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    #[serde(rename = "resourceURL", skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<Link>,
}

/// `{"distanceNotificationSubscription": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DistanceNotificationSubscriptionBody {
    pub distance_notification_subscription: DistanceNotificationSubscription,
}

/// `{"circleNotificationSubscription": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircleNotificationSubscriptionBody {
    pub circle_notification_subscription: CircleNotificationSubscription,
}

/// `RetrievalStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetrievalStatus {
    Retrieved,
    NotRetrieved,
    Error,
}

/// `TerminalLocation`: where one user is, in a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalLocation {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_location: Option<LocationInfo>,
    pub location_retrieval_status: RetrievalStatus,
}

/// `SubscriptionNotification`: what distance and circle subscriptions send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionNotification {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_criteria: Option<DistanceCriteria>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entering_leaving_criteria: Option<EnteringLeavingCriteria>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_final_notification: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<Link>,
    pub terminal_location: Vec<TerminalLocation>,
}

/// `{"subscriptionNotification": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionNotificationBody {
    pub subscription_notification: SubscriptionNotification,
}

/// `TerminalDistance`: the answer of the distance query (metres).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalDistance {
    pub distance: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<TimeStamp>,
}

/// `{"terminalDistance": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalDistanceBody {
    pub terminal_distance: TerminalDistance,
}

/// `PeriodicNotificationSubscription`: where users are, every `frequency` seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeriodicNotificationSubscription {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_correlator: Option<String>,
    pub callback_reference: CallbackReference,
    pub address: Vec<String>,
    /// Metres.
    pub requested_accuracy: u32,
    /// Seconds between notifications.
    pub frequency: u32,
    /// Seconds the subscription lasts (absent or 0: until deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    #[serde(rename = "resourceURL", skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<Link>,
}

/// `{"periodicNotificationSubscription": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeriodicNotificationSubscriptionBody {
    pub periodic_notification_subscription: PeriodicNotificationSubscription,
}

/// `ZoneStatusSubscription`: the number of users in a zone or one of its access points
/// reaching a threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatusSubscription {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_correlator: Option<String>,
    pub callback_reference: CallbackReference,
    pub zone_id: String,
    #[serde(
        rename = "numberOfUsersZoneThreshold",
        skip_serializing_if = "Option::is_none"
    )]
    pub number_of_users_zone_threshold: Option<u32>,
    #[serde(
        rename = "numberOfUsersAPThreshold",
        skip_serializing_if = "Option::is_none"
    )]
    pub number_of_users_ap_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operation_status: Vec<OperationStatus>,
    #[serde(rename = "resourceURL", skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
}

/// `{"zoneStatusSubscription": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatusSubscriptionBody {
    pub zone_status_subscription: ZoneStatusSubscription,
}

/// `ZoneStatusNotification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatusNotification {
    pub zone_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_point_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    #[serde(
        rename = "numberOfUsersInZone",
        skip_serializing_if = "Option::is_none"
    )]
    pub number_of_users_in_zone: Option<u32>,
    #[serde(rename = "numberOfUsersInAP", skip_serializing_if = "Option::is_none")]
    pub number_of_users_in_ap: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_status: Option<OperationStatus>,
    pub timestamp: TimeStamp,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<Link>,
}

/// `{"zoneStatusNotification": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatusNotificationBody {
    pub zone_status_notification: ZoneStatusNotification,
}
