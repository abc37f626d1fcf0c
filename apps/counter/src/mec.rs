//! The counter as an ETSI MEC 021 application that relocates its own user context (the
//! application-driven way), when the platform tells it where the MEC APIs are:
//!
//! - `MEC_API_ROOT` (the platform's apiRoot, e.g. `http://10.0.0.10:7021`) and
//!   `MEC_APP_INSTANCE_ID` turn it on; `MEC_ASSOCIATE_ID` is the IPv4 address of the UE it
//!   serves (`ferry control` sets all three when it instantiates).
//! - At start it registers with AMS (`RegistrationInfo`: its appInstanceId, the UE's
//!   associateId, APP_MOBILITY_WITH_CONFIRMATION, NOT_TRANSFERRED), or adopts the registration
//!   of its appInstanceId if there is one (it is the target of a relocation: the registration
//!   belongs to the app instance, not to one copy of it), and subscribes to
//!   MobilityProcedure notifications (TRIGGERED, FAILED) with a callback on its own port.
//! - On INTERHOST_MOVEOUT_TRIGGERED with a target `commInterface`: it stops changing its state
//!   (requests get 503), sends its context to the target instance's `POST /context`, PUTs its
//!   registration with USER_CONTEXT_TRANSFER_COMPLETED and deletes its subscription (the
//!   target follows the UE from now on); the platform then switches the traffic and removes
//!   this instance. If the context cannot be sent or reported, or FAILED arrives first, it
//!   serves on. A target at its own address means the platform moves this very instance
//!   (container migration): it only confirms, with a PUT of the registration.

use crate::json::Json;
use crate::{context, http, lock, State};
use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Path of the MobilityProcedure callback on the counter's port.
pub const CALLBACK_PATH: &str = "/mec/mobility_procedure";

const TRIGGERED: &str = "INTERHOST_MOVEOUT_TRIGGERED";
const FAILED: &str = "INTERHOST_MOVEOUT_FAILED";

pub struct Mec {
    api_root: String,
    instance: String,
    ue: Option<String>,
    port: u16,
    /// appMobilityServiceId of the registration in use.
    registration: Mutex<Option<String>>,
    /// The subscription's resource URI.
    subscription: Mutex<Option<String>>,
    /// This instance's address as the platform sees it (the callback's host).
    own_ip: Mutex<Option<IpAddr>>,
    /// A hand-off runs.
    busy: AtomicBool,
    /// FAILED arrived since the last TRIGGERED.
    failed: AtomicBool,
}

impl Mec {
    /// From the environment; `None` (a plain counter) unless both the apiRoot and the
    /// instance id are set.
    pub fn from_env(port: u16) -> Option<Mec> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Some(Mec {
            api_root: var("MEC_API_ROOT")?.trim_end_matches('/').to_string(),
            instance: var("MEC_APP_INSTANCE_ID")?,
            ue: var("MEC_ASSOCIATE_ID"),
            port,
            registration: Mutex::new(None),
            subscription: Mutex::new(None),
            own_ip: Mutex::new(None),
            busy: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        })
    }

    fn ams(&self, path: &str) -> String {
        format!("{}/amsi/v1{path}", self.api_root)
    }
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("ferry-counter: MEC 021: {msg}");
}

/// Registers and subscribes in the background, retrying until AMS answers.
pub fn start(state: Arc<State>) {
    std::thread::spawn(move || {
        let Some(mec) = state.mec.as_ref() else {
            return;
        };
        let mut wait = Duration::from_millis(200);
        loop {
            match setup(mec) {
                Ok(()) => return,
                Err(e) => log(format!("{e}; retrying in {} ms", wait.as_millis())),
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    });
}

fn setup(mec: &Mec) -> Result<(), String> {
    if lock(&mec.registration).is_none() {
        let id = match find_registration(mec)? {
            Some(id) => {
                log(format!("adopted registration {id} of {}", mec.instance));
                id
            }
            None => {
                let id = register(mec)?;
                log(format!("registered as {id} for UE {:?}", mec.ue));
                id
            }
        };
        *lock(&mec.registration) = Some(id);
    }
    if lock(&mec.subscription).is_none() {
        let href = subscribe(mec)?;
        log(format!("subscribed to mobility procedures: {href}"));
        *lock(&mec.subscription) = Some(href);
    }
    Ok(())
}

fn expect(a: &http::Response, status: u16, what: &str) -> Result<Json, String> {
    if a.status != status {
        return Err(format!(
            "{what}: AMS answered {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        ));
    }
    Json::parse(&a.body).map_err(|e| format!("{what}: answer is not JSON: {e}"))
}

/// The registration of this app instance, if one exists.
fn find_registration(mec: &Mec) -> Result<Option<String>, String> {
    let filter = format!("(eq,serviceConsumerId/appInstanceId,{})", mec.instance);
    let url = mec.ams(&format!(
        "/app_mobility_services?filter={}",
        http::encode(&filter)
    ));
    let list = expect(
        &http::request("GET", &url, None)?,
        200,
        "registration query",
    )?;
    Ok(list
        .as_array()
        .iter()
        .find_map(|r| r.get("appMobilityServiceId").and_then(Json::as_str))
        .map(str::to_string))
}

fn register(mec: &Mec) -> Result<String, String> {
    let mut body = Json::obj(vec![(
        "serviceConsumerId",
        Json::obj(vec![("appInstanceId", Json::str(&mec.instance))]),
    )]);
    if let Some(ue) = &mec.ue {
        body.set(
            "deviceInformation",
            Json::Arr(vec![Json::obj(vec![
                (
                    "associateId",
                    Json::obj(vec![
                        ("type", Json::str("UE_IPv4_ADDRESS")),
                        ("value", Json::str(ue)),
                    ]),
                ),
                (
                    "appMobilityServiceLevel",
                    Json::str("APP_MOBILITY_WITH_CONFIRMATION"),
                ),
                ("contextTransferState", Json::str("NOT_TRANSFERRED")),
            ])]),
        );
    }
    let a = http::request(
        "POST",
        &mec.ams("/app_mobility_services"),
        Some(&body.to_string()),
    )?;
    let r = expect(&a, 201, "registration")?;
    r.get("appMobilityServiceId")
        .and_then(Json::as_str)
        .map(str::to_string)
        .ok_or_else(|| "registration answer has no appMobilityServiceId".to_string())
}

/// The local address this instance reaches the platform from: where the platform reaches
/// it back (each ferry instance has its own routed address). No packet is sent.
fn own_ip(api_root: &str) -> Result<IpAddr, String> {
    let u = http::Url::parse(api_root)?;
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.connect((u.host.as_str(), u.port))
        .map_err(|e| format!("no route to {api_root}: {e}"))?;
    Ok(s.local_addr().map_err(|e| e.to_string())?.ip())
}

fn subscribe(mec: &Mec) -> Result<String, String> {
    let ip = own_ip(&mec.api_root)?;
    *lock(&mec.own_ip) = Some(ip);
    let mut filter = Json::obj(vec![
        ("appInstanceId", Json::str(&mec.instance)),
        (
            "mobilityStatus",
            Json::Arr(vec![Json::str(TRIGGERED), Json::str(FAILED)]),
        ),
    ]);
    if let Some(ue) = &mec.ue {
        filter.set(
            "associateId",
            Json::Arr(vec![Json::obj(vec![
                ("type", Json::str("UE_IPv4_ADDRESS")),
                ("value", Json::str(ue)),
            ])]),
        );
    }
    let body = Json::obj(vec![
        (
            "subscriptionType",
            Json::str("MobilityProcedureSubscription"),
        ),
        (
            "callbackReference",
            Json::str(format!("http://{ip}:{}{CALLBACK_PATH}", mec.port)),
        ),
        ("filterCriteria", filter),
    ]);
    let a = http::request("POST", &mec.ams("/subscriptions"), Some(&body.to_string()))?;
    let r = expect(&a, 201, "subscription")?;
    a.header("location")
        .map(str::to_string)
        .or_else(|| {
            r.at(&["_links", "self", "href"])
                .and_then(Json::as_str)
                .map(str::to_string)
        })
        .ok_or_else(|| "subscription answer names no resource".to_string())
}

/// `POST /mec/mobility_procedure`: a notification from AMS. Answers at once (the platform
/// delivers with a timeout); the hand-off runs on its own thread.
pub fn notification(state: &Arc<State>, body: &[u8]) -> (&'static str, String) {
    let Some(mec) = state.mec.as_ref() else {
        return (
            "404 Not Found",
            r#"{"error":"not a MEC application"}"#.into(),
        );
    };
    let n = match Json::parse(body) {
        Ok(n) => n,
        Err(e) => {
            let detail = Json::str(format!("notification is not JSON: {e}"));
            return (
                "400 Bad Request",
                format!(r#"{{"status":400,"detail":{detail}}}"#),
            );
        }
    };
    if n.get("notificationType").and_then(Json::as_str) != Some("MobilityProcedureNotification") {
        return ("204 No Content", String::new());
    }
    let ues: Vec<String> = n
        .get("associateId")
        .map(Json::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.get("value").and_then(Json::as_str).map(str::to_string))
        .collect();
    match n.get("mobilityStatus").and_then(Json::as_str) {
        Some(TRIGGERED) => {
            let target = n
                .at(&["targetAppInfo", "commInterface", "ipAddresses"])
                .and_then(|a| a.as_array().first())
                .and_then(|a| {
                    Some((
                        a.get("host")?.as_str()?.to_string(),
                        u16::try_from(a.get("port")?.as_u64()?).ok()?,
                    ))
                });
            if mec.busy.swap(true, Ordering::SeqCst) {
                log("TRIGGERED while a hand-off runs: ignored");
            } else {
                // Here, not on the thread: a FAILED right behind must not be forgotten.
                mec.failed.store(false, Ordering::SeqCst);
                let s = state.clone();
                std::thread::spawn(move || {
                    hand_off(&s, target, &ues);
                    if let Some(m) = s.mec.as_ref() {
                        m.busy.store(false, Ordering::SeqCst);
                    }
                });
            }
        }
        Some(FAILED) => {
            mec.failed.store(true, Ordering::SeqCst);
            // A running hand-off sees the flag and resumes itself.
            if !mec.busy.load(Ordering::SeqCst) && state.frozen() {
                log("relocation FAILED: serving on");
                state.resume();
            }
        }
        _ => {}
    }
    ("204 No Content", String::new())
}

/// The application's part of a relocation (see the module's comment).
fn hand_off(state: &State, target: Option<(String, u16)>, ues: &[String]) {
    let Some(mec) = state.mec.as_ref() else {
        return;
    };
    let Some((host, port)) = target else {
        log("TRIGGERED without targetAppInfo.commInterface: nowhere to send the context");
        return;
    };
    let own = *lock(&mec.own_ip);
    if own.is_some_and(|ip| ip.to_string() == host) && port == mec.port {
        // The platform moves this very instance: confirm, as WITH_CONFIRMATION asks.
        match update_registration(mec, ues, None) {
            Ok(()) => log("the platform moves this instance itself: confirmed"),
            Err(e) => log(format!("cannot confirm the relocation: {e}")),
        }
        return;
    }
    let started = std::time::Instant::now();
    state.freeze();
    let url = format!("http://{host}:{port}/context");
    let bytes = match context::send(state, &url, &|| mec.failed.load(Ordering::SeqCst)) {
        Ok(b) => b,
        Err(e) => {
            log(format!("context not handed over, serving on: {e}"));
            state.resume();
            return;
        }
    };
    if mec.failed.load(Ordering::SeqCst) {
        log("relocation FAILED while the context was sent: serving on");
        state.resume();
        return;
    }
    if let Err(e) = update_registration(mec, ues, Some("USER_CONTEXT_TRANSFER_COMPLETED")) {
        log(format!("context sent but not reported, serving on: {e}"));
        state.resume();
        return;
    }
    // The target instance follows the UE from now on; this one is about to be removed.
    if let Some(href) = lock(&mec.subscription).take() {
        if let Err(e) = http::request("DELETE", &href, None) {
            log(format!("subscription {href} not deleted: {e}"));
        }
    }
    log(format!(
        "context ({bytes} bytes) handed to {host}:{port} in {} ms",
        started.elapsed().as_millis()
    ));
}

/// PUTs the registration back with the notified UEs' `contextTransferState` set to `state`
/// (all UEs' if none was named or matches); `None` leaves it as it is (a confirmation).
fn update_registration(mec: &Mec, ues: &[String], state: Option<&str>) -> Result<(), String> {
    let id = lock(&mec.registration)
        .clone()
        .ok_or("no registration yet")?;
    let url = mec.ams(&format!("/app_mobility_services/{id}"));
    let mut r = expect(&http::request("GET", &url, None)?, 200, "registration read")?;
    if let Some(state) = state {
        let named = |d: &Json| {
            d.at(&["associateId", "value"])
                .and_then(Json::as_str)
                .is_some_and(|v| ues.iter().any(|u| u == v))
        };
        if let Some(Json::Arr(devices)) = r.get_mut("deviceInformation") {
            let any = devices.iter().any(named);
            for d in devices.iter_mut() {
                if !any || named(d) {
                    d.set("contextTransferState", Json::str(state));
                }
            }
        }
    }
    let a = http::request("PUT", &url, Some(&r.to_string()))?;
    expect(&a, 200, "registration update").map(|_| ())
}
