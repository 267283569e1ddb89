//! The per-tenant failure cap: which tenants' failures the window holds, and where.
//!
//! Each tracked tenant keeps the *positions* of its counted failures, oldest first: the
//! window's write sequence number in a count-based window, the second in a time-based one. A
//! failure at position `p` is still in a window of length `n` at position `now` when
//! `p + n > now`, so nothing has to be told when the window slides: expired positions are
//! dropped the next time the tenant is looked at. A tenant never holds more than `cap`
//! positions, and the table tracks at most [`TRACKED_TENANTS`] tenants, so memory is bounded
//! by `TRACKED_TENANTS × cap` positions whatever the traffic.
//!
//! The one approximation: when more than [`TRACKED_TENANTS`] tenants have failures in the
//! window at once, a new one replaces the tracked tenant with the fewest, whose earlier
//! failures stay counted in the window but are forgotten by the cap (so that tenant could
//! contribute up to `cap` more). With that many tenants failing at once the failures are not
//! one tenant's doing anyway. Not thread-safe on its own: kept under the breaker's lock.

use std::collections::VecDeque;

/// How many tenants the cap tracks at once.
pub(crate) const TRACKED_TENANTS: usize = 64;

/// The tenant of `try_acquire()`: never capped.
pub(crate) const ANONYMOUS: u64 = 0;

/// A tenant's key in permit tokens: a 64-bit FNV-1a hash, never [`ANONYMOUS`] (the empty
/// tenant is anonymous).
pub(crate) fn tenant_key(tenant: &str) -> u64 {
    if tenant.is_empty() {
        return ANONYMOUS;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tenant.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash.max(1)
}

struct Tracked {
    tenant: u64,
    positions: VecDeque<u64>,
}

pub(crate) struct TenantCap {
    cap: usize,
    tracked: Vec<Tracked>,
}

impl TenantCap {
    pub(crate) fn new(cap: u32) -> Self {
        Self {
            cap: cap as usize,
            tracked: Vec::new(),
        }
    }

    /// Whether a failure of `tenant` at position `now` counts, in a window of length `len`;
    /// if it does, it is remembered at `now`.
    pub(crate) fn admit(&mut self, tenant: u64, now: u64, len: u64) -> bool {
        if self.cap == 0 || tenant == ANONYMOUS {
            return true;
        }
        let in_window = |p: u64| p.saturating_add(len) > now;
        let prune = |t: &mut Tracked| {
            while t.positions.front().is_some_and(|&p| !in_window(p)) {
                t.positions.pop_front();
            }
        };
        if let Some(t) = self.tracked.iter_mut().find(|t| t.tenant == tenant) {
            prune(t);
            if t.positions.len() >= self.cap {
                return false;
            }
            t.positions.push_back(now);
            return true;
        }
        let entry = Tracked {
            tenant,
            positions: VecDeque::from([now]),
        };
        if self.tracked.len() < TRACKED_TENANTS {
            self.tracked.push(entry);
            return true;
        }
        // Full: reuse the entry with the fewest failures still in the window (ideally none).
        self.tracked.iter_mut().for_each(prune);
        if let Some(slot) = self.tracked.iter_mut().min_by_key(|t| t.positions.len()) {
            *slot = entry;
        }
        true
    }

    /// Forgets every tenant (the window was cleared).
    pub(crate) fn clear(&mut self) {
        self.tracked.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_tenant_within_the_window() {
        let mut cap = TenantCap::new(2);
        let (a, b) = (tenant_key("a"), tenant_key("b"));
        assert!(cap.admit(a, 0, 10));
        assert!(cap.admit(a, 1, 10));
        assert!(!cap.admit(a, 2, 10));
        assert!(cap.admit(b, 3, 10));
        assert!(cap.admit(ANONYMOUS, 4, 10));
        assert!(cap.admit(ANONYMOUS, 5, 10));
        assert!(cap.admit(ANONYMOUS, 6, 10));
        // Position 0 leaves a window of 10 at position 10.
        assert!(!cap.admit(a, 9, 10));
        assert!(cap.admit(a, 10, 10));
        assert!(!cap.admit(a, 10, 10));
        // Position 1 leaves at 11.
        assert!(cap.admit(a, 11, 10));
        assert!(!cap.admit(a, 12, 10));
    }

    #[test]
    fn memory_is_bounded_and_a_full_table_reuses_the_emptiest_entry() {
        let mut cap = TenantCap::new(1);
        for tenant in 1..=(TRACKED_TENANTS as u64 * 4) {
            assert!(cap.admit(tenant, tenant, 1_000_000));
        }
        assert_eq!(cap.tracked.len(), TRACKED_TENANTS);
        // A tracked tenant is still capped.
        let last = TRACKED_TENANTS as u64 * 4;
        assert!(!cap.admit(last, last + 1, 1_000_000));
    }

    #[test]
    fn keys_are_never_anonymous_except_for_the_empty_tenant() {
        assert_eq!(tenant_key(""), ANONYMOUS);
        assert_ne!(tenant_key("acme"), ANONYMOUS);
        assert_ne!(tenant_key("acme"), tenant_key("globex"));
    }
}
