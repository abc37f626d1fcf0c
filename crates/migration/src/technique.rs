//! Migration techniques and the rule `auto` follows. Kernel features are probed, never
//! assumed: pre-copy and hybrid need soft-dirty tracking (CRIU `mem_dirty_track`),
//! post-copy needs userfaultfd (CRIU lazy pages) and a large `fs.pipe-max-size`.

use ferry_runtime::criu::Features;

pub use ferry_wire::migration::Technique;

/// What `auto` decides from. Link and dirty rate come from whoever asks for the migration
/// (the control plane knows the topology); a host cannot measure them before moving.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    /// Memory the container uses (its cgroup's count).
    pub state_bytes: u64,
    /// Host-to-host link rate; [`DEFAULT_LINK_BIT_S`] when unknown.
    pub link_bit_s: Option<u64>,
    /// How fast the app writes its memory; unknown when absent.
    pub dirty_bytes_s: Option<u64>,
}

/// Assumed link rate when the caller does not say (a typical edge backhaul).
pub const DEFAULT_LINK_BIT_S: u64 = 1_000_000_000;

/// Cold downtime `auto` accepts: below it, stopping and copying everything is the simplest
/// and the total is shortest (no rounds, no remote faults).
pub const AUTO_COLD_MAX_MS: u64 = 300;

/// Pre-copy converges when the app dirties memory well below the link rate: each round then
/// sends less than the one before. Above this share of the link, `auto` prefers hybrid.
pub const PRE_COPY_MAX_DIRTY_SHARE: f64 = 0.5;

/// Resolves `requested` against what this host can do.
///
/// `auto`, in order:
/// 1. cold when copying the whole state would stop the app at most [`AUTO_COLD_MAX_MS`]
///    (state / link rate);
/// 2. with dirty tracking: pre-copy when the dirty rate is known and below
///    [`PRE_COPY_MAX_DIRTY_SHARE`] of the link (rounds converge, downtime is the last small
///    round); otherwise hybrid when lazy pages work (rounds move the cold pages, the hot
///    rest is pulled after the restore);
/// 3. post-copy when lazy pages work (downtime no longer grows with the state);
/// 4. cold.
///
/// It never picks a technique the kernel lacks. An explicit technique the kernel cannot do
/// is refused with the reason.
pub fn choose(
    requested: Technique,
    features: &Features,
    inputs: Inputs,
    implemented: &[Technique],
) -> Result<Technique, String> {
    let lazy_ok = features.lazy_pages && features.pipe_max_size_ok;
    let picked = match requested {
        Technique::Auto => auto(features, lazy_ok, inputs, implemented),
        Technique::PreCopy | Technique::Hybrid if !features.mem_dirty_track => {
            return Err(format!(
                "{requested} needs soft-dirty page tracking, which this kernel lacks (criu check: \
                 mem_dirty_track; CONFIG_MEM_SOFT_DIRTY): use cold or post-copy"
            ))
        }
        Technique::PostCopy | Technique::Hybrid if !lazy_ok => {
            return Err(format!(
                "{requested} needs CRIU lazy pages (userfaultfd) and fs.pipe-max-size >= 4194304; \
                 see `ferry doctor`"
            ))
        }
        t => t,
    };
    if !implemented.contains(&picked) {
        return Err(format!(
            "technique {picked} is not available in this build of ferry yet"
        ));
    }
    Ok(picked)
}

fn auto(features: &Features, lazy_ok: bool, i: Inputs, implemented: &[Technique]) -> Technique {
    let link_bytes_s = (i.link_bit_s.unwrap_or(DEFAULT_LINK_BIT_S) / 8).max(1);
    let cold_ms = i.state_bytes.saturating_mul(1000) / link_bytes_s;
    let can = |t: Technique| implemented.contains(&t);
    if cold_ms <= AUTO_COLD_MAX_MS {
        return Technique::Cold;
    }
    if features.mem_dirty_track {
        let converges = i
            .dirty_bytes_s
            .is_some_and(|d| (d as f64) < PRE_COPY_MAX_DIRTY_SHARE * link_bytes_s as f64);
        if converges && can(Technique::PreCopy) {
            return Technique::PreCopy;
        }
        if lazy_ok && can(Technique::Hybrid) {
            return Technique::Hybrid;
        }
        if can(Technique::PreCopy) && !lazy_ok {
            return Technique::PreCopy;
        }
    }
    if lazy_ok && can(Technique::PostCopy) {
        return Technique::PostCopy;
    }
    Technique::Cold
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Technique] = &[
        Technique::Cold,
        Technique::PostCopy,
        Technique::PreCopy,
        Technique::Hybrid,
    ];

    fn here() -> Features {
        Features {
            mem_dirty_track: false,
            lazy_pages: true,
            pipe_max_size_ok: true,
        }
    }

    fn soft_dirty() -> Features {
        Features {
            mem_dirty_track: true,
            ..here()
        }
    }

    fn state(bytes: u64) -> Inputs {
        Inputs {
            state_bytes: bytes,
            link_bit_s: None,
            dirty_bytes_s: None,
        }
    }

    #[test]
    fn pre_copy_refused_without_dirty_tracking() {
        let err = choose(Technique::PreCopy, &here(), state(1 << 30), ALL).unwrap_err();
        assert!(err.contains("soft-dirty"), "{err}");
        assert!(choose(Technique::Hybrid, &here(), state(1 << 30), ALL).is_err());
    }

    #[test]
    fn auto_never_picks_pre_copy_here_and_scales_with_state() {
        for size in [0u64, 1 << 20, 64 << 20, 1 << 30, 16 << 30] {
            for dirty in [None, Some(0), Some(8 << 20), Some(1 << 30)] {
                let i = Inputs {
                    dirty_bytes_s: dirty,
                    ..state(size)
                };
                let t = choose(Technique::Auto, &here(), i, ALL).unwrap();
                assert!(matches!(t, Technique::Cold | Technique::PostCopy), "{t}");
            }
        }
        assert_eq!(
            choose(Technique::Auto, &here(), state(1 << 20), ALL).unwrap(),
            Technique::Cold
        );
        assert_eq!(
            choose(Technique::Auto, &here(), state(256 << 20), ALL).unwrap(),
            Technique::PostCopy
        );
    }

    #[test]
    fn auto_weighs_the_link_rate() {
        // 32 MiB: 268 ms at 1 Gbit/s (cold), 2.7 s at 100 Mbit/s (post-copy).
        let i = state(32 << 20);
        assert_eq!(
            choose(Technique::Auto, &here(), i, ALL).unwrap(),
            Technique::Cold
        );
        let slow = Inputs {
            link_bit_s: Some(100_000_000),
            ..i
        };
        assert_eq!(
            choose(Technique::Auto, &here(), slow, ALL).unwrap(),
            Technique::PostCopy
        );
    }

    #[test]
    fn auto_with_dirty_tracking_weighs_the_dirty_rate() {
        let calm = Inputs {
            dirty_bytes_s: Some(8 << 20),
            ..state(256 << 20)
        };
        assert_eq!(
            choose(Technique::Auto, &soft_dirty(), calm, ALL).unwrap(),
            Technique::PreCopy
        );
        // 100 MiB/s on a 1 Gbit/s link (119 MiB/s): rounds would not shrink.
        let busy = Inputs {
            dirty_bytes_s: Some(100 << 20),
            ..calm
        };
        assert_eq!(
            choose(Technique::Auto, &soft_dirty(), busy, ALL).unwrap(),
            Technique::Hybrid
        );
        // Unknown rate: hybrid bounds the downtime whatever the app does.
        assert_eq!(
            choose(Technique::Auto, &soft_dirty(), state(256 << 20), ALL).unwrap(),
            Technique::Hybrid
        );
        // Small state: cold, even with dirty tracking.
        assert_eq!(
            choose(Technique::Auto, &soft_dirty(), state(1 << 20), ALL).unwrap(),
            Technique::Cold
        );
    }

    #[test]
    fn post_copy_needs_lazy_pages() {
        let no_uffd = Features {
            lazy_pages: false,
            ..here()
        };
        assert!(choose(Technique::PostCopy, &no_uffd, state(0), ALL).is_err());
        assert_eq!(
            choose(Technique::Auto, &no_uffd, state(1 << 30), ALL).unwrap(),
            Technique::Cold
        );
        let small_pipes = Features {
            pipe_max_size_ok: false,
            ..here()
        };
        assert!(choose(Technique::PostCopy, &small_pipes, state(0), ALL).is_err());
        let no_uffd_soft_dirty = Features {
            mem_dirty_track: true,
            ..no_uffd
        };
        assert!(choose(Technique::Hybrid, &no_uffd_soft_dirty, state(0), ALL).is_err());
        assert_eq!(
            choose(Technique::Auto, &no_uffd_soft_dirty, state(1 << 30), ALL).unwrap(),
            Technique::PreCopy
        );
    }

    #[test]
    fn unimplemented_technique_is_refused_not_faked() {
        let only_cold = &[Technique::Cold];
        assert!(choose(Technique::PostCopy, &here(), state(0), only_cold).is_err());
        assert_eq!(
            choose(Technique::Auto, &here(), state(1 << 30), only_cold).unwrap(),
            Technique::Cold
        );
    }
}
