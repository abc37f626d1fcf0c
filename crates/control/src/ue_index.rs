//! Which app instances follow each UE: the relocation controller's lookup on every handover,
//! kept in memory so a handover costs O(instances of that UE), not a scan of the store.
//!
//! Two sources, as stored: MEC 021 registrations (`Table::Registrations`: each
//! `deviceInformation` entry of a `UE_IPv4_ADDRESS` names a UE the registering instance
//! follows, with its service level) and instances instantiated for a UE without a
//! registration (`Table::InstanceUes`, `ferryAssociateId`). Built from the store at start and
//! changed right after each store write of those tables (`ams.rs`, `app_lcm.rs`); the store
//! stays the truth.

use mec_api::ams::{AppMobilityServiceLevel, AssociateIdType, RegistrationInfo};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

/// An app instance that follows a UE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    pub instance: String,
    /// The AMS registration naming the UE (`None`: instantiated for the UE, no registration).
    pub registration: Option<String>,
    pub level: Option<AppMobilityServiceLevel>,
}

#[derive(Debug, Default)]
struct State {
    /// Registration id -> (instance, UE, level) of each of its UE entries.
    registrations: HashMap<String, Vec<(String, Ipv4Addr, Option<AppMobilityServiceLevel>)>>,
    /// Instance -> the UE it was instantiated for.
    instance_ues: HashMap<String, Ipv4Addr>,
    /// UE -> registrations and instances naming it.
    by_ue: HashMap<Ipv4Addr, (HashSet<String>, HashSet<String>)>,
}

/// The index; cheap to query from any thread.
#[derive(Debug, Default)]
pub struct UeIndex {
    state: Mutex<State>,
}

impl UeIndex {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records (or replaces) registration `id`.
    pub fn set_registration(&self, id: &str, info: &RegistrationInfo) {
        let mut s = self.state();
        s.remove_registration(id);
        let Some(instance) = info.service_consumer_id.app_instance_id.clone() else {
            return; // a MEP's registration: no instance to move
        };
        let mut entries = Vec::new();
        for d in &info.device_information {
            let a = &d.associate_id;
            if a.type_ != AssociateIdType::UeIpv4Address {
                continue;
            }
            let Ok(ue) = a.value.trim().parse::<Ipv4Addr>() else {
                continue;
            };
            s.by_ue.entry(ue).or_default().0.insert(id.to_string());
            entries.push((instance.clone(), ue, d.app_mobility_service_level));
        }
        s.registrations.insert(id.to_string(), entries);
    }

    pub fn remove_registration(&self, id: &str) {
        self.state().remove_registration(id);
    }

    /// Records that `instance` was instantiated for `ue`.
    pub fn set_instance_ue(&self, instance: &str, ue: Ipv4Addr) {
        let mut s = self.state();
        if let Some(old) = s.instance_ues.insert(instance.to_string(), ue) {
            s.unlink_instance(old, instance);
        }
        s.by_ue
            .entry(ue)
            .or_default()
            .1
            .insert(instance.to_string());
    }

    /// The instances following `ue`: one per registration entry naming it, then those
    /// instantiated for it that no registration covers.
    pub fn followers(&self, ue: Ipv4Addr) -> Vec<Follower> {
        let s = self.state();
        let Some((regs, instances)) = s.by_ue.get(&ue) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut regs: Vec<&String> = regs.iter().collect();
        regs.sort();
        for id in regs {
            for (instance, u, level) in s.registrations.get(id).into_iter().flatten() {
                if *u == ue {
                    out.push(Follower {
                        instance: instance.clone(),
                        registration: Some(id.clone()),
                        level: *level,
                    });
                }
            }
        }
        let mut instances: Vec<&String> = instances.iter().collect();
        instances.sort();
        for instance in instances {
            if !out.iter().any(|f| &f.instance == instance) {
                out.push(Follower {
                    instance: instance.clone(),
                    registration: None,
                    level: None,
                });
            }
        }
        out
    }

    /// Every UE some instance follows.
    pub fn ues(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self.state().by_ue.keys().copied().collect();
        v.sort();
        v
    }
}

impl State {
    fn remove_registration(&mut self, id: &str) {
        for (_, ue, _) in self.registrations.remove(id).unwrap_or_default() {
            if let Some(e) = self.by_ue.get_mut(&ue) {
                e.0.remove(id);
                if e.0.is_empty() && e.1.is_empty() {
                    self.by_ue.remove(&ue);
                }
            }
        }
    }

    fn unlink_instance(&mut self, ue: Ipv4Addr, instance: &str) {
        if let Some(e) = self.by_ue.get_mut(&ue) {
            e.1.remove(instance);
            if e.0.is_empty() && e.1.is_empty() {
                self.by_ue.remove(&ue);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mec_api::ams::{AssociateId, DeviceInformation, ServiceConsumerId};

    fn reg(instance: &str, ues: &[(&str, AppMobilityServiceLevel)]) -> RegistrationInfo {
        RegistrationInfo {
            app_mobility_service_id: None,
            service_consumer_id: ServiceConsumerId {
                app_instance_id: Some(instance.into()),
                mep_id: None,
            },
            device_information: ues
                .iter()
                .map(|(ue, l)| DeviceInformation {
                    associate_id: AssociateId {
                        type_: AssociateIdType::UeIpv4Address,
                        value: ue.to_string(),
                    },
                    app_mobility_service_level: Some(*l),
                    context_transfer_state: None,
                })
                .collect(),
            expiry_time: None,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn followers_come_from_registrations_and_instantiation() {
        use AppMobilityServiceLevel::*;
        let x = UeIndex::default();
        x.set_registration(
            "r1",
            &reg(
                "i1",
                &[
                    ("10.0.0.1", AppMobilityWithoutConfirmation),
                    ("10.0.0.2", AppMobilityNotAllowed),
                ],
            ),
        );
        x.set_instance_ue("i1", ip("10.0.0.1")); // covered by r1
        x.set_instance_ue("i2", ip("10.0.0.1"));
        let f = x.followers(ip("10.0.0.1"));
        assert_eq!(
            f.iter()
                .map(|f| (f.instance.as_str(), f.registration.as_deref()))
                .collect::<Vec<_>>(),
            vec![("i1", Some("r1")), ("i2", None)]
        );
        assert_eq!(
            x.followers(ip("10.0.0.2"))[0].level,
            Some(AppMobilityNotAllowed)
        );
        // An update that drops a UE, and a removal.
        x.set_registration(
            "r1",
            &reg("i1", &[("10.0.0.2", AppMobilityWithConfirmation)]),
        );
        // i1 still follows 10.0.0.1, as instantiated for it, now without a registration.
        assert_eq!(
            x.followers(ip("10.0.0.1")),
            vec![
                Follower {
                    instance: "i1".into(),
                    registration: None,
                    level: None
                },
                Follower {
                    instance: "i2".into(),
                    registration: None,
                    level: None
                }
            ]
        );
        assert_eq!(
            x.followers(ip("10.0.0.2"))[0].level,
            Some(AppMobilityWithConfirmation)
        );
        x.remove_registration("r1");
        assert!(x.followers(ip("10.0.0.2")).is_empty());
        assert_eq!(x.ues(), vec![ip("10.0.0.1")]);
        // Instantiated again for another UE.
        x.set_instance_ue("i2", ip("10.0.0.3"));
        assert_eq!(x.followers(ip("10.0.0.1")).len(), 1);
        assert_eq!(x.ues(), vec![ip("10.0.0.1"), ip("10.0.0.3")]);
    }
}
