//! The stored value: a version byte, a random nonce, and the completion sealed with
//! XChaCha20-Poly1305, bound to the tenant and the full Redis key.
//!
//! ```text
//! byte 0        format version (VALUE_FORMAT_V1 = 1)
//! bytes 1..25   XChaCha20 nonce (24 random bytes: random nonces are safe at this size)
//! bytes 25..    ciphertext of the completion as JSON, then the 16-byte Poly1305 tag
//! ```
//!
//! Associated data (authenticated, not stored): a domain string, the version byte, the
//! 16-byte tenant tag and the full Redis key. A value copied under another key — another
//! tenant's, or another request's of the same tenant — fails to open.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use failover_cache::{CacheError, CacheErrorKind, CacheKey, CachedCompletion};
use failover_provider::{FinishReason, TokenUsage, Usd};
use serde::{Deserialize, Serialize};

use crate::config::EncryptionKey;

/// The value format this build writes and reads.
pub const VALUE_FORMAT_V1: u8 = 1;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Domain separation of the associated data.
const AAD_DOMAIN: &[u8] = b"llm-failover elasticache value";
/// BLAKE3 `derive_key` context: the AEAD key is derived from the configured key, so the
/// configured key is never used directly by two algorithms.
const KEY_CONTEXT: &str = "llm-failover 2026-11 elasticache value encryption v1";

/// What reading a stored value gave.
#[derive(Debug)]
pub(crate) enum Opened {
    /// The value, authenticated.
    Value(CachedCompletion),
    /// A format this build does not know (written by a newer build): a miss, left alone.
    UnknownVersion(u8),
    /// Not a value this key may hold: wrong key, wrong tenant, tampered or truncated.
    Rejected(&'static str),
}

/// Seals and opens values.
#[derive(Clone)]
pub(crate) struct ValueCodec {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for ValueCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValueCodec { key: <redacted> }")
    }
}

impl ValueCodec {
    pub(crate) fn new(key: &EncryptionKey) -> Self {
        let derived = blake3::derive_key(KEY_CONTEXT, key.expose());
        Self {
            aead: XChaCha20Poly1305::new(&derived.into()),
        }
    }

    /// Serialises and seals `value` for `key` stored at `redis_key`.
    pub(crate) fn seal(
        &self,
        key: &CacheKey,
        redis_key: &[u8],
        value: &CachedCompletion,
    ) -> Result<Vec<u8>, CacheError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|error| {
            CacheError::new(
                CacheErrorKind::Unavailable,
                format!("no randomness for a nonce: {error}"),
            )
        })?;
        let mut out = Vec::with_capacity(HEADER_LEN + 256 + value.content.len() + TAG_LEN);
        out.push(VALUE_FORMAT_V1);
        out.extend_from_slice(&nonce);
        encode_payload(value, &mut out)?;
        let aad = associated_data(VALUE_FORMAT_V1, key, redis_key);
        let tag = self
            .aead
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut out[HEADER_LEN..])
            .map_err(|_| CacheError::new(CacheErrorKind::Corrupt, "encryption failed"))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a stored value read from `redis_key` for `key`.
    pub(crate) fn open(&self, key: &CacheKey, redis_key: &[u8], mut stored: Vec<u8>) -> Opened {
        let Some(&version) = stored.first() else {
            return Opened::Rejected("empty value");
        };
        if version != VALUE_FORMAT_V1 {
            return Opened::UnknownVersion(version);
        }
        if stored.len() < HEADER_LEN + TAG_LEN {
            return Opened::Rejected("truncated value");
        }
        let tag_at = stored.len() - TAG_LEN;
        let (head, rest) = stored.split_at_mut(HEADER_LEN);
        let (body, tag) = rest.split_at_mut(tag_at - HEADER_LEN);
        let aad = associated_data(version, key, redis_key);
        if self
            .aead
            .decrypt_in_place_detached(
                XNonce::from_slice(&head[1..]),
                &aad,
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
}

/// Everything but the content, as JSON (small, and serde keeps the exact decimal cost).
#[derive(Serialize)]
struct MetaRef<'a> {
    provider: &'a str,
    model: &'a str,
    finish_reason: &'a FinishReason,
    usage: &'a TokenUsage,
    estimated_cost: &'a Usd,
    stored_at_unix_ms: u64,
}

#[derive(Deserialize)]
struct Meta {
    provider: String,
    model: String,
    finish_reason: FinishReason,
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
        finish_reason: meta.finish_reason,
        usage: meta.usage,
        estimated_cost: meta.estimated_cost,
        stored_at_unix_ms: meta.stored_at_unix_ms,
    })
}

fn associated_data(version: u8, key: &CacheKey, redis_key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 1 + 16 + 8 + redis_key.len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.push(version);
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
        assert_eq!(sealed[0], VALUE_FORMAT_V1);
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
        let other_key = ValueCodec::new(&EncryptionKey::from_bytes([7; 32]));
        assert!(matches!(
            other_key.open(&key(1, 2), b"p:k1", sealed),
            Opened::Rejected(_)
        ));
    }

    #[test]
    fn tampering_truncation_and_unknown_versions_are_not_values() {
        let codec = codec();
        let k = key(1, 2);
        let sealed = codec.seal(&k, b"p:k", &sample("x")).unwrap();
        for i in [1, HEADER_LEN, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                matches!(codec.open(&k, b"p:k", bad), Opened::Rejected(_)),
                "flip at {i}"
            );
        }
        assert!(matches!(
            codec.open(&k, b"p:k", sealed[..HEADER_LEN + 3].to_vec()),
            Opened::Rejected(_)
        ));
        assert!(matches!(
            codec.open(&k, b"p:k", Vec::new()),
            Opened::Rejected(_)
        ));
        let mut future = sealed;
        future[0] = 2;
        assert!(matches!(
            codec.open(&k, b"p:k", future),
            Opened::UnknownVersion(2)
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
        assert_eq!(format!("{:?}", codec()), "ValueCodec { key: <redacted> }");
    }
}
