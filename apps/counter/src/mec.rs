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

use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::StatusCode;
use mec_api::ams::{
    AppMobilityServiceLevel, AssociateId, ContextTransferState, DeviceInformation,
    MobilityProcedureFilter, MobilityProcedureNotification, MobilityProcedureSubscription,
    MobilityStatus, RegistrationInfo, ServiceConsumerId, MOBILITY_PROCEDURE_NOTIFICATION,
    MOBILITY_PROCEDURE_SUBSCRIPTION,
};
use serde::de::DeserializeOwned;

use crate::server::Answer;
use crate::{client, context, lock, State};

/// Path of the MobilityProcedure callback on the counter's port.
pub const CALLBACK_PATH: &str = "/mec/mobility_procedure";

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
    /// The instance's OAuth client, when the platform serves TLS and tokens.
    creds: Option<crate::oauth::Credentials>,
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
        Some(Mec::new(
            &var("MEC_API_ROOT")?,
            var("MEC_APP_INSTANCE_ID")?,
            var("MEC_ASSOCIATE_ID"),
            port,
        ))
    }

    fn new(api_root: &str, instance: String, ue: Option<String>, port: u16) -> Mec {
        Mec {
            api_root: api_root.trim_end_matches('/').to_string(),
            instance,
            ue,
            port,
            registration: Mutex::new(None),
            subscription: Mutex::new(None),
            own_ip: Mutex::new(None),
            creds: crate::oauth::Credentials::from_env(),
            busy: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    fn ams(&self, path: &str) -> String {
        format!("{}/amsi/v1{path}", self.api_root)
    }

    /// A MEC API call with the instance's token (if it has credentials); on 401 once more
    /// with a fresh token.
    fn api(
        &self,
        call: impl Fn(Option<&str>) -> Result<client::Answer, String>,
    ) -> Result<client::Answer, String> {
        let Some(creds) = &self.creds else {
            return call(None);
        };
        let a = call(Some(&creds.token()?))?;
        if a.status != 401 {
            return Ok(a);
        }
        creds.invalidate();
        call(Some(&creds.token()?))
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

/// The answer's body as `T`, if AMS answered `status`.
fn expect<T: DeserializeOwned>(a: &client::Answer, status: u16, what: &str) -> Result<T, String> {
    if a.status != status {
        return Err(format!(
            "{what}: AMS answered {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        ));
    }
    serde_json::from_slice(&a.body).map_err(|e| format!("{what}: unexpected answer: {e}"))
}

/// The registration of this app instance, if one exists.
fn find_registration(mec: &Mec) -> Result<Option<String>, String> {
    let filter = format!("(eq,serviceConsumerId/appInstanceId,{})", mec.instance);
    let url = mec.ams("/app_mobility_services");
    let list: Vec<RegistrationInfo> = expect(
        &mec.api(|t| client::get(&url, &[("filter", &filter)], t))?,
        200,
        "registration query",
    )?;
    Ok(list.into_iter().find_map(|r| r.app_mobility_service_id))
}

fn register(mec: &Mec) -> Result<String, String> {
    let body = RegistrationInfo {
        app_mobility_service_id: None,
        service_consumer_id: ServiceConsumerId {
            app_instance_id: Some(mec.instance.clone()),
            mep_id: None,
        },
        device_information: mec
            .ue
            .iter()
            .map(|ue| DeviceInformation {
                associate_id: AssociateId::ue_ipv4(ue),
                app_mobility_service_level: Some(
                    AppMobilityServiceLevel::AppMobilityWithConfirmation,
                ),
                context_transfer_state: Some(ContextTransferState::NotTransferred),
            })
            .collect(),
        expiry_time: None,
    };
    let a = mec.api(|t| client::post(&mec.ams("/app_mobility_services"), &body, t))?;
    let r: RegistrationInfo = expect(&a, 201, "registration")?;
    r.app_mobility_service_id
        .ok_or_else(|| "registration answer has no appMobilityServiceId".to_string())
}

/// The local address this instance reaches the platform from: where the platform reaches
/// it back (each ferry instance has its own routed address). No packet is sent.
fn own_ip(api_root: &str) -> Result<IpAddr, String> {
    let uri: ureq::http::Uri = api_root
        .parse()
        .map_err(|e| format!("MEC_API_ROOT '{api_root}': {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("MEC_API_ROOT '{api_root}' names no host"))?;
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.connect((host, uri.port_u16().unwrap_or(80)))
        .map_err(|e| format!("no route to {api_root}: {e}"))?;
    Ok(s.local_addr().map_err(|e| e.to_string())?.ip())
}

fn subscribe(mec: &Mec) -> Result<String, String> {
    let ip = own_ip(&mec.api_root)?;
    *lock(&mec.own_ip) = Some(ip);
    let body = MobilityProcedureSubscription {
        subscription_type: MOBILITY_PROCEDURE_SUBSCRIPTION.to_string(),
        callback_reference: format!("http://{ip}:{}{CALLBACK_PATH}", mec.port),
        links: None,
        expiry_deadline: None,
        filter_criteria: MobilityProcedureFilter {
            app_instance_id: Some(mec.instance.clone()),
            associate_id: mec.ue.iter().map(AssociateId::ue_ipv4).collect(),
            mobility_status: vec![
                MobilityStatus::InterhostMoveoutTriggered,
                MobilityStatus::InterhostMoveoutFailed,
            ],
        },
    };
    let a = mec.api(|t| client::post(&mec.ams("/subscriptions"), &body, t))?;
    let r: MobilityProcedureSubscription = expect(&a, 201, "subscription")?;
    a.location
        .or_else(|| r.links.map(|l| l.self_.href))
        .ok_or_else(|| "subscription answer names no resource".to_string())
}

/// `POST /mec/mobility_procedure`: a notification from AMS. Answers at once (the platform
/// delivers with a timeout); the hand-off runs on its own thread.
pub fn notification(state: &Arc<State>, body: &[u8]) -> Answer {
    let Some(mec) = state.mec.as_ref() else {
        return Answer::error(StatusCode::NOT_FOUND, "not a MEC application");
    };
    let bad = |e: serde_json::Error| {
        Answer::problem(
            StatusCode::BAD_REQUEST,
            format!("not a MobilityProcedureNotification: {e}"),
        )
    };
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    // Other notification types (an expiry, say) are not this callback's business.
    if value.get("notificationType").and_then(|t| t.as_str())
        != Some(MOBILITY_PROCEDURE_NOTIFICATION)
    {
        return Answer::empty(StatusCode::NO_CONTENT);
    }
    let n: MobilityProcedureNotification = match serde_json::from_value(value) {
        Ok(n) => n,
        Err(e) => return bad(e),
    };
    let ues: Vec<String> = n.associate_id.into_iter().map(|a| a.value).collect();
    match n.mobility_status {
        MobilityStatus::InterhostMoveoutTriggered => {
            let target = n
                .target_app_info
                .and_then(|t| t.comm_interface)
                .and_then(|c| c.ip_addresses.into_iter().next())
                .map(|a| (a.host, a.port));
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
        MobilityStatus::InterhostMoveoutFailed => {
            mec.failed.store(true, Ordering::SeqCst);
            // A running hand-off sees the flag and resumes itself.
            if !mec.busy.load(Ordering::SeqCst) && state.frozen() {
                log("relocation FAILED: serving on");
                state.resume();
            }
        }
        MobilityStatus::InterhostMoveoutCompleted => {}
    }
    Answer::empty(StatusCode::NO_CONTENT)
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
    if let Err(e) = update_registration(
        mec,
        ues,
        Some(ContextTransferState::UserContextTransferCompleted),
    ) {
        log(format!("context sent but not reported, serving on: {e}"));
        state.resume();
        return;
    }
    // The target instance follows the UE from now on; this one is about to be removed.
    if let Some(href) = lock(&mec.subscription).take() {
        if let Err(e) = mec.api(|t| client::delete(&href, t)) {
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
fn update_registration(
    mec: &Mec,
    ues: &[String],
    state: Option<ContextTransferState>,
) -> Result<(), String> {
    let id = lock(&mec.registration)
        .clone()
        .ok_or("no registration yet")?;
    let url = mec.ams(&format!("/app_mobility_services/{id}"));
    let mut r: RegistrationInfo = expect(
        &mec.api(|t| client::get(&url, &[], t))?,
        200,
        "registration read",
    )?;
    if let Some(state) = state {
        let named = |d: &DeviceInformation| ues.contains(&d.associate_id.value);
        let any = r.device_information.iter().any(named);
        for d in r.device_information.iter_mut() {
            if !any || named(d) {
                d.context_transfer_state = Some(state);
            }
        }
    }
    let a = mec.api(|t| client::put(&url, &r, t))?;
    expect::<serde_json::Value>(&a, 200, "registration update").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(state: &Arc<State>, body: serde_json::Value) -> Answer {
        notification(state, body.to_string().as_bytes())
    }

    fn mobility(status: &str) -> serde_json::Value {
        serde_json::json!({
            "notificationType": MOBILITY_PROCEDURE_NOTIFICATION,
            "associateId": [{"type": "UE_IPv4_ADDRESS", "value": "10.150.0.1"}],
            "mobilityStatus": status,
            "_links": {"subscription": {"href": "http://ams/subscriptions/1"}}
        })
    }

    #[test]
    fn notifications_are_checked_and_failed_resumes_a_frozen_instance() {
        let mec = Mec::new("http://127.0.0.1:9/", "i1".into(), None, 8080);
        assert_eq!(mec.ams("/x"), "http://127.0.0.1:9/amsi/v1/x");
        let state = Arc::new(State::new(0, 0.0, Some(mec)));
        let a = notification(&state, b"{not json");
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.content_type, mec_api::problem::PROBLEM_JSON);
        let p: mec_api::problem::ProblemDetails = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(p.status, Some(400));
        // A MobilityProcedureNotification without its mandatory fields, or with a status
        // MEC 021 does not have, is refused; another notification type is not ours.
        let mut n = mobility("INTERHOST_MOVEOUT_FAILED");
        n["mobilityStatus"] = "SOMEWHERE_ELSE".into();
        assert_eq!(notify(&state, n).status, StatusCode::BAD_REQUEST);
        let n = serde_json::json!({"notificationType": MOBILITY_PROCEDURE_NOTIFICATION});
        assert_eq!(notify(&state, n).status, StatusCode::BAD_REQUEST);
        let n = serde_json::json!({"notificationType": "ExpiryNotification"});
        assert_eq!(notify(&state, n).status, StatusCode::NO_CONTENT);

        state.freeze();
        let a = notify(&state, mobility("INTERHOST_MOVEOUT_COMPLETED"));
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        assert!(state.frozen(), "COMPLETED changes nothing here");
        let a = notify(&state, mobility("INTERHOST_MOVEOUT_FAILED"));
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        assert!(!state.frozen(), "FAILED: the instance serves on");
    }

    #[test]
    fn a_plain_counter_has_no_callback() {
        let state = Arc::new(State::new(0, 0.0, None));
        let a = notify(&state, mobility("INTERHOST_MOVEOUT_FAILED"));
        assert_eq!(a.status, StatusCode::NOT_FOUND);
    }
}
