//! Redis key layout: `{prefix}:{<tenant_hex>}:<digest_hex>`.
//!
//! The braces are a Redis Cluster *hash tag*: only the text between the first `{` and the
//! next `}` is hashed to pick the slot, so every entry of one tenant lives in one slot, on
//! one primary. That makes a tenant purge a single-node `SCAN` + `UNLINK` (multi-key
//! `UNLINK` needs its keys in one slot) and keeps a tenant's keys together across
//! resharding. Keys carry only hex of keyed hashes: no tenant id and no prompt text.

use failover_cache::{CacheKey, TENANT_TAG_LEN, TenantTag};

/// The longest key prefix accepted.
pub const MAX_PREFIX_LEN: usize = 64;

/// Builds the Redis keys of one cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyLayout {
    prefix: String,
}

/// Why a key prefix is refused.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("the key prefix must not be empty".to_owned());
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(format!(
            "the key prefix is longer than {MAX_PREFIX_LEN} bytes"
        ));
    }
    // No glob metacharacters (the purge pattern would need escaping) and no braces (a brace
    // in the prefix would move the Redis Cluster hash tag away from the tenant part).
    if let Some(bad) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/')))
    {
        return Err(format!(
            "the key prefix may hold only ASCII letters, digits and - _ . : / (found {bad:?})"
        ));
    }
    Ok(())
}

impl KeyLayout {
    /// A layout with a prefix already checked by [`check_prefix`].
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:{<tenant_hex>}:<digest_hex>` as bytes.
    pub(crate) fn entry_key(&self, key: &CacheKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + 4 + TENANT_TAG_LEN * 2 + 1 + 64);
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(b":{");
        push_hex(&mut out, key.tenant().as_bytes());
        out.extend_from_slice(b"}:");
        push_hex(&mut out, key.digest());
        out
    }

    /// `{prefix}:{<tenant_hex>}:*`: the `SCAN MATCH` pattern of one tenant's entries.
    pub(crate) fn tenant_pattern(&self, tenant: &TenantTag) -> Vec<u8> {
        let mut out = self.tenant_hash_tag_key(tenant);
        out.extend_from_slice(b":*");
        out
    }

    /// `{prefix}:{<tenant_hex>}`: hashes to the tenant's slot (used to route a purge).
    pub(crate) fn tenant_hash_tag_key(&self, tenant: &TenantTag) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + 4 + TENANT_TAG_LEN * 2 + 2);
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(b":{");
        push_hex(&mut out, tenant.as_bytes());
        out.push(b'}');
        out
    }
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: u8, digest: u8) -> CacheKey {
        CacheKey::from_parts(TenantTag::from_bytes([tenant; 16]), [digest; 32])
    }

    #[test]
    fn entry_key_layout_is_prefix_hash_tagged_tenant_and_digest() {
        let layout = KeyLayout::new("llmfo");
        let text = String::from_utf8(layout.entry_key(&key(0xab, 0x01))).unwrap();
        assert_eq!(
            text,
            format!("llmfo:{{{}}}:{}", "ab".repeat(16), "01".repeat(32))
        );
        assert_eq!(
            text.len(),
            "llmfo".len() + 2 + 32 + 2 + 64,
            "fixed-length hex parts"
        );
    }

    #[test]
    fn entry_key_is_the_cache_key_hex_with_a_hash_tag() {
        let layout = KeyLayout::new("p");
        let k = key(7, 9);
        let text = String::from_utf8(layout.entry_key(&k)).unwrap();
        let expected = k.to_hex().replacen(':', "}:", 1);
        assert_eq!(text, format!("p:{{{expected}"));
    }

    #[test]
    fn tenant_pattern_matches_only_that_tenants_keys() {
        let layout = KeyLayout::new("llmfo");
        let pattern =
            String::from_utf8(layout.tenant_pattern(&TenantTag::from_bytes([1; 16]))).unwrap();
        assert_eq!(pattern, format!("llmfo:{{{}}}:*", "01".repeat(16)));
        let own = String::from_utf8(layout.entry_key(&key(1, 5))).unwrap();
        let other = String::from_utf8(layout.entry_key(&key(2, 5))).unwrap();
        let stem = pattern.trim_end_matches('*');
        assert!(own.starts_with(stem));
        assert!(!other.starts_with(stem));
    }

    #[test]
    fn the_hash_tag_is_the_tenant_part_only() {
        let layout = KeyLayout::new("a:b");
        let text = String::from_utf8(layout.entry_key(&key(3, 4))).unwrap();
        let open = text.find('{').unwrap();
        let close = text[open..].find('}').unwrap() + open;
        assert_eq!(&text[open + 1..close], "03".repeat(16));
        // Two keys of one tenant hash to one slot; the tag key routes there too.
        let a = layout.entry_key(&key(3, 4));
        let b = layout.entry_key(&key(3, 200));
        let tag = layout.tenant_hash_tag_key(&TenantTag::from_bytes([3; 16]));
        let slot = redis::cluster_routing::Slot::for_key;
        assert_eq!(slot(&a), slot(&b));
        assert_eq!(slot(&a), slot(&tag));
    }

    #[test]
    fn prefixes_that_would_break_patterns_or_hash_tags_are_refused() {
        for bad in ["", "a*", "a?", "a[b]", "a{b}", "a b", "é", "a\\b"] {
            assert!(check_prefix(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(check_prefix(&"x".repeat(MAX_PREFIX_LEN + 1)).is_err());
        for good in ["llmfo", "prod:llm-failover", "a.b_c/d", "x"] {
            assert!(check_prefix(good).is_ok(), "{good:?} must be accepted");
        }
    }
}
