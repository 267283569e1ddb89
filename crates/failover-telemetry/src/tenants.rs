//! The tenant label and the bound on how many tenants get one.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use metrics::SharedString;

/// The `failover.tenant` value of every tenant past the bound.
pub const OTHER_TENANTS: &str = "_other";

/// Which tenants get their own `failover.tenant` label value.
///
/// Off (`limit` 0, the default) means no tenant label at all. Otherwise the first `limit`
/// distinct tenants seen keep their own value for the life of the process and every later
/// one is [`OTHER_TENANTS`]: the number of series a tenant label adds is bounded whatever
/// callers send, so a flood of tenant ids cannot take the metrics backend down. The
/// tenants that matter most are usually the first ones seen; operators who need exact
/// per-tenant figures read the usage ledger, which has them all.
#[derive(Debug, Default)]
pub struct TenantLabels {
    limit: usize,
    seen: RwLock<HashSet<Arc<str>>>,
}

impl TenantLabels {
    /// Tenant labels for at most `limit` tenants; 0 turns the label off.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// Whether tenants are labelled at all.
    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The label value for `tenant`, or `None` when tenant labels are off.
    pub fn label(&self, tenant: &str) -> Option<SharedString> {
        if self.limit == 0 {
            return None;
        }
        // A poisoned set is still a valid set: nothing panics while holding it half-changed.
        if let Some(known) = self
            .seen
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(tenant)
        {
            return Some(SharedString::from(Arc::clone(known)));
        }
        let mut seen = self
            .seen
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(known) = seen.get(tenant) {
            return Some(SharedString::from(Arc::clone(known)));
        }
        if seen.len() >= self.limit {
            return Some(SharedString::const_str(OTHER_TENANTS));
        }
        let label: Arc<str> = Arc::from(tenant);
        seen.insert(Arc::clone(&label));
        Some(SharedString::from(label))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default() {
        assert_eq!(TenantLabels::default().label("acme"), None);
    }

    #[test]
    fn tenants_past_the_limit_share_one_value() {
        let labels = TenantLabels::new(2);
        assert_eq!(labels.label("a").as_deref(), Some("a"));
        assert_eq!(labels.label("b").as_deref(), Some("b"));
        assert_eq!(labels.label("c").as_deref(), Some(OTHER_TENANTS));
        // The first ones keep theirs.
        assert_eq!(labels.label("a").as_deref(), Some("a"));
    }
}
