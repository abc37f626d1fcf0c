//! MEC 012 RNIS (`/rni/v2`): subscriptions of every type the spec defines (create, list with
//! the `subscription_type` filter, read, update, delete, expiry) in one store, their
//! notifications from what the emulated RAN does, and the `rab_info`, `plmn_info`,
//! `s1_bearer_info` and `layer2_meas` queries.
//!
//! Where the notifications come from:
//! - CellChange: every handover step (`on_cell_change`);
//! - RabEst / RabRel, S1Bearer ESTABLISH / RELEASE: a completed handover sets the UE's E-RAB
//!   (and its S1-U bearer) up in the target cell and releases it in the source cell, as an
//!   S1-based handover does;
//! - RabMod, S1Bearer MODIFY: an operator changes a UE's bearer QoS
//!   (`PUT /ferry/ran/v1/ues/{ue}/bearer`);
//! - MeasRepUe, MeasTa: the radio model's measurement reports (`on_measurement`);
//! - NrMeasRepUe: the NR leg of those reports (periodic: NR_PERIODICAL) and the NR A3 event
//!   (EVENT_A3), for UEs that hear NR cells (EN-DC: UEs stay served by LTE cells);
//! - CaReconf: the carrier aggregation changes those reports make (an SCell added or
//!   released; a handover releases the old cell's).
//!
//! Every UE has one default bearer (E-RAB 1, QCI 9, non-GBR) until its QoS is changed.

use crate::http::{self, ApiError};
use crate::measurement::{CaChange, CellMeasurement, ReportCause, UeMeasurement};
use crate::notify::Delivery;
use crate::world::{CellChange, World};
use crate::{lock, Ran, RanError};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use mec_api::rni::*;
use mec_http::oauth::Caller;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::SystemTime;

/// Path prefix of this API.
pub const ROOT: &str = "/rni/v2";

/// The live subscriptions of every type, by id, and the UEs' bearers.
pub struct Subscriptions {
    subs: BTreeMap<String, Entry>,
    /// The QoS of UEs whose bearer was changed from the default.
    bearers: Bearers,
    directory: Directory,
}

/// What the events need of the topology, which never changes once the RAN is built (cells
/// and UEs are neither added nor removed; UEs only move): the event paths
/// (`on_cell_change`, `on_measurement`) then never lock the world, so the mobility and the
/// radio model may call them while they hold it.
struct Directory {
    ecgis: Vec<Ecgi>,
    nrcgis: Vec<Nrcgi>,
    scell_ecgis: Vec<Ecgi>,
    cells: HashMap<String, usize>,
    ues: HashMap<Ipv4Addr, usize>,
}

impl Subscriptions {
    pub(crate) fn new(world: &World) -> Subscriptions {
        Subscriptions {
            subs: BTreeMap::new(),
            bearers: Bearers::default_only(),
            directory: Directory {
                ecgis: world.cells.iter().map(|c| c.ecgi.clone()).collect(),
                nrcgis: world.nr_cells.iter().map(|c| c.nrcgi.clone()).collect(),
                scell_ecgis: world.scells.iter().map(|c| c.ecgi.clone()).collect(),
                cells: (world.cells.iter().enumerate())
                    .map(|(i, c)| (c.name.clone(), i))
                    .collect(),
                ues: (world.ues.iter().enumerate())
                    .map(|(i, u)| (u.address, i))
                    .collect(),
            },
        }
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.subs.contains_key(id)
    }

    /// The QoS of a UE's bearer now.
    fn bearer(&self, ue: Ipv4Addr) -> ErabQosParameters {
        self.bearers.of(ue)
    }
}

struct Entry {
    sub: RniSubscription,
    delivery: Delivery,
}

/// The default bearer every emulated UE has: E-RAB 1, QCI 9 (non-GBR, best effort).
pub const ERAB_ID: u32 = 1;
const QCI: u32 = 9;

fn default_bearer() -> ErabQosParameters {
    ErabQosParameters {
        qci: QCI,
        qos_information: None,
    }
}

pub(crate) fn routes() -> Router<Ran> {
    Router::new()
        .route("/rni/v2/subscriptions", get(list).post(create))
        .route(
            "/rni/v2/subscriptions/{id}",
            get(read).put(update).delete(remove),
        )
        .route("/rni/v2/queries/rab_info", get(rab_info))
        .route("/rni/v2/queries/plmn_info", get(plmn_info))
        .route("/rni/v2/queries/s1_bearer_info", get(s1_bearer_info))
        .route("/rni/v2/queries/layer2_meas", get(layer2_meas))
}

/// Whether a UE is among `ids` (empty: every UE). ferry names UEs by IPv4 address only.
fn ue_selected(ids: &[AssociateId], ue: Ipv4Addr) -> bool {
    ids.is_empty()
        || ids.iter().any(|a| {
            a.type_ == AssociateIdType::UeIpv4Address
                && a.value.trim().parse::<Ipv4Addr>() == Ok(ue)
        })
}

/// Whether a cell is among `ecgis` (empty: every cell).
fn cell_selected(ecgis: &[Ecgi], cell: &Ecgi) -> bool {
    ecgis.is_empty() || ecgis.contains(cell)
}

/// Does a subscription's filter select this handover? Absent criteria do not filter; a
/// missing `hoStatus` means COMPLETED (the spec's default); an `ecgi` list selects handovers
/// whose source or target cell is in it; `associateId` selects by UE IPv4 address. The
/// emulated RAN knows no app instances, so `appInstanceId` is kept but does not filter (in
/// every filter of this API).
pub fn filter_matches(f: &FilterCriteriaAssocHo, change: &CellChange, status: HoStatus) -> bool {
    let status_ok = if f.ho_status.is_empty() {
        status == HoStatus::Completed
    } else {
        f.ho_status.contains(&status)
    };
    let cell_ok = f.ecgi.is_empty()
        || f.ecgi
            .iter()
            .any(|e| *e == change.from.ecgi || *e == change.to.ecgi);
    status_ok && ue_selected(&f.associate_id, change.address) && cell_ok
}

/// Whether a RAB filter selects a bearer event in `cell`. RabMod subscribers are told of a
/// bearer whose QCI was or becomes theirs (`qcis` holds both).
fn qci_matches(f: &FilterCriteriaQci, cell: &Ecgi, qcis: &[u32]) -> bool {
    qcis.contains(&f.qci) && f.erab_id.is_none_or(|e| e == ERAB_ID) && cell_selected(&f.ecgi, cell)
}

/// The notification of one handover to one subscription.
pub fn notification(
    change: &CellChange,
    self_href: &str,
    status: HoStatus,
) -> CellChangeNotification {
    CellChangeNotification {
        notification_type: CELL_CHANGE_NOTIFICATION.to_string(),
        time_stamp: Some(TimeStamp::from_system_time(change.at)),
        associate_id: vec![AssociateId::ue_ipv4(change.address)],
        src_ecgi: change.from.ecgi.clone(),
        trg_ecgi: vec![change.to.ecgi.clone()],
        ho_status: status,
        temp_ue_id: None,
        links: Some(links_to(self_href)),
        ferry_merged_handovers: None,
        ferry_lost_notifications: None,
    }
}

fn links_to(href: &str) -> NotificationLinks {
    NotificationLinks {
        subscription: LinkType {
            href: href.to_string(),
        },
    }
}

/// Two CellChange notifications of one UE as one, when the subscriber's queue is full: the
/// later one, from the cell the earlier one left, counting the handovers both stand for in
/// `ferryMergedHandovers`. The subscriber learns where the UE is now and that it passed
/// through cells it was not told of. Only COMPLETED ones count and merge: a later
/// IN_PREPARATION (or CANCELLED) never hides an earlier COMPLETED (it is dropped), and an
/// earlier one gives way to whatever follows.
pub fn merge_cell_changes(
    older: serde_json::Value,
    mut newer: serde_json::Value,
) -> serde_json::Value {
    const MERGED: &str = "ferryMergedHandovers";
    let completed = |v: &serde_json::Value| {
        v.get("hoStatus").and_then(|s| s.as_u64()) == Some(HoStatus::Completed as u64)
    };
    match (completed(&older), completed(&newer)) {
        (false, _) => return newer,
        (true, false) => return older,
        (true, true) => {}
    }
    let hops = |v: &serde_json::Value| v.get(MERGED).and_then(|n| n.as_u64()).unwrap_or(1);
    let total = hops(&older) + hops(&newer);
    if let (Some(src), serde_json::Value::Object(m)) = (older.get("srcEcgi"), &mut newer) {
        m.insert("srcEcgi".into(), src.clone());
        m.insert(MERGED.into(), total.into());
    }
    newer
}

fn href_of(sub: &RniSubscription) -> String {
    sub.links
        .as_ref()
        .map(|l| l.self_.href.clone())
        .unwrap_or_default()
}

/// A UE's S1-U bearer. The emulated RAN has no transport network, so the addresses and
/// TEIDs are synthetic but stable: each cell is its own eNB at 198.18.0.0/15 + its index + 1,
/// one S-GW at 198.19.255.254, TEIDs made of the UE's index and the E-RAB id.
fn s1_bearer(cell: usize, ue: usize) -> S1BearerDetail {
    let enb = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)).wrapping_add(cell as u32 + 1));
    let teid = ((ue as u32 + 1) << 4) | ERAB_ID;
    S1BearerDetail {
        erab_id: ERAB_ID,
        enb_info: TunnelEnd {
            ip_address: enb.to_string(),
            tunnel_id: format!("{teid:08x}"),
        },
        sgw_info: TunnelEnd {
            ip_address: Ipv4Addr::new(198, 19, 255, 254).to_string(),
            tunnel_id: format!("{:08x}", teid | 0x8000_0000),
        },
    }
}

/// One bearer event of one UE, as the RAB and S1 subscriptions see it.
struct BearerEvent<'a> {
    ue: Ipv4Addr,
    ue_index: usize,
    cell: usize,
    ecgi: &'a Ecgi,
    at: SystemTime,
    s1: S1Event,
    qos: ErabQosParameters,
    /// The QCIs a RabMod subscriber may hold to be told (the old and the new one).
    qcis: Vec<u32>,
}

/// The notification a subscription gets for a bearer event, if it wants it.
fn bearer_notification(
    sub: &RniSubscription,
    ev: &BearerEvent,
) -> Option<Result<serde_json::Value, serde_json::Error>> {
    let href = href_of(sub);
    let at = Some(TimeStamp::from_system_time(ev.at));
    let ue = vec![AssociateId::ue_ipv4(ev.ue)];
    let qci_now = [ev.qos.qci];
    match (&sub.kind, ev.s1) {
        (
            SubscriptionKind::RabEst {
                filter_criteria_qci: f,
            },
            S1Event::Establish,
        ) if qci_matches(f, ev.ecgi, &qci_now) => Some(serde_json::to_value(RabEstNotification {
            notification_type: RAB_EST_NOTIFICATION.into(),
            time_stamp: at,
            associate_id: ue,
            ecgi: ev.ecgi.clone(),
            erab_id: ERAB_ID,
            erab_qos_parameters: Some(ev.qos.clone()),
            links: Some(links_to(&href)),
        })),
        (
            SubscriptionKind::RabMod {
                filter_criteria_qci: f,
            },
            S1Event::Modify,
        ) if qci_matches(f, ev.ecgi, &ev.qcis) => Some(serde_json::to_value(RabModNotification {
            notification_type: RAB_MOD_NOTIFICATION.into(),
            time_stamp: at,
            associate_id: ue,
            ecgi: ev.ecgi.clone(),
            erab_id: ERAB_ID,
            erab_qos_parameters: Some(ev.qos.clone()),
            links: Some(links_to(&href)),
        })),
        (
            SubscriptionKind::RabRel {
                filter_criteria_qci: f,
            },
            S1Event::Release,
        ) if qci_matches(f, ev.ecgi, &qci_now) => Some(serde_json::to_value(RabRelNotification {
            notification_type: RAB_REL_NOTIFICATION.into(),
            time_stamp: at,
            associate_id: ue,
            ecgi: ev.ecgi.clone(),
            erab_release_info: ErabReleaseInfo { erab_id: ERAB_ID },
            links: Some(links_to(&href)),
        })),
        (
            SubscriptionKind::S1Bearer {
                criteria,
                event_type,
            },
            s1,
        ) if event_type.contains(&s1)
            && ue_selected(&criteria.associate_id, ev.ue)
            && cell_selected(&criteria.ecgi, ev.ecgi)
            && (criteria.erab_id.is_empty() || criteria.erab_id.contains(&ERAB_ID)) =>
        {
            Some(serde_json::to_value(S1BearerNotification {
                notification_type: S1_BEARER_NOTIFICATION.into(),
                time_stamp: at,
                s1_event: s1,
                s1_ue_info: S1NotifiedUe {
                    associate_id: ue,
                    ecgi: vec![ev.ecgi.clone()],
                    s1_bearer_info: vec![s1_bearer(ev.cell, ev.ue_index)],
                },
                links: Some(links_to(&href)),
            }))
        }
        _ => None,
    }
}

/// Queues each notification `make` gives for a subscription, per UE in order.
fn dispatch<'a>(
    subs: impl Iterator<Item = (&'a String, &'a Entry)>,
    ue: Ipv4Addr,
    make: impl Fn(&RniSubscription) -> Vec<Result<serde_json::Value, serde_json::Error>>,
) {
    let key = ue.to_string();
    for (id, e) in subs {
        for n in make(&e.sub) {
            match n {
                Ok(body) => e.delivery.send_keyed(&key, body),
                Err(err) => {
                    tracing::error!(subscription = %id, "cannot encode notification: {err}")
                }
            }
        }
    }
}

/// Called on every step of a handover (`IN_PREPARATION`, then `COMPLETED` once the UE is in
/// the target cell): queue a notification to each matching subscription. A completed one
/// also releases the UE's bearer in the source cell and sets it up in the target cell.
pub(crate) fn on_cell_change(ran: &Ran, change: &CellChange, status: HoStatus) {
    let subs = lock(&ran.inner.rni);
    let d = &subs.directory;
    let cells = d.ues.get(&change.address).map(|&u| {
        (
            u,
            d.cells.get(&change.from.name).copied(),
            d.cells.get(&change.to.name).copied(),
        )
    });
    dispatch(subs.subs.iter(), change.address, |sub| match &sub.kind {
        SubscriptionKind::CellChange {
            filter_criteria_assoc_ho: f,
        } if filter_matches(f, change, status) => {
            vec![serde_json::to_value(notification(
                change,
                &href_of(sub),
                status,
            ))]
        }
        _ => vec![],
    });
    let (HoStatus::Completed, Some((ue_index, Some(from), Some(to)))) = (status, cells) else {
        return;
    };
    let qos = subs.bearer(change.address);
    let event = |cell, ecgi, s1| BearerEvent {
        ue: change.address,
        ue_index,
        cell,
        ecgi,
        at: change.at,
        s1,
        qos: qos.clone(),
        qcis: vec![qos.qci],
    };
    let release = event(from, &change.from.ecgi, S1Event::Release);
    let establish = event(to, &change.to.ecgi, S1Event::Establish);
    dispatch(subs.subs.iter(), change.address, |sub| {
        [&release, &establish]
            .into_iter()
            .filter_map(|ev| bearer_notification(sub, ev))
            .collect()
    });
}

/// Changes the QoS of a UE's bearer (an operator's call): RabMod and S1 MODIFY subscribers
/// of its cell are told.
pub(crate) fn modify_bearer(
    ran: &Ran,
    ue: &str,
    qos: ErabQosParameters,
) -> Result<(Ipv4Addr, String), RanError> {
    let (address, ue_index, cell, ecgi, cell_name) = {
        let w = ran.world();
        let u = w
            .ue_index(ue)
            .ok_or_else(|| RanError::UnknownUe(ue.to_string()))?;
        let s = &w.ues[u];
        let c = &w.cells[s.cell];
        (s.address, u, s.cell, c.ecgi.clone(), c.name.clone())
    };
    let mut subs = lock(&ran.inner.rni);
    let old = subs.bearer(address);
    if qos == default_bearer() {
        subs.bearers.0.remove(&address);
    } else {
        subs.bearers.0.insert(address, qos.clone());
    }
    let ev = BearerEvent {
        ue: address,
        ue_index,
        cell,
        ecgi: &ecgi,
        at: SystemTime::now(),
        s1: S1Event::Modify,
        qcis: vec![old.qci, qos.qci],
        qos,
    };
    dispatch(subs.subs.iter(), address, |sub| {
        bearer_notification(sub, &ev).into_iter().collect()
    });
    Ok((address, cell_name))
}

/// TS 36.133 RSRP report range: RSRP_00 below -140 dBm, then 1 dB steps up to RSRP_97 at
/// -44 dBm and above.
pub fn rsrp_index(dbm: f64) -> u8 {
    report_index(dbm + 141.0, 1.0, 97)
}

/// TS 36.133 RSRQ report range: RSRQ_00 below -19.5 dB, 0.5 dB steps up to RSRQ_34 at -3 dB
/// and above.
pub fn rsrq_index(db: f64) -> u8 {
    report_index(db + 20.0, 0.5, 34)
}

/// TS 36.133 / TS 38.133 SINR report range: 0 below -23 dB, 0.5 dB steps up to 127 at 40 dB
/// and above.
pub fn sinr_index(db: f64) -> u8 {
    report_index(db + 23.5, 0.5, 127)
}

/// TS 38.133 SS-RSRP report range: 0 below -156 dBm, 1 dB steps up to 126 at -31 dBm and
/// above.
pub fn nr_rsrp_index(dbm: f64) -> u8 {
    report_index(dbm + 157.0, 1.0, 126)
}

/// TS 38.133 SS-RSRQ report range: 0 below -43 dB, 0.5 dB steps up to 127 at 20 dB and above.
pub fn nr_rsrq_index(db: f64) -> u8 {
    report_index(db + 43.5, 0.5, 127)
}

/// `floor(offset / step)` clamped to `0..=max` (NaN: 0).
fn report_index(offset: f64, step: f64, max: u8) -> u8 {
    let i = (offset / step).floor();
    if i.is_nan() || i < 0.0 {
        0
    } else {
        i.min(max as f64) as u8
    }
}

/// Which trigger of a MeasRepUe filter a report answers, if any. The emulated RAN makes
/// periodic reports (they answer the periodical strongest-cell triggers 1, 2 and 4) and A3
/// reports (trigger 12); no other trigger is ever met. An empty list takes every report.
fn trigger_for(wanted: &[Trigger], cause: ReportCause) -> Option<Trigger> {
    let natural = match cause {
        ReportCause::Periodic => Trigger::PeriodicalReportStrongestCells,
        ReportCause::EventA3 => Trigger::EventA3,
        ReportCause::NrEventA3 => return None,
    };
    if wanted.is_empty() {
        return Some(natural);
    }
    wanted.iter().copied().find(|t| match cause {
        ReportCause::Periodic => matches!(
            t,
            Trigger::PeriodicalReportStrongestCells
                | Trigger::PeriodicalReportStrongestCellsForSon
                | Trigger::IntraPeriodicalReportStrongestCells
        ),
        ReportCause::EventA3 => *t == Trigger::EventA3,
        ReportCause::NrEventA3 => false,
    })
}

/// Which trigger of an NrMeasRepUe filter a report answers, if any: the periodic reports
/// answer NR_PERIODICAL (1), the NR A3 event's EVENT_A3 (12); an empty list takes both. The
/// LTE A3 report has no NR part.
fn trigger_nr_for(wanted: &[TriggerNr], cause: ReportCause) -> Option<TriggerNr> {
    let natural = match cause {
        ReportCause::Periodic => TriggerNr::NrPeriodical,
        ReportCause::NrEventA3 => TriggerNr::EventA3,
        ReportCause::EventA3 => return None,
    };
    (wanted.is_empty() || wanted.contains(&natural)).then_some(natural)
}

fn nr_results(m: &CellMeasurement) -> MeasQuantityResultsNr {
    MeasQuantityResultsNr {
        rsrp: Some(nr_rsrp_index(m.rsrp_dbm)),
        rsrq: Some(nr_rsrq_index(m.rsrq_db)),
        sinr: Some(sinr_index(m.sinr_db)),
    }
}

fn ssb(m: &CellMeasurement) -> NrCellMeas {
    NrCellMeas {
        meas_quantity_results_ssb_cell: Some(nr_results(m)),
        meas_quantity_results_csi_rs_cell: None,
    }
}

/// The NrMeasRepUe notification of a report's NR leg: the PSCell (with its best neighbour as
/// `nCell`) and the other NR cells heard.
fn nr_notification(
    nr: &LocatedNr,
    r: &UeMeasurement,
    trigger_nr: TriggerNr,
    href: &str,
) -> NrMeasRepUeNotification {
    NrMeasRepUeNotification {
        notification_type: NR_MEAS_REP_UE_NOTIFICATION.into(),
        time_stamp: Some(TimeStamp::from_system_time(r.at)),
        associate_id: vec![AssociateId::ue_ipv4(r.address)],
        serv_cell_meas_info: vec![ServCellMeasInfo {
            nrcgi: Some(nr.serving.0.clone()),
            s_cell: Some(ssb(nr.serving.1)),
            n_cell: nr.neighbours.first().map(|(_, m)| ssb(m)),
        }],
        nr_neigh_cell_meas_info: (nr.neighbours.iter())
            .map(|(nrcgi, m)| NrNeighCellMeasInfo {
                nrcgi: nrcgi.clone(),
                meas_quantity_results_ssb_cell: Some(nr_results(m)),
                meas_quantity_results_csi_rs_cell: None,
            })
            .collect(),
        eutra_neigh_cell_meas_info: Vec::new(),
        trigger_nr,
        links: Some(links_to(href)),
    }
}

/// The CaReconf notification of one carrier aggregation change.
fn ca_notification(
    c: &LocatedCa,
    r: &UeMeasurement,
    scell_ecgis: &[Ecgi],
    href: &str,
) -> CaReconfNotification {
    let ecgis = |v: &[usize]| -> Vec<SecondaryCell> {
        (v.iter())
            .filter_map(|&s| scell_ecgis.get(s))
            .map(|ecgi| SecondaryCell { ecgi: ecgi.clone() })
            .collect()
    };
    CaReconfNotification {
        notification_type: CA_RECONF_NOTIFICATION.into(),
        time_stamp: Some(TimeStamp::from_system_time(r.at)),
        associate_id: vec![AssociateId::ue_ipv4(r.address)],
        ecgi: c.primary.clone(),
        carrier_aggregation_meas_info: (c.change.configured.iter())
            .filter_map(|n| {
                Some(CarrierAggregationMeasInfo {
                    cell_id_srv: c.primary.cell_id.clone(),
                    cell_id_nei: scell_ecgis.get(n.cell)?.cell_id.clone(),
                    rsrp_srv: rsrp_index(r.serving.rsrp_dbm),
                    rsrq_srv: rsrq_index(r.serving.rsrq_db),
                    sinr_srv: sinr_index(r.serving.sinr_db),
                    rsrp_nei: rsrp_index(n.rsrp_dbm),
                    rsrq_nei: rsrq_index(n.rsrq_db),
                    sinr_nei: sinr_index(n.sinr_db),
                })
            })
            .collect(),
        secondary_cell_add: ecgis(&c.change.added),
        secondary_cell_remove: ecgis(&c.change.removed),
        links: Some(links_to(href)),
    }
}

/// A report with its cells' ECGIs and NRCGIs, resolved once per report.
struct Located<'a> {
    report: &'a UeMeasurement,
    serving: Ecgi,
    neighbours: Vec<(Ecgi, &'a CellMeasurement)>,
    nr: Option<LocatedNr<'a>>,
    ca: Vec<LocatedCa<'a>>,
}

struct LocatedNr<'a> {
    serving: (Nrcgi, &'a CellMeasurement),
    neighbours: Vec<(Nrcgi, &'a CellMeasurement)>,
}

struct LocatedCa<'a> {
    primary: Ecgi,
    change: &'a CaChange,
}

fn locate<'a>(d: &Directory, report: &'a UeMeasurement) -> Option<Located<'a>> {
    let ecgi = |c: usize| d.ecgis.get(c).cloned();
    let nrcgi = |c: usize| d.nrcgis.get(c).cloned();
    Some(Located {
        report,
        serving: ecgi(report.serving.cell)?,
        neighbours: report
            .neighbours
            .iter()
            .filter_map(|m| Some((ecgi(m.cell)?, m)))
            .collect(),
        nr: report.nr.as_ref().and_then(|nr| {
            Some(LocatedNr {
                serving: (nrcgi(nr.serving.cell)?, &nr.serving),
                neighbours: (nr.neighbours.iter())
                    .filter_map(|m| Some((nrcgi(m.cell)?, m)))
                    .collect(),
            })
        }),
        ca: (report.ca.iter())
            .filter_map(|change| {
                Some(LocatedCa {
                    primary: ecgi(change.primary)?,
                    change,
                })
            })
            .collect(),
    })
}

/// The notifications one measurement report gives one subscription. MeasTa subscribers get
/// the periodic reports only (the timing advance does not change with an A3 event).
fn measurement_notifications(
    sub: &RniSubscription,
    m: &Located,
    scell_ecgis: &[Ecgi],
) -> Vec<Result<serde_json::Value, serde_json::Error>> {
    let r = m.report;
    let href = href_of(sub);
    let at = Some(TimeStamp::from_system_time(r.at));
    let ue = vec![AssociateId::ue_ipv4(r.address)];
    match &sub.kind {
        SubscriptionKind::MeasRepUe {
            filter_criteria_assoc_tri: f,
        } if ue_selected(&f.associate_id, r.address) && cell_selected(&f.ecgi, &m.serving) => {
            let Some(trigger) = trigger_for(&f.trigger, r.cause) else {
                return vec![];
            };
            vec![serde_json::to_value(MeasRepUeNotification {
                notification_type: MEAS_REP_UE_NOTIFICATION.into(),
                time_stamp: at,
                associate_id: ue,
                ecgi: m.serving.clone(),
                rsrp: rsrp_index(r.serving.rsrp_dbm),
                rsrq: rsrq_index(r.serving.rsrq_db),
                sinr: sinr_index(r.serving.sinr_db),
                trigger,
                eutran_neighbour_cell_meas_info: m
                    .neighbours
                    .iter()
                    .map(|(ecgi, n)| EutranNeighbourCellMeasInfo {
                        ecgi: ecgi.clone(),
                        rsrp: rsrp_index(n.rsrp_dbm),
                        rsrq: rsrq_index(n.rsrq_db),
                        sinr: sinr_index(n.sinr_db),
                    })
                    .collect(),
                links: Some(links_to(&href)),
            })]
        }
        SubscriptionKind::MeasTa {
            filter_criteria_assoc: f,
        } if r.cause == ReportCause::Periodic
            && ue_selected(&f.associate_id, r.address)
            && cell_selected(&f.ecgi, &m.serving) =>
        {
            vec![serde_json::to_value(MeasTaNotification {
                notification_type: MEAS_TA_NOTIFICATION.into(),
                time_stamp: at,
                associate_id: ue,
                ecgi: m.serving.clone(),
                timing_advance: r.timing_advance,
                links: Some(links_to(&href)),
            })]
        }
        SubscriptionKind::NrMeasRepUe {
            filter_criteria_nr_mrs: f,
        } if ue_selected(&f.associate_id, r.address) => {
            let Some(nr) =
                m.nr.as_ref()
                    .filter(|nr| f.nrcgi.is_empty() || f.nrcgi.contains(&nr.serving.0))
            else {
                return vec![];
            };
            let Some(trigger) = trigger_nr_for(&f.trigger_nr, r.cause) else {
                return vec![];
            };
            vec![serde_json::to_value(nr_notification(nr, r, trigger, &href))]
        }
        SubscriptionKind::CaReconf {
            filter_criteria_assoc: f,
        } if ue_selected(&f.associate_id, r.address) => {
            m.ca.iter()
                .filter(|c| cell_selected(&f.ecgi, &c.primary))
                .map(|c| serde_json::to_value(ca_notification(c, r, scell_ecgis, &href)))
                .collect()
        }
        _ => vec![],
    }
}

/// Called with every measurement report of the radio model: MEC 012's measurement
/// subscriptions (MeasRepUe, MeasTa) are served from these.
pub(crate) fn on_measurement(ran: &Ran, report: &UeMeasurement) {
    let subs = lock(&ran.inner.rni);
    let Some(located) = locate(&subs.directory, report) else {
        return;
    };
    dispatch(subs.subs.iter(), report.address, |sub| {
        measurement_notifications(sub, &located, &subs.directory.scell_ecgis)
    });
}

/// Checks a subscription body and fills the defaults the spec asks the answer to carry.
fn validate(headers: &HeaderMap, bytes: &Bytes) -> Result<RniSubscription, ApiError> {
    let value: serde_json::Value = http::parse_body(headers, bytes)?;
    let Some(kind) = value
        .get("subscriptionType")
        .and_then(|v| v.as_str())
        .map(str::to_string)
    else {
        return Err(ApiError::bad_request(format!(
            "subscriptionType is missing or not a string (use e.g. \"{CELL_CHANGE_SUBSCRIPTION}\")"
        )));
    };
    if !SUBSCRIPTION_TYPES.iter().any(|(_, t)| *t == kind.as_str()) {
        let known: Vec<&str> = SUBSCRIPTION_TYPES.iter().map(|(_, t)| *t).collect();
        return Err(ApiError::bad_request(format!(
            "unknown subscriptionType '{kind}' (one of: {})",
            known.join(", ")
        )));
    }
    let mut sub: RniSubscription = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("malformed {kind}: {e}")))?;
    let Some(cb) = sub.callback_reference.as_deref() else {
        return Err(ApiError::bad_request(
            "callbackReference is required (websocket delivery is not offered)",
        ));
    };
    http::check_callback(cb, "callbackReference")?;
    let no_ues: Vec<AssociateId> = Vec::new();
    let ues = match &sub.kind {
        SubscriptionKind::CellChange {
            filter_criteria_assoc_ho: f,
        } => &f.associate_id,
        SubscriptionKind::MeasRepUe {
            filter_criteria_assoc_tri: f,
        } => &f.associate_id,
        SubscriptionKind::NrMeasRepUe {
            filter_criteria_nr_mrs: f,
        } => &f.associate_id,
        SubscriptionKind::MeasTa {
            filter_criteria_assoc: f,
        }
        | SubscriptionKind::CaReconf {
            filter_criteria_assoc: f,
        } => &f.associate_id,
        SubscriptionKind::S1Bearer { criteria, .. } => &criteria.associate_id,
        SubscriptionKind::RabEst { .. }
        | SubscriptionKind::RabMod { .. }
        | SubscriptionKind::RabRel { .. } => &no_ues,
    };
    for a in ues {
        if a.type_ == AssociateIdType::UeIpv4Address && a.value.trim().parse::<Ipv4Addr>().is_err()
        {
            return Err(ApiError::bad_request(format!(
                "associateId value '{}' is not an IPv4 address (type 1 = UE_IPv4_ADDRESS)",
                a.value
            )));
        }
    }
    match &mut sub.kind {
        SubscriptionKind::CellChange {
            filter_criteria_assoc_ho: f,
        } if f.ho_status.is_empty() => f.ho_status = vec![HoStatus::Completed],
        SubscriptionKind::RabMod {
            filter_criteria_qci: f,
        }
        | SubscriptionKind::RabRel {
            filter_criteria_qci: f,
        } if f.erab_id.is_none() => {
            return Err(ApiError::bad_request(format!(
                "filterCriteriaQci.erabId is required in a {kind} (ferry's UEs have E-RAB {ERAB_ID})"
            )))
        }
        SubscriptionKind::S1Bearer { event_type, .. } if event_type.is_empty() => {
            return Err(ApiError::bad_request(
                "eventType needs at least one event (1 = S1_BEARER_ESTABLISH, 2 = MODIFY, 3 = RELEASE)",
            ))
        }
        _ => {}
    }
    if let Some(d) = sub.expiry_deadline {
        if d.nano_seconds >= 1_000_000_000 {
            return Err(ApiError::bad_request(format!(
                "expiryDeadline.nanoSeconds {} must be below 1000000000",
                d.nano_seconds
            )));
        }
        if d.to_system_time() <= SystemTime::now() {
            return Err(ApiError::unprocessable(format!(
                "expiryDeadline {}.{:09} is in the past",
                d.seconds, d.nano_seconds
            )));
        }
    }
    Ok(sub)
}

/// The delivery of a subscription: per UE in order; a CellChange subscription's merged per
/// UE when full, the others' dropped and counted beyond the queue.
fn start_delivery(ran: &Ran, sub: &RniSubscription, id: &str) -> Delivery {
    let url = sub.callback_reference.clone().unwrap_or_default();
    let coalesce = match sub.kind {
        SubscriptionKind::CellChange { .. } => crate::notify::Coalesce::Merge(merge_cell_changes),
        _ => crate::notify::Coalesce::Never,
    };
    ran.inner.notifier.start_with(url, id.to_string(), coalesce)
}

/// How the delivery of each subscription fares (for `/ferry/ran/v1/stats`).
pub(crate) fn delivery_stats(ran: &Ran) -> Vec<(String, crate::notify::DeliveryStats)> {
    lock(&ran.inner.rni)
        .subs
        .iter()
        .map(|(id, e)| (id.clone(), e.delivery.stats()))
        .collect()
}

fn self_href(headers: &HeaderMap, id: &str) -> String {
    format!("{}{ROOT}/subscriptions/{id}", http::base_url(headers))
}

async fn create(
    State(ran): State<Ran>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut sub = validate(&headers, &body)?;
    let id = ran.new_id("rni-");
    let href = self_href(&headers, &id);
    sub.links = Some(Links {
        self_: LinkType { href: href.clone() },
    });
    let delivery = start_delivery(&ran, &sub, &id);
    if let Some(d) = sub.expiry_deadline {
        arm_expiry(&ran, &id, d);
    }
    lock(&ran.inner.rni).subs.insert(
        id.clone(),
        Entry {
            sub: sub.clone(),
            delivery,
        },
    );
    tracing::info!(subscription = %id, kind = sub.kind.names().0, "subscription created");
    let mut resp = http::json(StatusCode::CREATED, &sub);
    if let Ok(v) = href.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn list(
    State(ran): State<Ran>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = http::query_pairs(q.as_deref(), &["subscription_type"])?;
    let mut wanted: Vec<&str> = Vec::new();
    for v in http::values(&pairs, "subscription_type") {
        match SUBSCRIPTION_TYPES.iter().find(|(q, _)| *q == v) {
            Some((_, t)) => wanted.push(t),
            None => {
                let allowed: Vec<&str> = SUBSCRIPTION_TYPES.iter().map(|(q, _)| *q).collect();
                return Err(ApiError::bad_request(format!(
                    "subscription_type '{v}' is not one of: {}",
                    allowed.join(", ")
                )));
            }
        }
    }
    let subs = lock(&ran.inner.rni);
    let subscription = subs
        .subs
        .iter()
        .filter(|(id, _)| ran.inner.owners.visible(&caller, id))
        .map(|(_, e)| e)
        .filter(|e| wanted.is_empty() || wanted.contains(&e.sub.kind.names().0))
        .map(|e| SubscriptionRef {
            href: e
                .sub
                .links
                .as_ref()
                .map(|l| l.self_.href.clone())
                .unwrap_or_default(),
            subscription_type: e.sub.kind.names().0.to_string(),
        })
        .collect();
    let base = http::base_url(&headers);
    let body = SubscriptionLinkList {
        links: SubscriptionLinks {
            self_: LinkType {
                href: format!("{base}{ROOT}/subscriptions"),
            },
            subscription,
        },
    };
    Ok(http::json(StatusCode::OK, &body))
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("no RNIS subscription '{id}'"))
}

async fn read(State(ran): State<Ran>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let subs = lock(&ran.inner.rni);
    let e = subs.subs.get(&id).ok_or_else(|| unknown(&id))?;
    Ok(http::json(StatusCode::OK, &e.sub))
}

async fn update(
    State(ran): State<Ran>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !lock(&ran.inner.rni).subs.contains_key(&id) {
        return Err(unknown(&id));
    }
    let mut sub = validate(&headers, &body)?;
    let href = self_href(&headers, &id);
    // The spec puts `_links` in PUT bodies; if given, it must name this subscription.
    if let Some(l) = &sub.links {
        if !l.self_.href.ends_with(&format!("/subscriptions/{id}")) {
            return Err(ApiError::bad_request(format!(
                "_links.self '{}' does not name subscription '{id}'",
                l.self_.href
            )));
        }
    }
    sub.links = Some(Links {
        self_: LinkType { href },
    });
    let mut subs = lock(&ran.inner.rni);
    // Deleted meanwhile: still a 404.
    let entry = subs.subs.get_mut(&id).ok_or_else(|| unknown(&id))?;
    // A subscription keeps its type: a different one is a new subscription.
    if entry.sub.kind.names() != sub.kind.names() {
        return Err(ApiError::bad_request(format!(
            "subscription '{id}' is a {}, not a {}",
            entry.sub.kind.names().0,
            sub.kind.names().0
        )));
    }
    if entry.sub.callback_reference != sub.callback_reference {
        entry.delivery = start_delivery(&ran, &sub, &id);
    }
    entry.sub = sub.clone();
    drop(subs);
    if let Some(d) = sub.expiry_deadline {
        arm_expiry(&ran, &id, d);
    }
    Ok(http::json(StatusCode::OK, &sub))
}

async fn remove(State(ran): State<Ran>, Path(id): Path<String>) -> Result<Response, ApiError> {
    lock(&ran.inner.rni)
        .subs
        .remove(&id)
        .ok_or_else(|| unknown(&id))?;
    tracing::info!(subscription = %id, "subscription deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes the subscription when its deadline passes and tells its callback. A PUT that moves
/// the deadline arms a new timer; a timer that wakes before the current deadline does nothing.
fn arm_expiry(ran: &Ran, id: &str, deadline: TimeStamp) {
    let (ran, id) = (ran.clone(), id.to_string());
    tokio::spawn(async move {
        let wait = deadline
            .to_system_time()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::sleep(wait).await;
        let mut subs = lock(&ran.inner.rni);
        let due = subs
            .subs
            .get(&id)
            .and_then(|e| e.sub.expiry_deadline)
            .map(|d| d.to_system_time() <= SystemTime::now());
        if due != Some(true) {
            return;
        }
        let Some(e) = subs.subs.remove(&id) else {
            return;
        };
        drop(subs);
        let href = e
            .sub
            .links
            .as_ref()
            .map(|l| l.self_.href.clone())
            .unwrap_or_default();
        let n = ExpiryNotification {
            notification_type: EXPIRY_NOTIFICATION.to_string(),
            links: ExpiryLinks {
                self_: href.clone(),
                subscription: Some(LinkType { href }),
            },
            expiry_deadline: deadline,
            time_stamp: Some(TimeStamp::now()),
        };
        tracing::info!(subscription = %id, "subscription expired");
        if let Ok(body) = serde_json::to_value(n) {
            // The worker delivers this last message, then ends as `e.delivery` is dropped.
            e.delivery.send(body);
        }
    });
}

/// Parses the numeric values of a query parameter (400 on a non-number).
fn numbers(pairs: &[(String, String)], name: &str) -> Result<Vec<u64>, ApiError> {
    http::values(pairs, name)
        .into_iter()
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{name} '{v}' is not a number")))
        })
        .collect()
}

/// Query filters that select on data the emulated RAN does not have (IPv6, NAT, GTP,
/// temporary UE ids): any value given matches no UE.
const ABSENT_FILTERS: [&str; 3] = ["ue_ipv6_address", "nated_ip_address", "gtp_teid"];

/// The GBR filters of `rab_info`: each selects bearers whose `qosInformation` has one of the
/// given values (non-GBR bearers have none).
const GBR_FILTERS: [&str; 4] = ["erab_mbr_dl", "erab_mbr_ul", "erab_gbr_dl", "erab_gbr_ul"];

/// The UEs' bearers, looked up by address: those changed from the default (E-RAB 1, QCI 9).
#[derive(Clone)]
pub struct Bearers(HashMap<Ipv4Addr, ErabQosParameters>);

impl Bearers {
    pub fn default_only() -> Bearers {
        Bearers(HashMap::new())
    }

    fn of(&self, ue: Ipv4Addr) -> ErabQosParameters {
        self.0.get(&ue).cloned().unwrap_or_else(default_bearer)
    }

    fn snapshot(ran: &Ran) -> Bearers {
        lock(&ran.inner.rni).bearers.clone()
    }
}

/// The IPv4 addresses of a `ue_ipv4_address` filter (400 on a bad one).
fn addresses(pairs: &[(String, String)]) -> Result<Vec<Ipv4Addr>, ApiError> {
    http::values(pairs, "ue_ipv4_address")
        .into_iter()
        .map(|v| {
            v.parse::<Ipv4Addr>().map_err(|_| {
                ApiError::bad_request(format!("ue_ipv4_address '{v}' is not an IPv4 address"))
            })
        })
        .collect()
}

fn absent_filter_given(pairs: &[(String, String)]) -> bool {
    ABSENT_FILTERS
        .iter()
        .any(|f| !http::values(pairs, f).is_empty())
}

/// Whether a value is among a numeric filter's (no filter: every value).
fn among(wanted: &[u64], v: u64) -> bool {
    wanted.is_empty() || wanted.contains(&v)
}

/// The cells and UEs a `rab_info` query selects.
pub fn rab_cells(
    world: &World,
    bearers: &Bearers,
    pairs: &[(String, String)],
) -> Result<Vec<CellUserInfo>, ApiError> {
    let cell_ids = http::values(pairs, "cell_id");
    let addresses = addresses(pairs)?;
    let erab_ids = numbers(pairs, "erab_id")?;
    let qcis = numbers(pairs, "qci")?;
    let mut gbr = Vec::new();
    for f in GBR_FILTERS {
        gbr.push(numbers(pairs, f)?);
    }
    let mut out = Vec::new();
    if absent_filter_given(pairs) || !among(&erab_ids, ERAB_ID as u64) {
        return Ok(out);
    }
    let bearer_ok = |q: &ErabQosParameters| {
        let rates = q
            .qos_information
            .as_ref()
            .map(|i| [i.erab_mbr_dl, i.erab_mbr_ul, i.erab_gbr_dl, i.erab_gbr_ul]);
        among(&qcis, q.qci as u64)
            && gbr.iter().enumerate().all(|(i, wanted)| {
                wanted.is_empty() || rates.is_some_and(|r| wanted.contains(&r[i]))
            })
    };
    for (i, cell) in world.cells.iter().enumerate() {
        if !cell_ids.is_empty() && !cell_ids.contains(&cell.ecgi.cell_id.as_str()) {
            continue;
        }
        let ue_info: Vec<UeInfo> = world
            .ues
            .iter()
            .filter(|u| u.cell == i && (addresses.is_empty() || addresses.contains(&u.address)))
            .map(|u| (u, bearers.of(u.address)))
            .filter(|(_, q)| bearer_ok(q))
            .map(|(u, q)| UeInfo {
                associate_id: vec![AssociateId::ue_ipv4(u.address)],
                erab_info: vec![ErabInfo {
                    erab_id: ERAB_ID,
                    erab_qos_parameters: q,
                }],
            })
            .collect();
        // The spec gives ueInfo at least one element: cells without selected UEs are left out.
        if !ue_info.is_empty() {
            out.push(CellUserInfo {
                ecgi: cell.ecgi.clone(),
                ue_info,
            });
        }
    }
    Ok(out)
}

async fn rab_info(State(ran): State<Ran>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let mut allowed = vec!["app_ins_id", "cell_id", "ue_ipv4_address", "erab_id", "qci"];
    allowed.extend(ABSENT_FILTERS);
    allowed.extend(GBR_FILTERS);
    let pairs = http::query_pairs(q.as_deref(), &allowed)?;
    let app = http::values(&pairs, "app_ins_id");
    if app.len() > 1 {
        return Err(ApiError::bad_request(
            "app_ins_id takes one application instance id",
        ));
    }
    let bearers = Bearers::snapshot(&ran);
    let cell_user_info = rab_cells(&ran.world(), &bearers, &pairs)?;
    let body = RabInfo {
        app_instance_id: app.first().map(|s| s.to_string()).unwrap_or_default(),
        request_id: ran.new_id("rab-"),
        cell_user_info,
        time_stamp: Some(TimeStamp::now()),
    };
    Ok(http::json(StatusCode::OK, &body))
}

/// The UEs an `s1_bearer_info` query selects, each with its S1-U bearer.
pub fn s1_ues(world: &World, pairs: &[(String, String)]) -> Result<Vec<S1UeInfo>, ApiError> {
    let cell_ids = http::values(pairs, "cell_id");
    let addresses = addresses(pairs)?;
    let erab_ids = numbers(pairs, "erab_id")?;
    // ferry's UEs have no temporary identity (S-TMSI): a temp_ue_id filter selects none.
    if absent_filter_given(pairs)
        || !http::values(pairs, "temp_ue_id").is_empty()
        || !among(&erab_ids, ERAB_ID as u64)
    {
        return Ok(vec![]);
    }
    Ok(world
        .ues
        .iter()
        .enumerate()
        .filter(|(_, u)| addresses.is_empty() || addresses.contains(&u.address))
        .filter(|(_, u)| {
            cell_ids.is_empty() || cell_ids.contains(&world.cells[u.cell].ecgi.cell_id.as_str())
        })
        .map(|(i, u)| S1UeInfo {
            associate_id: vec![AssociateId::ue_ipv4(u.address)],
            ecgi: vec![world.cells[u.cell].ecgi.clone()],
            s1_bearer_info_detailed: vec![s1_bearer(u.cell, i)],
            temp_ue_id: None,
        })
        .collect())
}

async fn s1_bearer_info(
    State(ran): State<Ran>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let mut allowed = vec!["temp_ue_id", "ue_ipv4_address", "cell_id", "erab_id"];
    allowed.extend(ABSENT_FILTERS);
    let pairs = http::query_pairs(q.as_deref(), &allowed)?;
    let s1_ue_info = s1_ues(&ran.world(), &pairs)?;
    // The spec's S1BearerInfo holds at least one UE: nothing selected is a 404.
    if s1_ue_info.is_empty() {
        return Err(ApiError::not_found("no UE's S1 bearer matches the query"));
    }
    let body = S1BearerInfo {
        s1_ue_info,
        time_stamp: Some(TimeStamp::now()),
    };
    Ok(http::json(StatusCode::OK, &body))
}

/// Share of a cell's PRBs one active UE is estimated to use (percent): the emulated RAN
/// carries no traffic, so load follows from the number of UEs in the cell, capped at 100.
pub const PRB_PERCENT_PER_UE: u32 = 10;
/// Estimated capacity of a cell (kbit/s per direction), shared equally by its UEs.
pub const CELL_CAPACITY_KBPS: u32 = 100_000;

/// Whether a bearer is GBR: only GBR bearers carry `qosInformation`.
fn is_gbr(q: &ErabQosParameters) -> bool {
    q.qos_information.is_some()
}

/// The layer 2 estimates of every cell and UE (before filtering).
pub fn layer2(world: &World, bearers: &Bearers) -> L2Meas {
    let mut cells: Vec<(u32, u32)> = vec![(0, 0); world.cells.len()]; // (gbr, non-GBR) UEs
    for u in &world.ues {
        let c = &mut cells[u.cell];
        if is_gbr(&bearers.of(u.address)) {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
    }
    let prb = |n: u32| (n.saturating_mul(PRB_PERCENT_PER_UE)).min(100);
    let cell_info = world
        .cells
        .iter()
        .zip(&cells)
        .map(|(c, &(gbr, non_gbr))| L2CellInfo {
            ecgi: Some(c.ecgi.clone()),
            dl_gbr_prb_usage_cell: Some(prb(gbr)),
            ul_gbr_prb_usage_cell: Some(prb(gbr)),
            dl_nongbr_prb_usage_cell: Some(prb(non_gbr)),
            ul_nongbr_prb_usage_cell: Some(prb(non_gbr)),
            dl_total_prb_usage_cell: Some(prb(gbr + non_gbr)),
            ul_total_prb_usage_cell: Some(prb(gbr + non_gbr)),
            number_of_active_ue_dl_gbr_cell: Some(gbr),
            number_of_active_ue_ul_gbr_cell: Some(gbr),
            number_of_active_ue_dl_nongbr_cell: Some(non_gbr),
            number_of_active_ue_ul_nongbr_cell: Some(non_gbr),
        })
        .collect();
    let cell_ue_info = world
        .ues
        .iter()
        .map(|u| {
            let (gbr, non_gbr) = cells[u.cell];
            let share = CELL_CAPACITY_KBPS / (gbr + non_gbr).max(1);
            let q = bearers.of(u.address);
            let (g, n) = if is_gbr(&q) {
                (Some(share), None)
            } else {
                (None, Some(share))
            };
            L2UeInfo {
                ecgi: Some(world.cells[u.cell].ecgi.clone()),
                associate_id: Some(AssociateId::ue_ipv4(u.address)),
                dl_gbr_throughput_ue: g,
                ul_gbr_throughput_ue: g,
                dl_nongbr_throughput_ue: n,
                ul_nongbr_throughput_ue: n,
            }
        })
        .collect();
    L2Meas {
        cell_info,
        cell_ue_info,
        time_stamp: Some(TimeStamp::now()),
    }
}

/// The value filters of `layer2_meas` on cells (`dl_gbr_prb_usage_cell=...`) and UEs
/// (`dl_nongbr_throughput_ue=...`): each keeps the entries whose attribute of that name has
/// one of the given values; an attribute the RAN does not estimate matches no value.
const L2_CELL_FILTERS: [&str; 17] = [
    "dl_gbr_prb_usage_cell",
    "ul_gbr_prb_usage_cell",
    "dl_nongbr_prb_usage_cell",
    "ul_nongbr_prb_usage_cell",
    "dl_total_prb_usage_cell",
    "ul_total_prb_usage_cell",
    "received_dedicated_preambles_cell",
    "received_randomly_selected_preambles_low_range_cell",
    "received_randomly_selected_preambles_high_range_cell",
    "number_of_active_ue_dl_gbr_cell",
    "number_of_active_ue_ul_gbr_cell",
    "number_of_active_ue_dl_nongbr_cell",
    "number_of_active_ue_ul_nongbr_cell",
    "dl_gbr_pdr_cell",
    "ul_gbr_pdr_cell",
    "dl_nongbr_pdr_cell",
    "ul_nongbr_pdr_cell",
];
const L2_UE_FILTERS: [&str; 16] = [
    "dl_gbr_delay_ue",
    "ul_gbr_delay_ue",
    "dl_nongbr_delay_ue",
    "ul_nongbr_delay_ue",
    "dl_gbr_pdr_ue",
    "ul_gbr_pdr_ue",
    "dl_nongbr_pdr_ue",
    "ul_nongbr_pdr_ue",
    "dl_gbr_throughput_ue",
    "ul_gbr_throughput_ue",
    "dl_nongbr_throughput_ue",
    "ul_nongbr_throughput_ue",
    "dl_gbr_data_volume_ue",
    "ul_gbr_data_volume_ue",
    "dl_nongbr_data_volume_ue",
    "ul_nongbr_data_volume_ue",
];

/// Keeps the entries whose named attributes have one of the wanted values.
fn keep_matching<T: serde::Serialize>(items: Vec<T>, filters: &[(&str, Vec<u64>)]) -> Vec<T> {
    items
        .into_iter()
        .filter(|item| {
            let v = serde_json::to_value(item).unwrap_or_default();
            filters.iter().all(|(name, wanted)| {
                v.get(name)
                    .and_then(|x| x.as_u64())
                    .is_some_and(|x| wanted.contains(&x))
            })
        })
        .collect()
}

/// What a `layer2_meas` query answers: the cells selected by `cell_id` and the cell value
/// filters, the UEs selected by `ue_ipv4_address`, their cell and the UE value filters.
pub fn layer2_filtered(
    world: &World,
    bearers: &Bearers,
    pairs: &[(String, String)],
) -> Result<L2Meas, ApiError> {
    let cell_ids = http::values(pairs, "cell_id");
    let addresses = addresses(pairs)?;
    let value_filters =
        |names: &[&'static str]| -> Result<Vec<(&'static str, Vec<u64>)>, ApiError> {
            let mut out = Vec::new();
            for &n in names {
                let v = numbers(pairs, n)?;
                if !v.is_empty() {
                    out.push((n, v));
                }
            }
            Ok(out)
        };
    let cell_filters = value_filters(&L2_CELL_FILTERS)?;
    let ue_filters = value_filters(&L2_UE_FILTERS)?;
    let mut m = layer2(world, bearers);
    let cell_ok = |e: &Option<Ecgi>| {
        cell_ids.is_empty()
            || e.as_ref()
                .is_some_and(|e| cell_ids.contains(&e.cell_id.as_str()))
    };
    m.cell_info.retain(|c| cell_ok(&c.ecgi));
    m.cell_info = keep_matching(m.cell_info, &cell_filters);
    let ues_apply = addresses.is_empty() && !absent_filter_given(pairs);
    m.cell_ue_info.retain(|u| {
        cell_ok(&u.ecgi)
            && (ues_apply
                || u.associate_id.as_ref().is_some_and(|a| {
                    a.value
                        .parse::<Ipv4Addr>()
                        .is_ok_and(|ip| addresses.contains(&ip))
                }))
    });
    m.cell_ue_info = keep_matching(m.cell_ue_info, &ue_filters);
    Ok(m)
}

async fn layer2_meas(State(ran): State<Ran>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let mut allowed = vec!["app_ins_id", "cell_id", "ue_ipv4_address"];
    allowed.extend(ABSENT_FILTERS);
    allowed.extend(L2_CELL_FILTERS);
    allowed.extend(L2_UE_FILTERS);
    let pairs = http::query_pairs(q.as_deref(), &allowed)?;
    if http::values(&pairs, "app_ins_id").len() > 1 {
        return Err(ApiError::bad_request(
            "app_ins_id takes one application instance id",
        ));
    }
    let bearers = Bearers::snapshot(&ran);
    let body = layer2_filtered(&ran.world(), &bearers, &pairs)?;
    Ok(http::json(StatusCode::OK, &body))
}

async fn plmn_info(State(ran): State<Ran>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = http::query_pairs(q.as_deref(), &["app_ins_id"])?;
    let apps = http::values(&pairs, "app_ins_id");
    if apps.is_empty() {
        return Err(ApiError::bad_request(
            "app_ins_id is required (comma-separated application instance ids)",
        ));
    }
    let mut plmn: Vec<Plmn> = Vec::new();
    for c in &ran.world().cells {
        if !plmn.contains(&c.ecgi.plmn) {
            plmn.push(c.ecgi.plmn.clone());
        }
    }
    let now = TimeStamp::now();
    let body: Vec<PlmnInfo> = apps
        .iter()
        .map(|a| PlmnInfo {
            app_instance_id: a.to_string(),
            plmn: plmn.clone(),
            time_stamp: Some(now),
        })
        .collect();
    Ok(http::json(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measurement::NrMeasurement;
    use crate::world::tests::{world, TOPO};

    fn change(w: &mut World, to: &str) -> CellChange {
        let c = w.cell_index(to).unwrap();
        w.hand_over(0, c, SystemTime::now()).unwrap()
    }

    fn ecgi(w: &World, cell: &str) -> Ecgi {
        w.cells[w.cell_index(cell).unwrap()].ecgi.clone()
    }

    #[test]
    fn filters_by_ue_cell_and_status() {
        let mut w = world();
        let (a2, b1) = (ecgi(&w, "a2"), ecgi(&w, "b1"));
        let ch = change(&mut w, "b1"); // ue1 (10.100.0.1): a1 -> b1
        let any = FilterCriteriaAssocHo::default();
        assert!(filter_matches(&any, &ch, HoStatus::Completed));
        assert!(
            !filter_matches(&any, &ch, HoStatus::InPreparation),
            "default is COMPLETED only"
        );

        let ue = |ip: &str| FilterCriteriaAssocHo {
            associate_id: vec![AssociateId {
                type_: AssociateIdType::UeIpv4Address,
                value: ip.into(),
            }],
            ..Default::default()
        };
        assert!(filter_matches(&ue("10.100.0.1"), &ch, HoStatus::Completed));
        assert!(!filter_matches(&ue("10.100.0.2"), &ch, HoStatus::Completed));
        let wrong_type = FilterCriteriaAssocHo {
            associate_id: vec![AssociateId {
                type_: AssociateIdType::GtpTeid,
                value: "10.100.0.1".into(),
            }],
            ..Default::default()
        };
        assert!(!filter_matches(&wrong_type, &ch, HoStatus::Completed));

        let cells = |e: Vec<Ecgi>| FilterCriteriaAssocHo {
            ecgi: e,
            ..Default::default()
        };
        assert!(
            filter_matches(&cells(vec![b1.clone()]), &ch, HoStatus::Completed),
            "target cell"
        );
        assert!(
            filter_matches(&cells(vec![ch.from.ecgi.clone()]), &ch, HoStatus::Completed),
            "source cell"
        );
        assert!(
            !filter_matches(&cells(vec![a2]), &ch, HoStatus::Completed),
            "unrelated cell"
        );

        let both = FilterCriteriaAssocHo {
            ecgi: vec![b1],
            ..ue("10.100.0.9")
        };
        assert!(
            !filter_matches(&both, &ch, HoStatus::Completed),
            "all criteria must hold"
        );
    }

    #[test]
    fn notification_carries_both_ecgis_and_the_ue() {
        let mut w = world();
        let ch = change(&mut w, "b1");
        let v = serde_json::to_value(notification(
            &ch,
            "http://x/rni/v2/subscriptions/s1",
            HoStatus::Completed,
        ))
        .unwrap();
        assert_eq!(v["notificationType"], "CellChangeNotification");
        assert_eq!(v["srcEcgi"]["cellId"], "0000001");
        assert_eq!(v["trgEcgi"][0]["cellId"], "0000003");
        assert_eq!(
            v["associateId"][0],
            serde_json::json!({"type": 1, "value": "10.100.0.1"})
        );
        assert_eq!(v["hoStatus"], 3);
        assert_eq!(
            v["_links"]["subscription"]["href"],
            "http://x/rni/v2/subscriptions/s1"
        );
    }

    #[test]
    fn merged_cell_changes_go_from_the_first_source_to_the_last_target() {
        let mut w = world();
        let hops: Vec<serde_json::Value> = ["a2", "b1", "a1"]
            .iter()
            .map(|c| {
                serde_json::to_value(notification(&change(&mut w, c), "h", HoStatus::Completed))
                    .unwrap()
            })
            .collect();
        let two = merge_cell_changes(hops[0].clone(), hops[1].clone());
        let three = merge_cell_changes(two, hops[2].clone());
        assert_eq!(three["srcEcgi"]["cellId"], "0000001", "left a1 first");
        assert_eq!(
            three["trgEcgi"][0]["cellId"], "0000001",
            "and is back in a1"
        );
        assert_eq!(three["ferryMergedHandovers"], 3);
        assert_eq!(three["timeStamp"], hops[2]["timeStamp"]);
        let parsed: CellChangeNotification = serde_json::from_value(three).unwrap();
        assert_eq!(parsed.ferry_merged_handovers, Some(3));
    }

    #[test]
    fn a_preparation_never_hides_a_completed_handover_when_merged() {
        let mut w = world();
        let done = change(&mut w, "b1");
        let json = |c: &CellChange, s| serde_json::to_value(notification(c, "h", s)).unwrap();
        let prep = json(&done, HoStatus::InPreparation);
        let completed = json(&done, HoStatus::Completed);
        // IN_PREPARATION then COMPLETED of one handover: the COMPLETED, one hop.
        let m = merge_cell_changes(prep.clone(), completed.clone());
        assert_eq!(m, completed);
        // COMPLETED then the next IN_PREPARATION: the COMPLETED stays.
        let next = json(&change(&mut w, "a2"), HoStatus::InPreparation);
        assert_eq!(merge_cell_changes(completed.clone(), next), completed);
    }

    #[test]
    fn rab_info_filters() {
        let w = world();
        let q = |s: &str| {
            http::query_pairs(
                Some(s),
                &["cell_id", "ue_ipv4_address", "erab_id", "qci", "gtp_teid"],
            )
            .unwrap()
        };
        let b = Bearers::default_only();
        let rab_cells = |w: &World, p: &[(String, String)]| rab_cells(w, &b, p);
        let all = rab_cells(&w, &[]).unwrap();
        assert_eq!(all.len(), 1, "only a1 has a UE");
        assert_eq!(all[0].ue_info[0].erab_info[0].erab_qos_parameters.qci, 9);
        assert_eq!(rab_cells(&w, &q("cell_id=0000002")).unwrap().len(), 0);
        assert_eq!(
            rab_cells(&w, &q("ue_ipv4_address=10.100.0.1"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(rab_cells(&w, &q("qci=5")).unwrap().len(), 0);
        assert_eq!(rab_cells(&w, &q("gtp_teid=1")).unwrap().len(), 0);
        assert_eq!(
            rab_cells(&w, &q("erab_id=x")).unwrap_err().0.status,
            Some(400)
        );
    }

    fn sub(kind: SubscriptionKind) -> RniSubscription {
        RniSubscription {
            kind,
            callback_reference: Some("http://127.0.0.1:9/cb".into()),
            links: Some(Links {
                self_: LinkType {
                    href: "http://x/rni/v2/subscriptions/s9".into(),
                },
            }),
            expiry_deadline: None,
        }
    }

    fn cell(i: usize, rsrp: f64) -> CellMeasurement {
        CellMeasurement {
            cell: i,
            rsrp_dbm: rsrp,
            rsrq_db: -10.0,
            sinr_db: 13.0,
        }
    }

    fn report(cause: ReportCause) -> UeMeasurement {
        UeMeasurement {
            ue: "ue1".into(),
            address: "10.100.0.1".parse().unwrap(),
            at: SystemTime::now(),
            cause,
            serving: cell(0, -95.5),
            neighbours: vec![cell(2, -99.0), cell(1, -120.0)],
            timing_advance: 12,
            nr: None,
            ca: Vec::new(),
        }
    }

    fn meas_rep(trigger: Vec<Trigger>) -> RniSubscription {
        sub(SubscriptionKind::MeasRepUe {
            filter_criteria_assoc_tri: FilterCriteriaAssocTri {
                trigger,
                ..Default::default()
            },
        })
    }

    fn bodies(s: &RniSubscription, w: &World, r: &UeMeasurement) -> Vec<serde_json::Value> {
        let subs = Subscriptions::new(w);
        let m = locate(&subs.directory, r).unwrap();
        measurement_notifications(s, &m, &subs.directory.scell_ecgis)
            .into_iter()
            .map(|b| b.unwrap())
            .collect()
    }

    #[test]
    fn report_ranges_follow_ts_36_133_and_38_133() {
        assert_eq!(rsrp_index(-141.0), 0);
        assert_eq!(rsrp_index(-140.0), 1);
        assert_eq!(rsrp_index(-95.5), 45);
        assert_eq!(rsrp_index(-44.0), 97);
        assert_eq!(rsrp_index(-20.0), 97);
        assert_eq!(rsrq_index(-19.6), 0);
        assert_eq!(rsrq_index(-19.5), 1);
        assert_eq!(rsrq_index(-10.0), 20);
        assert_eq!(rsrq_index(-3.5), 33);
        assert_eq!(rsrq_index(-3.0), 34);
        assert_eq!(sinr_index(-23.1), 0);
        assert_eq!(sinr_index(-23.0), 1);
        assert_eq!(sinr_index(13.0), 73);
        assert_eq!(sinr_index(40.0), 127);
        assert_eq!(nr_rsrp_index(-156.0), 1);
        assert_eq!(nr_rsrp_index(-31.0), 126);
        assert_eq!(nr_rsrq_index(-43.0), 1);
        assert_eq!(nr_rsrq_index(20.0), 127);
        assert_eq!(rsrp_index(f64::NAN), 0);
    }

    #[test]
    fn meas_rep_ue_carries_serving_and_neighbours_in_report_ranges() {
        let w = world();
        let v = bodies(&meas_rep(vec![]), &w, &report(ReportCause::Periodic));
        assert_eq!(v.len(), 1);
        let n = &v[0];
        assert_eq!(n["notificationType"], "MeasRepUeNotification");
        assert_eq!(n["ecgi"]["cellId"], "0000001");
        assert_eq!(
            (n["rsrp"].as_u64(), n["rsrq"].as_u64()),
            (Some(45), Some(20))
        );
        assert_eq!(n["trigger"], 1);
        assert_eq!(n["associateId"][0]["value"], "10.100.0.1");
        let nb = n["eutranNeighbourCellMeasInfo"].as_array().unwrap();
        assert_eq!(nb.len(), 2);
        assert_eq!(
            nb[0]["ecgi"]["cellId"], "0000003",
            "strongest first, as reported"
        );
        assert_eq!(nb[0]["rsrp"], 42);
        assert_eq!(nb[1]["rsrp"], 21);
        let parsed: MeasRepUeNotification = serde_json::from_value(n.clone()).unwrap();
        assert_eq!(parsed.trigger, Trigger::PeriodicalReportStrongestCells);
    }

    #[test]
    fn the_trigger_decides_which_reports_a_subscriber_gets() {
        let w = world();
        let (periodic, a3) = (report(ReportCause::Periodic), report(ReportCause::EventA3));
        let only_a3 = meas_rep(vec![Trigger::EventA3]);
        assert!(bodies(&only_a3, &w, &periodic).is_empty());
        let v = bodies(&only_a3, &w, &a3);
        assert_eq!(v[0]["trigger"], 12);
        let only_periodic = meas_rep(vec![Trigger::IntraPeriodicalReportStrongestCells]);
        assert!(bodies(&only_periodic, &w, &a3).is_empty());
        assert_eq!(bodies(&only_periodic, &w, &periodic)[0]["trigger"], 4);
        // Triggers the emulated RAN never evaluates.
        assert!(bodies(&meas_rep(vec![Trigger::EventA1]), &w, &periodic).is_empty());
        assert!(bodies(&meas_rep(vec![Trigger::EventA1]), &w, &a3).is_empty());
        // Every report when no trigger is given.
        assert_eq!(bodies(&meas_rep(vec![]), &w, &a3)[0]["trigger"], 12);
    }

    #[test]
    fn measurement_filters_select_ue_and_serving_cell() {
        let w = world();
        let r = report(ReportCause::Periodic);
        let by = |ue: &str, cells: Vec<Ecgi>| {
            sub(SubscriptionKind::MeasRepUe {
                filter_criteria_assoc_tri: FilterCriteriaAssocTri {
                    associate_id: vec![AssociateId::ue_ipv4(ue.parse().unwrap())],
                    ecgi: cells,
                    ..Default::default()
                },
            })
        };
        assert_eq!(bodies(&by("10.100.0.1", vec![]), &w, &r).len(), 1);
        assert!(bodies(&by("10.100.0.2", vec![]), &w, &r).is_empty());
        assert_eq!(
            bodies(&by("10.100.0.1", vec![ecgi(&w, "a1")]), &w, &r).len(),
            1
        );
        assert!(
            bodies(&by("10.100.0.1", vec![ecgi(&w, "b1")]), &w, &r).is_empty(),
            "b1 is only a neighbour"
        );
    }

    #[test]
    fn meas_ta_gets_the_timing_advance_of_periodic_reports() {
        let w = world();
        let ta = sub(SubscriptionKind::MeasTa {
            filter_criteria_assoc: FilterCriteriaAssoc::default(),
        });
        let v = bodies(&ta, &w, &report(ReportCause::Periodic));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0]["notificationType"], "MeasTaNotification");
        assert_eq!(v[0]["timingAdvance"], 12);
        assert_eq!(v[0]["ecgi"]["cellId"], "0000001");
        assert!(bodies(&ta, &w, &report(ReportCause::EventA3)).is_empty());
    }

    #[test]
    fn nr_and_carrier_aggregation_subscribers_get_no_lte_reports() {
        let w = world();
        let r = report(ReportCause::Periodic);
        let nr = sub(SubscriptionKind::NrMeasRepUe {
            filter_criteria_nr_mrs: FilterCriteriaNrMrs::default(),
        });
        let ca = sub(SubscriptionKind::CaReconf {
            filter_criteria_assoc: FilterCriteriaAssoc::default(),
        });
        assert!(bodies(&nr, &w, &r).is_empty());
        assert!(bodies(&ca, &w, &r).is_empty());
    }

    /// The unit-test world with the radio model, two NR cells and two secondary carriers of
    /// a1.
    fn nr_world() -> World {
        let topo = format!(
            r#"{}
[[cells]]
name = "n1"
rat = "NR"
nrcgi = {{ mcc = "001", mnc = "01", nrcell_id = "000000101" }}
position = {{ latitude = 48.0, longitude = 2.0 }}
host = "edge-a"
[[cells]]
name = "n2"
rat = "NR"
nrcgi = {{ mcc = "001", mnc = "01", nrcell_id = "000000102" }}
position = {{ latitude = 48.0, longitude = 2.01 }}
host = "edge-a"
[radio]
"#,
            TOPO.replace(
                "cell_id = \"0000001\" }",
                "cell_id = \"0000001\" }\nsecondary_carriers = [{ cell_id = \"0000011\", \
                 frequency_mhz = 2600 }, { cell_id = \"0000012\", frequency_mhz = 800 }]",
            )
        );
        World::from_topology(&ferry_topology::Topology::parse(&topo).unwrap()).unwrap()
    }

    fn nr_report(cause: ReportCause) -> UeMeasurement {
        UeMeasurement {
            nr: Some(NrMeasurement {
                serving: cell(1, -90.0),
                neighbours: vec![cell(0, -100.0)],
            }),
            ..report(cause)
        }
    }

    fn nr_sub(nrcgi: Vec<Nrcgi>, trigger_nr: Vec<TriggerNr>) -> RniSubscription {
        sub(SubscriptionKind::NrMeasRepUe {
            filter_criteria_nr_mrs: FilterCriteriaNrMrs {
                nrcgi,
                trigger_nr,
                ..Default::default()
            },
        })
    }

    #[test]
    fn nr_meas_rep_ue_carries_the_nr_serving_cell_and_neighbours() {
        let w = nr_world();
        let v = bodies(
            &nr_sub(vec![], vec![]),
            &w,
            &nr_report(ReportCause::Periodic),
        );
        assert_eq!(v.len(), 1);
        let n = &v[0];
        assert_eq!(n["notificationType"], "NrMeasRepUeNotification");
        assert_eq!(n["triggerNr"], 1);
        assert_eq!(n["associateId"][0]["value"], "10.100.0.1");
        let s = &n["servCellMeasInfo"][0];
        assert_eq!(s["nrcgi"]["nrcellId"], "000000102");
        assert_eq!(s["nrcgi"]["plmn"]["mcc"], "001");
        // SS-RSRP -90 dBm: index 67 (TS 38.133); -10 dB RSRQ: 67; 13 dB SINR: 73.
        let ssb = &s["sCell"]["measQuantityResultsSsbCell"];
        assert_eq!(
            (ssb["rsrp"].as_u64(), ssb["rsrq"].as_u64()),
            (Some(67), Some(67))
        );
        assert_eq!(ssb["sinr"], 73);
        assert_eq!(s["nCell"]["measQuantityResultsSsbCell"]["rsrp"], 57);
        let nb = n["nrNeighCellMeasInfo"].as_array().unwrap();
        assert_eq!(nb.len(), 1);
        assert_eq!(nb[0]["nrcgi"]["nrcellId"], "000000101");
        assert!(n.get("eutraNeighCellMeasInfo").is_none());
        let parsed: NrMeasRepUeNotification = serde_json::from_value(n.clone()).unwrap();
        assert_eq!(parsed.trigger_nr, TriggerNr::NrPeriodical);
        // No NR cell heard: no NR report; an LTE MeasRepUe subscriber still gets its own.
        let lte_only = report(ReportCause::Periodic);
        assert!(bodies(&nr_sub(vec![], vec![]), &w, &lte_only).is_empty());
        assert_eq!(bodies(&meas_rep(vec![]), &w, &lte_only).len(), 1);
    }

    #[test]
    fn nr_filters_select_trigger_nr_cell_and_ue() {
        let w = nr_world();
        let (periodic, nr_a3, lte_a3) = (
            nr_report(ReportCause::Periodic),
            nr_report(ReportCause::NrEventA3),
            nr_report(ReportCause::EventA3),
        );
        let a3 = nr_sub(vec![], vec![TriggerNr::EventA3]);
        assert!(bodies(&a3, &w, &periodic).is_empty());
        assert_eq!(bodies(&a3, &w, &nr_a3)[0]["triggerNr"], 12);
        assert!(
            bodies(&a3, &w, &lte_a3).is_empty(),
            "the LTE A3 is no NR report"
        );
        let every = nr_sub(vec![], vec![]);
        assert!(bodies(&every, &w, &lte_a3).is_empty());
        assert_eq!(bodies(&every, &w, &nr_a3)[0]["triggerNr"], 12);
        // Triggers the model never evaluates.
        let b1 = nr_sub(vec![], vec![TriggerNr::EventB1, TriggerNr::NrCgi]);
        assert!(bodies(&b1, &w, &periodic).is_empty());
        // The nrcgi filter selects the NR serving cell, not a neighbour.
        let n = |i: usize| w.nr_cells[i].nrcgi.clone();
        assert_eq!(bodies(&nr_sub(vec![n(1)], vec![]), &w, &periodic).len(), 1);
        assert!(bodies(&nr_sub(vec![n(0)], vec![]), &w, &periodic).is_empty());
        // The LTE A3 and NR A3 reports do not cross: MeasRepUe ignores the NR one.
        assert!(bodies(&meas_rep(vec![]), &w, &nr_a3).is_empty());
        let other_ue = sub(SubscriptionKind::NrMeasRepUe {
            filter_criteria_nr_mrs: FilterCriteriaNrMrs {
                associate_id: vec![AssociateId::ue_ipv4("10.100.0.9".parse().unwrap())],
                ..Default::default()
            },
        });
        assert!(bodies(&other_ue, &w, &periodic).is_empty());
    }

    #[test]
    fn ca_reconf_carries_added_and_removed_scells_of_the_primary_cell() {
        let w = nr_world();
        assert_eq!(w.scells.len(), 2);
        let ca = |cells: Vec<Ecgi>| {
            sub(SubscriptionKind::CaReconf {
                filter_criteria_assoc: FilterCriteriaAssoc {
                    ecgi: cells,
                    ..Default::default()
                },
            })
        };
        let r = UeMeasurement {
            ca: vec![CaChange {
                primary: 0,
                added: vec![0],
                removed: vec![1],
                configured: vec![cell(0, -80.0)],
            }],
            ..report(ReportCause::Periodic)
        };
        let v = bodies(&ca(vec![]), &w, &r);
        assert_eq!(v.len(), 1);
        let n = &v[0];
        assert_eq!(n["notificationType"], "CaReconfNotification");
        assert_eq!(n["ecgi"]["cellId"], "0000001");
        assert_eq!(n["secondaryCellAdd"][0]["ecgi"]["cellId"], "0000011");
        assert_eq!(n["secondaryCellRemove"][0]["ecgi"]["cellId"], "0000012");
        let m = &n["carrierAggregationMeasInfo"][0];
        assert_eq!(
            (m["cellIdSrv"].as_str(), m["cellIdNei"].as_str()),
            (Some("0000001"), Some("0000011"))
        );
        assert_eq!(
            (m["rsrpSrv"].as_u64(), m["rsrpNei"].as_u64()),
            (Some(45), Some(61))
        );
        serde_json::from_value::<CaReconfNotification>(n.clone()).unwrap();
        assert_eq!(bodies(&ca(vec![ecgi(&w, "a1")]), &w, &r).len(), 1);
        assert!(bodies(&ca(vec![ecgi(&w, "b1")]), &w, &r).is_empty());
        // A report without a change notifies nothing.
        assert!(bodies(&ca(vec![]), &w, &report(ReportCause::Periodic)).is_empty());
        let other_ue = sub(SubscriptionKind::CaReconf {
            filter_criteria_assoc: FilterCriteriaAssoc {
                associate_id: vec![AssociateId::ue_ipv4("10.100.0.9".parse().unwrap())],
                ..Default::default()
            },
        });
        assert!(bodies(&other_ue, &w, &r).is_empty());
    }

    fn qci_filter(qci: u32, erab: Option<u32>, cells: Vec<Ecgi>) -> FilterCriteriaQci {
        FilterCriteriaQci {
            app_instance_id: None,
            ecgi: cells,
            erab_id: erab,
            qci,
        }
    }

    fn event<'a>(ecgi: &'a Ecgi, s1: S1Event, qcis: Vec<u32>) -> BearerEvent<'a> {
        BearerEvent {
            ue: "10.100.0.1".parse().unwrap(),
            ue_index: 0,
            cell: 2,
            ecgi,
            at: SystemTime::now(),
            s1,
            qos: default_bearer(),
            qcis,
        }
    }

    #[test]
    fn rab_subscribers_get_their_event_in_their_cells() {
        let w = world();
        let (a1, b1) = (ecgi(&w, "a1"), ecgi(&w, "b1"));
        let est = sub(SubscriptionKind::RabEst {
            filter_criteria_qci: qci_filter(9, None, vec![]),
        });
        let rel = sub(SubscriptionKind::RabRel {
            filter_criteria_qci: qci_filter(9, Some(1), vec![a1.clone()]),
        });
        let n =
            |s: &RniSubscription, ev: &BearerEvent| bearer_notification(s, ev).map(|r| r.unwrap());
        let e = n(&est, &event(&b1, S1Event::Establish, vec![9])).unwrap();
        assert_eq!(e["notificationType"], "RabEstNotification");
        assert_eq!(
            (e["ecgi"]["cellId"].as_str(), e["erabId"].as_u64()),
            (Some("0000003"), Some(1))
        );
        assert_eq!(e["erabQosParameters"]["qci"], 9);
        assert!(n(&est, &event(&b1, S1Event::Release, vec![9])).is_none());
        let r = n(&rel, &event(&a1, S1Event::Release, vec![9])).unwrap();
        assert_eq!(r["erabReleaseInfo"]["erabId"], 1);
        assert!(
            n(&rel, &event(&b1, S1Event::Release, vec![9])).is_none(),
            "cell filter"
        );
        let qci5 = sub(SubscriptionKind::RabEst {
            filter_criteria_qci: qci_filter(5, None, vec![]),
        });
        assert!(n(&qci5, &event(&b1, S1Event::Establish, vec![9])).is_none());
        let other_erab = sub(SubscriptionKind::RabRel {
            filter_criteria_qci: qci_filter(9, Some(2), vec![]),
        });
        assert!(n(&other_erab, &event(&a1, S1Event::Release, vec![9])).is_none());
        let m = sub(SubscriptionKind::RabMod {
            filter_criteria_qci: qci_filter(9, Some(1), vec![]),
        });
        let v = n(&m, &event(&a1, S1Event::Modify, vec![9, 7])).unwrap();
        assert_eq!(v["notificationType"], "RabModNotification");
        let s1 = sub(SubscriptionKind::S1Bearer {
            criteria: S1BearerSubscriptionCriteria::default(),
            event_type: vec![S1Event::Establish],
        });
        let v = n(&s1, &event(&b1, S1Event::Establish, vec![9])).unwrap();
        assert_eq!(v["s1Event"], 1);
        assert_eq!(v["s1UeInfo"]["ecgi"][0]["cellId"], "0000003");
        assert_eq!(
            v["s1UeInfo"]["s1BearerInfo"][0]["enbInfo"]["ipAddress"],
            "198.18.0.3"
        );
        assert!(n(&s1, &event(&a1, S1Event::Release, vec![9])).is_none());
    }

    #[test]
    fn s1_and_layer2_queries_filter() {
        let mut w = world();
        let q = |s: &str| {
            http::query_pairs(
                Some(s),
                &[
                    "cell_id",
                    "ue_ipv4_address",
                    "erab_id",
                    "temp_ue_id",
                    "dl_total_prb_usage_cell",
                    "dl_nongbr_throughput_ue",
                ],
            )
            .unwrap()
        };
        let all = s1_ues(&w, &[]).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].s1_bearer_info_detailed[0].enb_info.ip_address,
            "198.18.0.1"
        );
        assert!(s1_ues(&w, &q("cell_id=0000003")).unwrap().is_empty());
        assert!(s1_ues(&w, &q("erab_id=2")).unwrap().is_empty());
        assert!(s1_ues(&w, &q("temp_ue_id=x")).unwrap().is_empty());
        assert_eq!(
            s1_ues(&w, &q("ue_ipv4_address=10.100.0.1&cell_id=0000001"))
                .unwrap()
                .len(),
            1
        );

        let b = Bearers::default_only();
        let m = layer2_filtered(&w, &b, &[]).unwrap();
        assert_eq!(m.cell_info.len(), 3);
        assert_eq!(m.cell_info[0].number_of_active_ue_dl_nongbr_cell, Some(1));
        assert_eq!(
            m.cell_info[0].dl_total_prb_usage_cell,
            Some(PRB_PERCENT_PER_UE)
        );
        assert_eq!(m.cell_info[1].dl_total_prb_usage_cell, Some(0));
        assert_eq!(
            m.cell_ue_info[0].dl_nongbr_throughput_ue,
            Some(CELL_CAPACITY_KBPS)
        );
        let busy = layer2_filtered(&w, &b, &q("dl_total_prb_usage_cell=10")).unwrap();
        assert_eq!(busy.cell_info.len(), 1);
        assert_eq!(busy.cell_info[0].ecgi.as_ref().unwrap().cell_id, "0000001");
        let b1 = layer2_filtered(&w, &b, &q("cell_id=0000003")).unwrap();
        assert_eq!((b1.cell_info.len(), b1.cell_ue_info.len()), (1, 0));
        // The UE moves: the estimates follow.
        change(&mut w, "b1");
        let b1 = layer2_filtered(&w, &b, &q("cell_id=0000003")).unwrap();
        assert_eq!((b1.cell_info.len(), b1.cell_ue_info.len()), (1, 1));
        assert_eq!(b1.cell_info[0].number_of_active_ue_ul_nongbr_cell, Some(1));
        assert!(layer2_filtered(&w, &b, &q("dl_nongbr_throughput_ue=5"))
            .unwrap()
            .cell_ue_info
            .is_empty());
    }

    /// End to end inside the crate: a RAN built in-process (as the radio model runs it), a
    /// real callback server on loopback, `on_measurement` called as the radio model calls
    /// it; the notifications arrive over HTTP with the report's values. The subscriptions are
    /// put in the store as `create` does (no HTTP path into the RAN is opened).
    #[tokio::test]
    async fn measurement_reports_reach_the_subscribers_callbacks() {
        use axum::extract::State as S;
        use std::sync::{Arc, Mutex};
        type Inbox = Arc<Mutex<Vec<(String, serde_json::Value)>>>;
        let inbox: Inbox = Arc::default();
        let app = axum::Router::new()
            .route(
                "/{path}",
                axum::routing::post(
                    |S(inbox): S<Inbox>,
                     Path(p): Path<String>,
                     body: axum::Json<serde_json::Value>| async move {
                        inbox.lock().unwrap().push((p, body.0));
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let topo = ferry_topology::Topology::parse(crate::world::tests::TOPO).unwrap();
        let ran = Ran::new(&topo).unwrap();
        let add = |id: &str, kind: SubscriptionKind| {
            let mut s = sub(kind);
            s.callback_reference = Some(format!("http://{addr}/{id}"));
            let delivery = start_delivery(&ran, &s, id);
            lock(&ran.inner.rni)
                .subs
                .insert(id.into(), Entry { sub: s, delivery });
        };
        add(
            "rep",
            SubscriptionKind::MeasRepUe {
                filter_criteria_assoc_tri: FilterCriteriaAssocTri::default(),
            },
        );
        add(
            "a3",
            SubscriptionKind::MeasRepUe {
                filter_criteria_assoc_tri: FilterCriteriaAssocTri {
                    trigger: vec![Trigger::EventA3],
                    ..Default::default()
                },
            },
        );
        add(
            "ta",
            SubscriptionKind::MeasTa {
                filter_criteria_assoc: FilterCriteriaAssoc::default(),
            },
        );
        add(
            "nr",
            SubscriptionKind::NrMeasRepUe {
                filter_criteria_nr_mrs: FilterCriteriaNrMrs::default(),
            },
        );
        on_measurement(&ran, &report(ReportCause::Periodic));
        let mut a3 = report(ReportCause::EventA3);
        a3.serving.rsrp_dbm = -110.0;
        on_measurement(&ran, &a3);

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while inbox.lock().unwrap().len() < 4 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Anything unwanted would come with the wanted ones.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let got = inbox.lock().unwrap().clone();
        let on = |p: &str| -> Vec<serde_json::Value> {
            got.iter()
                .filter(|(q, _)| q == p)
                .map(|(_, b)| b.clone())
                .collect()
        };
        let rep = on("rep");
        assert_eq!(rep.len(), 2, "{got:?}");
        assert_eq!(
            (rep[0]["trigger"].as_u64(), rep[0]["rsrp"].as_u64()),
            (Some(1), Some(45))
        );
        assert_eq!(
            (rep[1]["trigger"].as_u64(), rep[1]["rsrp"].as_u64()),
            (Some(12), Some(31)),
            "in order"
        );
        let only_a3 = on("a3");
        assert_eq!(only_a3.len(), 1);
        assert_eq!(only_a3[0]["trigger"], 12);
        let ta = on("ta");
        assert_eq!(ta.len(), 1);
        assert_eq!(ta[0]["timingAdvance"], 12);
        assert!(on("nr").is_empty());
        server.abort();
    }
}
