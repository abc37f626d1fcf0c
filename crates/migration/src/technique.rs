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

/// Pre-copy converges when the app dirties memory well below the link rate: each round then
/// sends less than the one before. Above this share of the link, `auto` prefers hybrid.
pub const PRE_COPY_MAX_DIRTY_SHARE: f64 = 0.5;

/// How many of a host's own migrations of a technique its fixed costs are learned from (the
/// latest ones), and how many it needs before it trusts them over the defaults.
pub const LEARN_FROM: usize = 10;
pub const LEARN_MIN: usize = 3;

/// The part of a technique's downtime that does not grow with the state, on this host: the
/// frozen time of its completed migrations (freeze to commit), for cold less the time its
/// pages took at the link rate the request named. Learned from the host's own migrations
/// (the median of the latest [`LEARN_FROM`]) once it has [`LEARN_MIN`], else the defaults,
/// measured on this project's 2-core machines (native engine, ferry's CRIU 4.2.1 build,
/// 1 Gbit/s 5 ms, 2026-12-06: post-copy frozen 85-104 ms, cold 120 ms beyond the link time
/// at 64 MiB and 295 ms at 256 MiB, where the restore reads more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedCosts {
    pub cold_ms: u64,
    pub post_copy_ms: u64,
    /// How many migrations each figure came from (0: the default).
    pub cold_from: usize,
    pub post_copy_from: usize,
}

impl FixedCosts {
    pub const DEFAULT: FixedCosts = FixedCosts {
        cold_ms: 200,
        post_copy_ms: 100,
        cold_from: 0,
        post_copy_from: 0,
    };

    /// From completed migrations, newest first: (technique, frozen ms, page bytes, link bit/s).
    pub fn learn(done: impl IntoIterator<Item = (Technique, u64, u64, u64)>) -> FixedCosts {
        let mut cold = Vec::new();
        let mut lazy = Vec::new();
        for (t, frozen_ms, pages, link) in done {
            match t {
                Technique::Cold if cold.len() < LEARN_FROM => {
                    cold.push(frozen_ms.saturating_sub(transfer_ms(pages, link)))
                }
                Technique::PostCopy if lazy.len() < LEARN_FROM => lazy.push(frozen_ms),
                _ => {}
            }
        }
        let median = |mut v: Vec<u64>, default: u64| {
            if v.len() < LEARN_MIN {
                return (default, 0);
            }
            v.sort_unstable();
            (v[v.len() / 2], v.len())
        };
        let (cold_ms, cold_from) = median(cold, Self::DEFAULT.cold_ms);
        let (post_copy_ms, post_copy_from) = median(lazy, Self::DEFAULT.post_copy_ms);
        FixedCosts {
            cold_ms,
            post_copy_ms,
            cold_from,
            post_copy_from,
        }
    }
}

/// Milliseconds to move `bytes` at `link_bit_s`.
pub fn transfer_ms(bytes: u64, link_bit_s: u64) -> u64 {
    bytes.saturating_mul(8000) / link_bit_s.max(1)
}

/// Resolves `requested` against what this host can do; for `auto`, also why.
///
/// `auto` picks the lowest expected downtime: cold's fixed cost plus the state at the link
/// rate, or post-copy's fixed cost (its downtime does not grow with the state) where lazy
/// pages work; a tie goes to cold (no remote faults, nothing left on the source after the
/// commit). Where post-copy wins and the kernel has dirty tracking: pre-copy when the dirty
/// rate is known and below [`PRE_COPY_MAX_DIRTY_SHARE`] of the link (rounds converge), else
/// hybrid (rounds move the cold pages, the hot rest is pulled after the restore). It never
/// picks a technique the kernel lacks; an explicit technique the kernel cannot do is
/// refused with the reason.
pub fn choose(
    requested: Technique,
    features: &Features,
    inputs: Inputs,
    costs: &FixedCosts,
    implemented: &[Technique],
) -> Result<(Technique, Option<String>), String> {
    let lazy_ok = features.lazy_pages && features.pipe_max_size_ok;
    let (picked, why) = match requested {
        Technique::Auto => {
            let (t, why) = auto(features, lazy_ok, inputs, costs, implemented);
            (t, Some(why))
        }
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
        t => (t, None),
    };
    if !implemented.contains(&picked) {
        return Err(format!(
            "technique {picked} is not available in this build of ferry yet"
        ));
    }
    Ok((picked, why))
}

fn auto(
    features: &Features,
    lazy_ok: bool,
    i: Inputs,
    costs: &FixedCosts,
    implemented: &[Technique],
) -> (Technique, String) {
    let link = i.link_bit_s.unwrap_or(DEFAULT_LINK_BIT_S);
    let link_bytes_s = (link / 8).max(1);
    let cold = costs.cold_ms + transfer_ms(i.state_bytes, link);
    let can = |t: Technique| implemented.contains(&t);
    let source = |from: usize| {
        if from == 0 {
            "default".to_string()
        } else {
            format!("learned from {from} migrations")
        }
    };
    let why = format!(
        "expected downtime: cold {cold} ms ({} ms fixed, {}; {} MiB at {} Mbit/s), post-copy {} ms ({})",
        costs.cold_ms,
        source(costs.cold_from),
        i.state_bytes >> 20,
        link / 1_000_000,
        costs.post_copy_ms,
        if lazy_ok { source(costs.post_copy_from) } else { "no lazy pages here".into() },
    );
    let lazy_wins = lazy_ok && costs.post_copy_ms < cold;
    if !lazy_wins {
        // Without lazy pages, pre-copy still bounds the downtime of a large state.
        if !lazy_ok
            && features.mem_dirty_track
            && can(Technique::PreCopy)
            && cold > costs.cold_ms * 2
        {
            return (
                Technique::PreCopy,
                format!("{why}; no lazy pages: pre-copy rounds"),
            );
        }
        return (Technique::Cold, format!("{why}: cold"));
    }
    if features.mem_dirty_track {
        let converges = i
            .dirty_bytes_s
            .is_some_and(|d| (d as f64) < PRE_COPY_MAX_DIRTY_SHARE * link_bytes_s as f64);
        if converges && can(Technique::PreCopy) {
            return (
                Technique::PreCopy,
                format!("{why}; the dirty rate lets pre-copy rounds converge: pre-copy"),
            );
        }
        if can(Technique::Hybrid) {
            return (Technique::Hybrid, format!("{why}; dirty tracking: hybrid"));
        }
    }
    if can(Technique::PostCopy) {
        return (Technique::PostCopy, format!("{why}: post-copy"));
    }
    (
        Technique::Cold,
        format!("{why}: cold (post-copy not built)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: FixedCosts = FixedCosts::DEFAULT;

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
        let err = choose(Technique::PreCopy, &here(), state(1 << 30), &D, ALL).unwrap_err();
        assert!(err.contains("soft-dirty"), "{err}");
        assert!(choose(Technique::Hybrid, &here(), state(1 << 30), &D, ALL).is_err());
    }

    /// Costs under which cold wins for a small state (a fast local dump).
    const COLD_CHEAP: FixedCosts = FixedCosts {
        cold_ms: 100,
        post_copy_ms: 400,
        cold_from: 5,
        post_copy_from: 5,
    };

    #[test]
    fn auto_never_picks_pre_copy_here_and_scales_with_state() {
        for size in [0u64, 1 << 20, 64 << 20, 1 << 30, 16 << 30] {
            for dirty in [None, Some(0), Some(8 << 20), Some(1 << 30)] {
                let i = Inputs {
                    dirty_bytes_s: dirty,
                    ..state(size)
                };
                let t = choose(Technique::Auto, &here(), i, &D, ALL).unwrap().0;
                assert!(matches!(t, Technique::Cold | Technique::PostCopy), "{t}");
            }
        }
        let pick =
            |bytes| choose(Technique::Auto, &here(), state(bytes), &COLD_CHEAP, ALL).unwrap();
        assert_eq!(pick(1 << 20).0, Technique::Cold);
        let (t, why) = pick(256 << 20);
        assert_eq!(t, Technique::PostCopy);
        let why = why.unwrap();
        assert!(
            why.contains("cold 2247 ms") && why.contains("post-copy 400 ms"),
            "{why}"
        );
        // The defaults: post-copy's fixed cost below cold's, so post-copy even for a small
        // state (what `make demo`'s 32 MiB relocations measured: about half the downtime).
        assert_eq!(
            choose(Technique::Auto, &here(), state(32 << 20), &D, ALL)
                .unwrap()
                .0,
            Technique::PostCopy
        );
    }

    #[test]
    fn auto_weighs_the_link_rate() {
        // 32 MiB: 100 + 268 ms at 1 Gbit/s (cold), 100 + 2684 ms at 100 Mbit/s (post-copy).
        let i = state(32 << 20);
        assert_eq!(
            choose(Technique::Auto, &here(), i, &COLD_CHEAP, ALL)
                .unwrap()
                .0,
            Technique::Cold
        );
        let slow = Inputs {
            link_bit_s: Some(100_000_000),
            ..i
        };
        assert_eq!(
            choose(Technique::Auto, &here(), slow, &COLD_CHEAP, ALL)
                .unwrap()
                .0,
            Technique::PostCopy
        );
    }

    #[test]
    fn fixed_costs_are_learned_from_the_hosts_own_migrations() {
        assert_eq!(FixedCosts::learn([]), FixedCosts::DEFAULT);
        // Two are not enough to trust.
        let two = [(Technique::PostCopy, 300, 0, DEFAULT_LINK_BIT_S); 2];
        assert_eq!(FixedCosts::learn(two), FixedCosts::DEFAULT);
        // Cold: frozen time less the pages at the link rate (64 MiB at 1 Gbit/s: 536 ms).
        let done = [
            (Technique::Cold, 700, 64 << 20, DEFAULT_LINK_BIT_S),
            (Technique::PostCopy, 350, 64 << 20, DEFAULT_LINK_BIT_S),
            (Technique::Cold, 736, 64 << 20, DEFAULT_LINK_BIT_S),
            (Technique::PostCopy, 300, 64 << 20, DEFAULT_LINK_BIT_S),
            (Technique::Cold, 2000, 64 << 20, 100_000_000),
            (Technique::PostCopy, 310, 64 << 20, DEFAULT_LINK_BIT_S),
            (Technique::Hybrid, 90, 0, DEFAULT_LINK_BIT_S),
        ];
        let c = FixedCosts::learn(done);
        assert_eq!((c.cold_from, c.post_copy_from), (3, 3));
        assert_eq!(c.post_copy_ms, 310);
        // 700 - 536, 736 - 536, 2000 - 5368 (floored at 0): the median is 164.
        assert_eq!(c.cold_ms, 164);
    }

    #[test]
    fn auto_with_dirty_tracking_weighs_the_dirty_rate() {
        let calm = Inputs {
            dirty_bytes_s: Some(8 << 20),
            ..state(256 << 20)
        };
        assert_eq!(
            choose(Technique::Auto, &soft_dirty(), calm, &D, ALL)
                .unwrap()
                .0,
            Technique::PreCopy
        );
        // 100 MiB/s on a 1 Gbit/s link (119 MiB/s): rounds would not shrink.
        let busy = Inputs {
            dirty_bytes_s: Some(100 << 20),
            ..calm
        };
        assert_eq!(
            choose(Technique::Auto, &soft_dirty(), busy, &D, ALL)
                .unwrap()
                .0,
            Technique::Hybrid
        );
        // Unknown rate: hybrid bounds the downtime whatever the app does.
        assert_eq!(
            choose(Technique::Auto, &soft_dirty(), state(256 << 20), &D, ALL)
                .unwrap()
                .0,
            Technique::Hybrid
        );
        // Small state where cold is cheap: cold, even with dirty tracking.
        assert_eq!(
            choose(
                Technique::Auto,
                &soft_dirty(),
                state(1 << 20),
                &COLD_CHEAP,
                ALL
            )
            .unwrap()
            .0,
            Technique::Cold
        );
    }

    #[test]
    fn post_copy_needs_lazy_pages() {
        let no_uffd = Features {
            lazy_pages: false,
            ..here()
        };
        assert!(choose(Technique::PostCopy, &no_uffd, state(0), &D, ALL).is_err());
        assert_eq!(
            choose(Technique::Auto, &no_uffd, state(1 << 30), &D, ALL)
                .unwrap()
                .0,
            Technique::Cold
        );
        let small_pipes = Features {
            pipe_max_size_ok: false,
            ..here()
        };
        assert!(choose(Technique::PostCopy, &small_pipes, state(0), &D, ALL).is_err());
        let no_uffd_soft_dirty = Features {
            mem_dirty_track: true,
            ..no_uffd
        };
        assert!(choose(Technique::Hybrid, &no_uffd_soft_dirty, state(0), &D, ALL).is_err());
        assert_eq!(
            choose(
                Technique::Auto,
                &no_uffd_soft_dirty,
                state(1 << 30),
                &D,
                ALL
            )
            .unwrap()
            .0,
            Technique::PreCopy
        );
    }

    #[test]
    fn unimplemented_technique_is_refused_not_faked() {
        let only_cold = &[Technique::Cold];
        assert!(choose(Technique::PostCopy, &here(), state(0), &D, only_cold).is_err());
        assert_eq!(
            choose(Technique::Auto, &here(), state(1 << 30), &D, only_cold)
                .unwrap()
                .0,
            Technique::Cold
        );
    }
}
