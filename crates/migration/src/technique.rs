//! Migration techniques and the rule `auto` follows. Kernel features are probed, never
//! assumed: pre-copy and hybrid need soft-dirty tracking (CRIU `mem_dirty_track`),
//! post-copy needs userfaultfd (CRIU lazy pages) and a large `fs.pipe-max-size`.

use serde::{Deserialize, Serialize};

use ferry_runtime::criu::Features;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Technique {
    /// Stop-and-copy: freeze, dump everything (pages straight to the target), restore.
    Cold,
    /// Lazy: dump without memory, restore at once, pages pulled on fault from the source.
    PostCopy,
    /// Iterative pre-dumps while running, then a final dump of the last dirty pages.
    PreCopy,
    /// Pre-copy rounds, then post-copy for the rest.
    Hybrid,
    /// Pick from state size and what the kernel supports (see [`choose`]).
    #[default]
    Auto,
}

impl std::fmt::Display for Technique {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Technique::Cold => "cold",
            Technique::PostCopy => "post-copy",
            Technique::PreCopy => "pre-copy",
            Technique::Hybrid => "hybrid",
            Technique::Auto => "auto",
        })
    }
}

/// State size below which `auto` takes cold: restoring eagerly costs less than a round of
/// remote page faults would.
pub const AUTO_POST_COPY_MIN_BYTES: u64 = 64 << 20;

/// Resolves `requested` against what this host can do.
///
/// `auto`: post-copy when lazy pages work and the state is at least
/// [`AUTO_POST_COPY_MIN_BYTES`] (downtime then no longer grows with the state), else cold.
/// It never picks pre-copy or hybrid where dirty tracking is missing.
/// An explicit technique the kernel cannot do is refused with the reason.
pub fn choose(
    requested: Technique,
    features: &Features,
    state_bytes: u64,
    implemented: &[Technique],
) -> Result<Technique, String> {
    let lazy_ok = features.lazy_pages && features.pipe_max_size_ok;
    let picked = match requested {
        Technique::Auto => {
            if lazy_ok
                && state_bytes >= AUTO_POST_COPY_MIN_BYTES
                && implemented.contains(&Technique::PostCopy)
            {
                Technique::PostCopy
            } else {
                Technique::Cold
            }
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
        t => t,
    };
    if !implemented.contains(&picked) {
        return Err(format!(
            "technique {picked} is not available in this build of ferry yet"
        ));
    }
    Ok(picked)
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

    #[test]
    fn pre_copy_refused_without_dirty_tracking() {
        let err = choose(Technique::PreCopy, &here(), 1 << 30, ALL).unwrap_err();
        assert!(err.contains("soft-dirty"), "{err}");
        assert!(choose(Technique::Hybrid, &here(), 1 << 30, ALL).is_err());
    }

    #[test]
    fn auto_never_picks_pre_copy_here_and_scales_with_state() {
        for size in [0u64, 1 << 20, 64 << 20, 1 << 30, 16 << 30] {
            let t = choose(Technique::Auto, &here(), size, ALL).unwrap();
            assert!(matches!(t, Technique::Cold | Technique::PostCopy), "{t}");
        }
        assert_eq!(
            choose(Technique::Auto, &here(), 1 << 20, ALL).unwrap(),
            Technique::Cold
        );
        assert_eq!(
            choose(Technique::Auto, &here(), 256 << 20, ALL).unwrap(),
            Technique::PostCopy
        );
    }

    #[test]
    fn post_copy_needs_lazy_pages() {
        let no_uffd = Features {
            lazy_pages: false,
            ..here()
        };
        assert!(choose(Technique::PostCopy, &no_uffd, 0, ALL).is_err());
        assert_eq!(
            choose(Technique::Auto, &no_uffd, 1 << 30, ALL).unwrap(),
            Technique::Cold
        );
        let small_pipes = Features {
            pipe_max_size_ok: false,
            ..here()
        };
        assert!(choose(Technique::PostCopy, &small_pipes, 0, ALL).is_err());
    }

    #[test]
    fn unimplemented_technique_is_refused_not_faked() {
        let only_cold = &[Technique::Cold];
        assert!(choose(Technique::PostCopy, &here(), 0, only_cold).is_err());
        assert_eq!(
            choose(Technique::Auto, &here(), 1 << 30, only_cold).unwrap(),
            Technique::Cold
        );
    }
}
