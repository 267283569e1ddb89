//! The stored value: a version byte, the sealing key's id, a random nonce, and the
//! completion sealed with XChaCha20-Poly1305, bound to the tenant and the full Redis key.
//!
//! ```text
//! byte 0        format version (VALUE_FORMAT_V2 = 2)
//! bytes 1..9    key id: the first 8 bytes of BLAKE3 derive_key(KEY_ID_CONTEXT, key)
//! bytes 9..33   XChaCha20 nonce (24 random bytes: random nonces are safe at this size)
//! bytes 33..    ciphertext of the completion, then the 16-byte Poly1305 tag
//! ```
//!
//! Associated data (authenticated, not stored): a domain string, the version byte, the
//! key id (V2), the 16-byte tenant tag and the full Redis key. A value copied under
//! another key — another tenant's, or another request's of the same tenant — fails to
//! open.
//!
//! **Key ring.** The codec holds one or more keys: the first seals, any opens. A V2 value
//! names its key, so opening picks it without trying the others; a value whose key id no
//! configured key has (sealed by a replica already on a newer key) is reported as such and
//! left alone. A V1 value (no key id: written before key rings) is tried with every key.
//! The id is a keyed hash of the key: it identifies a key without revealing it.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use failover_cache::{CacheError, CacheErrorKind, CacheKey, CachedCompletion};
use failover_provider::{FinishReason, TokenUsage, ToolCall, Usd};
use serde::{Deserialize, Serialize};

use crate::config::EncryptionKey;

/// The value format of builds before key rings: no key id. Still read.
pub const VALUE_FORMAT_V1: u8 = 1;
/// The value format this build writes: with the sealing key's id.
pub const VALUE_FORMAT_V2: u8 = 2;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_ID_LEN: usize = 8;
const V1_HEADER_LEN: usize = 1 + NONCE_LEN;
const V2_HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Domain separation of the associated data.
const AAD_DOMAIN: &[u8] = b"llm-failover elasticache value";
/// BLAKE3 `derive_key` context: the AEAD key is derived from the configured key, so the
/// configured key is never used directly by two algorithms.
const KEY_CONTEXT: &str = "llm-failover 2026-11 elasticache value encryption v1";
/// BLAKE3 `derive_key` context of the key id.
const KEY_ID_CONTEXT: &str = "llm-failover 2026-12 elasticache value key id v1";

/// What reading a stored value gave.
#[derive(Debug)]
pub(crate) enum Opened {
    /// The value, authenticated.
    Value(CachedCompletion),
    /// A format this build does not know (written by a newer build): a miss, left alone.
    UnknownVersion(u8),
    /// Sealed with a key this codec does not hold (a replica already rotated to a newer
    /// key): a miss, left alone.
    UnknownKey,
    /// Not a value this key may hold: wrong key, wrong tenant, tampered or truncated.
    Rejected(&'static str),
}

struct RingKey {
    id: [u8; KEY_ID_LEN],
    aead: XChaCha20Poly1305,
}

/// Seals and opens values.
#[derive(Clone)]
pub(crate) struct ValueCodec {
    /// The ring: `keys[0]` seals; every key opens.
    keys: std::sync::Arc<[RingKey]>,
}

impl std::fmt::Debug for ValueCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ValueCodec {{ keys: {} <redacted> }}", self.keys.len())
    }
}

fn key_id(key: &EncryptionKey) -> [u8; KEY_ID_LEN] {
    let hash = blake3::derive_key(KEY_ID_CONTEXT, key.expose());
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&hash[..KEY_ID_LEN]);
    id
}

impl ValueCodec {
    /// A codec with one key.
    #[cfg(test)]
    pub(crate) fn new(key: &EncryptionKey) -> Self {
        Self::with_ring(std::slice::from_ref(key))
    }

    /// A codec over a key ring: `ring[0]` seals, every key opens. `ring` must not be
    /// empty (the configuration guarantees it); duplicates are dropped.
    pub(crate) fn with_ring(ring: &[EncryptionKey]) -> Self {
        let mut keys: Vec<RingKey> = Vec::with_capacity(ring.len());
        for key in ring {
            let id = key_id(key);
            if keys.iter().any(|k| k.id == id) {
                continue;
            }
            let derived = blake3::derive_key(KEY_CONTEXT, key.expose());
            keys.push(RingKey {
                id,
                aead: XChaCha20Poly1305::new(&derived.into()),
            });
        }
        assert!(!keys.is_empty(), "a key ring has at least one key");
        Self { keys: keys.into() }
    }

    /// Seals in the V1 format (no key id) with the first key: what builds before key rings
    /// wrote, for the tests of reading it.
    #[cfg(test)]
    pub(crate) fn seal_v1(
        &self,
        key: &CacheKey,
        redis_key: &[u8],
        value: &CachedCompletion,
    ) -> Vec<u8> {
        let mut out = vec![VALUE_FORMAT_V1];
        out.extend_from_slice(&[7u8; NONCE_LEN]);
        encode_payload(value, &mut out).unwrap();
        let aad = associated_data(VALUE_FORMAT_V1, None, key, redis_key);
        let tag = self.keys[0]
            .aead
            .encrypt_in_place_detached(
                XNonce::from_slice(&[7u8; NONCE_LEN]),
                &aad,
                &mut out[V1_HEADER_LEN..],
            )
            .unwrap();
        out.extend_from_slice(&tag);
        out
    }

    /// How many distinct keys open values.
    pub(crate) fn ring_len(&self) -> usize {
        self.keys.len()
    }

    /// Serialises and seals `value` for `key` stored at `redis_key`, with the first key.
    pub(crate) fn seal(
        &self,
        key: &CacheKey,
        redis_key: &[u8],
        value: &CachedCompletion,
    ) -> Result<Vec<u8>, CacheError> {
        let sealing = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|error| {
            CacheError::new(
                CacheErrorKind::Unavailable,
                format!("no randomness for a nonce: {error}"),
            )
        })?;
        let mut out = Vec::with_capacity(V2_HEADER_LEN + 256 + value.content.len() + TAG_LEN);
        out.push(VALUE_FORMAT_V2);
        out.extend_from_slice(&sealing.id);
        out.extend_from_slice(&nonce);
        encode_payload(value, &mut out)?;
        let aad = associated_data(VALUE_FORMAT_V2, Some(&sealing.id), key, redis_key);
        let tag = sealing
            .aead
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut out[V2_HEADER_LEN..])
            .map_err(|_| CacheError::new(CacheErrorKind::Corrupt, "encryption failed"))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a stored value read from `redis_key` for `key`.
    pub(crate) fn open(&self, key: &CacheKey, redis_key: &[u8], stored: Vec<u8>) -> Opened {
        let Some(&version) = stored.first() else {
            return Opened::Rejected("empty value");
        };
        match version {
            VALUE_FORMAT_V2 => {
                if stored.len() < V2_HEADER_LEN + TAG_LEN {
                    return Opened::Rejected("truncated value");
                }
                let id: [u8; KEY_ID_LEN] = stored[1..1 + KEY_ID_LEN]
                    .try_into()
                    .expect("length checked above");
                let Some(ring_key) = self.keys.iter().find(|k| k.id == id) else {
                    return Opened::UnknownKey;
                };
                let aad = associated_data(version, Some(&id), key, redis_key);
                open_with(&ring_key.aead, &aad, stored, 1 + KEY_ID_LEN)
            }
            VALUE_FORMAT_V1 => {
                if stored.len() < V1_HEADER_LEN + TAG_LEN {
                    return Opened::Rejected("truncated value");
                }
                let aad = associated_data(version, None, key, redis_key);
                // No key id: try each key (in ring order, the newest first).
                let mut stored = stored;
                let last = self.keys.len() - 1;
                for (i, ring_key) in self.keys.iter().enumerate() {
                    // Decryption works in place: every key but the last gets a copy.
                    let attempt = if i == last {
                        std::mem::take(&mut stored)
                    } else {
                        stored.clone()
                    };
                    match open_with(&ring_key.aead, &aad, attempt, 1) {
                        Opened::Rejected("authentication failed") if i < last => continue,
                        other => return other,
                    }
                }
                Opened::Rejected("authentication failed")
            }
            other => Opened::UnknownVersion(other),
        }
    }
}

/// Decrypts `stored` whose nonce starts at `nonce_at` (the ciphertext follows it).
fn open_with(aead: &XChaCha20Poly1305, aad: &[u8], mut stored: Vec<u8>, nonce_at: usize) -> Opened {
    let header = nonce_at + NONCE_LEN;
    let tag_at = stored.len() - TAG_LEN;
    let (head, rest) = stored.split_at_mut(header);
    let (body, tag) = rest.split_at_mut(tag_at - header);
    if aead
        .decrypt_in_place_detached(
            XNonce::from_slice(&head[nonce_at..]),
            aad,
            body,
            Tag::from_slice(tag),
        )
        .is_err()
    {
        return Opened::Rejected("authentication failed");
    }
    match decode_payload(body) {
        Some(value) => Opened::Value(value),
        None => Opened::Rejected("authenticated but undecodable value"),
    }
}

/// Everything but the content, as JSON (small, and serde keeps the exact decimal cost);
/// tool calls are here too, since their arguments are JSON already.
#[derive(Serialize)]
struct MetaRef<'a> {
    provider: &'a str,
    model: &'a str,
    finish_reason: &'a FinishReason,
    #[serde(skip_serializing_if = "<[ToolCall]>::is_empty")]
    tool_calls: &'a [ToolCall],
    usage: &'a TokenUsage,
    estimated_cost: &'a Usd,
    stored_at_unix_ms: u64,
}

#[derive(Deserialize)]
struct Meta {
    provider: String,
    model: String,
    finish_reason: FinishReason,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
    usage: TokenUsage,
    estimated_cost: Usd,
    stored_at_unix_ms: u64,
}

/// Plaintext: `u32 LE length of the meta JSON`, the meta JSON, then the content's UTF-8
/// bytes as they are. The content (the bulk of a value) is neither escaped nor parsed:
/// reading it back is one UTF-8 validation.
fn encode_payload(value: &CachedCompletion, out: &mut Vec<u8>) -> Result<(), CacheError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let meta = MetaRef {
        provider: &value.provider,
        model: &value.model,
        finish_reason: &value.finish_reason,
        tool_calls: &value.tool_calls,
        usage: &value.usage,
        estimated_cost: &value.estimated_cost,
        stored_at_unix_ms: value.stored_at_unix_ms,
    };
    serde_json::to_writer(&mut *out, &meta).map_err(|error| {
        CacheError::new(
            CacheErrorKind::Corrupt,
            format!("cannot encode the value: {error}"),
        )
    })?;
    let meta_len = u32::try_from(out.len() - at - 4)
        .map_err(|_| CacheError::new(CacheErrorKind::Corrupt, "value metadata too large"))?;
    out[at..at + 4].copy_from_slice(&meta_len.to_le_bytes());
    out.extend_from_slice(value.content.as_bytes());
    Ok(())
}

fn decode_payload(body: &[u8]) -> Option<CachedCompletion> {
    let (len, rest) = body.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    if rest.len() < len {
        return None;
    }
    let (meta, content) = rest.split_at(len);
    let meta: Meta = serde_json::from_slice(meta).ok()?;
    let content = std::str::from_utf8(content).ok()?.to_owned();
    Some(CachedCompletion {
        provider: meta.provider,
        model: meta.model,
        content,
        tool_calls: meta.tool_calls,
        finish_reason: meta.finish_reason,
        usage: meta.usage,
        estimated_cost: meta.estimated_cost,
        stored_at_unix_ms: meta.stored_at_unix_ms,
    })
}

fn associated_data(
    version: u8,
    key_id: Option<&[u8; KEY_ID_LEN]>,
    key: &CacheKey,
    redis_key: &[u8],
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 1 + KEY_ID_LEN + 16 + 8 + redis_key.len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.push(version);
    if let Some(id) = key_id {
        aad.extend_from_slice(id);
    }
    aad.extend_from_slice(key.tenant().as_bytes());
    aad.extend_from_slice(&(redis_key.len() as u64).to_le_bytes());
    aad.extend_from_slice(redis_key);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_cache::TenantTag;
    use failover_provider_types::sample;

    /// A completion for the codec tests (the testkit's sample needs an async runtime-free
    /// copy; this one is built from the public fields).
    mod failover_provider_types {
        use failover_cache::CachedCompletion;

        pub(super) fn sample(content: &str) -> CachedCompletion {
            serde_json::from_value(serde_json::json!({
                "provider": "bedrock",
                "model": "m",
                "content": content,
                "finish_reason": "stop",
                "usage": {"input_tokens": 1, "output_tokens": 2, "cache_read_tokens": 0, "cache_write_tokens": 0},
                "estimated_cost": "0.000123",
                "stored_at_unix_ms": 5
            }))
            .expect("sample completion")
        }
    }

    fn key(tenant: u8, digest: u8) -> CacheKey {
        CacheKey::from_parts(TenantTag::from_bytes([tenant; 16]), [digest; 32])
    }

    fn codec() -> ValueCodec {
        ValueCodec::new(&EncryptionKey::from_bytes([42; 32]))
    }

    #[test]
    fn seal_then_open_roundtrips() {
        let codec = codec();
        let k = key(1, 2);
        let sealed = codec.seal(&k, b"p:k1", &sample("hello")).unwrap();
        assert_eq!(sealed[0], VALUE_FORMAT_V2);
        match codec.open(&k, b"p:k1", sealed) {
            Opened::Value(v) => assert_eq!(v, sample("hello")),
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[test]
    fn no_plaintext_in_the_stored_bytes_and_fresh_nonces() {
        let codec = codec();
        let k = key(1, 2);
        let a = codec
            .seal(&k, b"p:k", &sample("secret answer text"))
            .unwrap();
        let b = codec
            .seal(&k, b"p:k", &sample("secret answer text"))
            .unwrap();
        assert_ne!(a, b, "a fresh nonce per write");
        let needle = b"secret answer";
        assert!(!a.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn another_tenant_or_another_key_cannot_open_it() {
        let codec = codec();
        let sealed = codec.seal(&key(1, 2), b"p:k1", &sample("x")).unwrap();
        assert!(matches!(
            codec.open(&key(9, 2), b"p:k1", sealed.clone()),
            Opened::Rejected(_)
        ));
        assert!(matches!(
            codec.open(&key(1, 2), b"p:k2", sealed.clone()),
            Opened::Rejected(_)
        ));
        // Another key: its id says so, and the value is not this cache's to judge.
        let other_key = ValueCodec::new(&EncryptionKey::from_bytes([7; 32]));
        assert!(matches!(
            other_key.open(&key(1, 2), b"p:k1", sealed),
            Opened::UnknownKey
        ));
    }

    #[test]
    fn tampering_truncation_and_unknown_versions_are_not_values() {
        let codec = codec();
        let k = key(1, 2);
        let sealed = codec.seal(&k, b"p:k", &sample("x")).unwrap();
        // A flipped key id names a key this codec does not hold.
        let mut bad = sealed.clone();
        bad[1] ^= 1;
        assert!(matches!(codec.open(&k, b"p:k", bad), Opened::UnknownKey));
        for i in [V2_HEADER_LEN - 1, V2_HEADER_LEN, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                matches!(codec.open(&k, b"p:k", bad), Opened::Rejected(_)),
                "flip at {i}"
            );
        }
        assert!(matches!(
            codec.open(&k, b"p:k", sealed[..V2_HEADER_LEN + 3].to_vec()),
            Opened::Rejected(_)
        ));
        assert!(matches!(
            codec.open(&k, b"p:k", Vec::new()),
            Opened::Rejected(_)
        ));
        let mut future = sealed;
        future[0] = 3;
        assert!(matches!(
            codec.open(&k, b"p:k", future),
            Opened::UnknownVersion(3)
        ));
        assert!(matches!(
            codec.open(&k, b"p:k", b"plain text".to_vec()),
            Opened::UnknownVersion(b'p')
        ));
    }

    #[test]
    fn payload_decoding_refuses_bad_lengths_and_bad_utf8() {
        let mut payload = Vec::new();
        encode_payload(&sample("héllo"), &mut payload).unwrap();
        assert_eq!(decode_payload(&payload), Some(sample("héllo")));
        assert_eq!(decode_payload(&payload[..3]), None, "no length");
        let mut too_long = payload.clone();
        too_long[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_payload(&too_long), None, "length past the end");
        let mut bad_utf8 = payload.clone();
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        assert_eq!(decode_payload(&bad_utf8), None, "content must be UTF-8");
        let mut empty_content = Vec::new();
        encode_payload(&sample(""), &mut empty_content).unwrap();
        assert_eq!(decode_payload(&empty_content), Some(sample("")));
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(
            format!("{:?}", codec()),
            "ValueCodec { keys: 1 <redacted> }"
        );
    }

    #[test]
    fn a_rotation_opens_old_values_and_leaves_newer_ones_alone() {
        let old = EncryptionKey::from_bytes([1; 32]);
        let new = EncryptionKey::from_bytes([2; 32]);
        let before = ValueCodec::new(&old);
        let during = ValueCodec::with_ring(&[new.clone(), old.clone()]);
        let after = ValueCodec::new(&new);
        let k = key(1, 2);
        // Sealed with the old key: opened by the ring (picked by its id).
        let by_old = before.seal(&k, b"p:k", &sample("old")).unwrap();
        assert!(
            matches!(during.open(&k, b"p:k", by_old.clone()), Opened::Value(v) if v == sample("old"))
        );
        assert!(matches!(after.open(&k, b"p:k", by_old), Opened::UnknownKey));
        // Sealed by the ring: with the new key, which the old codec does not hold.
        let by_ring = during.seal(&k, b"p:k", &sample("new")).unwrap();
        assert_eq!(&by_ring[1..9], &key_id(&new));
        assert!(
            matches!(after.open(&k, b"p:k", by_ring.clone()), Opened::Value(v) if v == sample("new"))
        );
        assert!(matches!(
            before.open(&k, b"p:k", by_ring),
            Opened::UnknownKey
        ));
        // V1 values (no key id) are tried with every key of the ring.
        let v1 = before.seal_v1(&k, b"p:k", &sample("legacy"));
        assert!(
            matches!(before.open(&k, b"p:k", v1.clone()), Opened::Value(v) if v == sample("legacy"))
        );
        assert!(
            matches!(during.open(&k, b"p:k", v1.clone()), Opened::Value(v) if v == sample("legacy"))
        );
        assert!(matches!(after.open(&k, b"p:k", v1), Opened::Rejected(_)));
        // The key id is authenticated: swapping it for another key's id does not open.
        let mut forged = during.seal(&k, b"p:k", &sample("x")).unwrap();
        forged[1..9].copy_from_slice(&key_id(&old));
        assert!(matches!(
            during.open(&k, b"p:k", forged),
            Opened::Rejected(_)
        ));
        // A duplicate key in the ring is one key.
        assert_eq!(ValueCodec::with_ring(&[old.clone(), old]).ring_len(), 1);
    }
}
