//! Settings of an [`ElastiCacheCache`](crate::ElastiCacheCache): endpoint, credentials,
//! timeouts, key prefix and the value encryption key.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use failover_provider::redact_url;

use crate::keys::check_prefix;

/// Env var: the endpoint URL (`redis://host:port`, `rediss://host:port` for TLS); a
/// comma-separated list of URLs means cluster mode. A bare `host:port` (as the AWS
/// console shows it) is read as `rediss://host:port`.
pub const ENV_ENDPOINT: &str = "ELASTICACHE_ENDPOINT";
/// Env var: `1`/`true` for cluster mode (Redis Cluster / ElastiCache cluster mode enabled).
pub const ENV_CLUSTER: &str = "ELASTICACHE_CLUSTER";
/// Env var: the AUTH / ACL user name.
pub const ENV_USERNAME: &str = "ELASTICACHE_USERNAME";
/// Env var: the AUTH password / ACL user password.
pub const ENV_PASSWORD: &str = "ELASTICACHE_PASSWORD";
/// Env var: the key prefix (default [`DEFAULT_PREFIX`]).
pub const ENV_KEY_PREFIX: &str = "ELASTICACHE_KEY_PREFIX";
/// Env var: path of a PEM file with the CA certificate(s) to trust for `rediss://` instead of
/// the platform's roots (a private CA; ElastiCache itself is signed by public roots).
pub const ENV_TLS_CA_FILE: &str = "ELASTICACHE_TLS_CA_FILE";
/// Env var: the 32-byte value encryption key, as 64 hex digits or base64 — or a key ring
/// during a rotation: comma-separated keys, the first sealing new values, every one opening
/// them.
pub const ENV_ENCRYPTION_KEY: &str = "FAILOVER_CACHE_ENCRYPTION_KEY";

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "llmfo";

/// A configuration the cache refuses to start with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("missing setting: {0}")]
    Missing(&'static str),
    /// A setting has a value the cache cannot use.
    #[error("invalid setting {setting}: {message}")]
    Invalid {
        /// Which setting.
        setting: &'static str,
        /// What is wrong (never the secret itself).
        message: String,
    },
}

/// The 32-byte key that encrypts and authenticates stored values.
///
/// Every replica sharing a cache needs the same key. The AEAD key is derived from it with
/// BLAKE3 `derive_key`, so this key can be random bytes from any secret store.
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey([u8; 32]);

impl EncryptionKey {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key (for a single process or a test: entries written with it can
    /// only be read by holders of the same key).
    pub fn generate() -> Result<Self, ConfigError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|error| ConfigError::Invalid {
            setting: "encryption key",
            message: format!("no randomness available: {error}"),
        })?;
        Ok(Self(bytes))
    }

    /// Parses 64 hex digits or standard/URL-safe base64 (padded or not) of 32 bytes.
    /// Surrounding whitespace is ignored. The error never contains the input.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        let invalid = |message: &str| ConfigError::Invalid {
            setting: ENV_ENCRYPTION_KEY,
            message: message.to_owned(),
        };
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut bytes = [0u8; 32];
            for (i, pair) in text.as_bytes().chunks(2).enumerate() {
                bytes[i] = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
            }
            return Ok(Self(bytes));
        }
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(decoded) = engine.decode(text) {
                return <[u8; 32]>::try_from(decoded.as_slice())
                    .map(Self)
                    .map_err(|_| invalid("base64 must decode to exactly 32 bytes"));
            }
        }
        Err(invalid(
            "expected 64 hex digits or base64 of 32 bytes (e.g. `openssl rand -hex 32`)",
        ))
    }

    /// Parses a key ring: comma-separated keys as [`EncryptionKey::parse`] reads them
    /// (the first seals). Empty items are refused; the error names the position, never
    /// the key.
    pub fn parse_ring(text: &str) -> Result<Vec<Self>, ConfigError> {
        text.split(',')
            .enumerate()
            .map(|(i, item)| {
                if item.trim().is_empty() {
                    return Err(ConfigError::Invalid {
                        setting: ENV_ENCRYPTION_KEY,
                        message: format!("key {} of the ring is empty", i + 1),
                    });
                }
                Self::parse(item).map_err(|error| match error {
                    ConfigError::Invalid { setting, message } => ConfigError::Invalid {
                        setting,
                        message: format!("key {} of the ring: {message}", i + 1),
                    },
                    other => other,
                })
            })
            .collect()
    }

    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

/// Where the server is.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// One node (or a primary endpoint of a replication group): `redis://` or `rediss://`.
    Single(String),
    /// Cluster mode: one or more seed node URLs; the rest of the topology is discovered.
    Cluster(Vec<String>),
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single(url) => f.debug_tuple("Single").field(&redact_url(url)).finish(),
            Self::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(&urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl Endpoint {
    pub(crate) fn urls(&self) -> &[String] {
        match self {
            Self::Single(url) => std::slice::from_ref(url),
            Self::Cluster(urls) => urls,
        }
    }

    pub(crate) fn uses_tls(&self) -> bool {
        self.urls().iter().any(|u| u.starts_with("rediss://"))
    }
}

/// Settings of an [`ElastiCacheCache`](crate::ElastiCacheCache). Build one with
/// [`ElastiCacheConfig::new`] or [`ElastiCacheConfig::from_env`], then adjust with the
/// `with_*` methods. `Debug` hides the password, any password in a URL, and the key.
#[derive(Clone)]
#[non_exhaustive]
pub struct ElastiCacheConfig {
    /// Where the server is.
    pub endpoint: Endpoint,
    /// AUTH / ACL user name (overrides one in the URL).
    pub username: Option<String>,
    /// AUTH password (overrides one in the URL).
    pub password: Option<String>,
    /// Prefix of every key; letters, digits and `- _ . : /` only.
    pub key_prefix: String,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// How long one cache operation (`get`, `put`) may take in total, reconnecting
    /// included. Past it the operation returns a [`Timeout`](failover_cache::CacheErrorKind::Timeout)
    /// error.
    pub operation_timeout: Duration,
    /// How long a whole `purge_tenant` may take (it scans).
    pub purge_timeout: Duration,
    /// The longest TTL granted; a `put` asking for more is clamped to it.
    pub max_ttl: Duration,
    /// Reconnection attempts inside one operation before it gives up (the next operation
    /// tries again).
    pub reconnect_retries: usize,
    /// PEM CA certificate(s) to trust for `rediss://` instead of the platform's roots.
    pub tls_root_cert_pem: Option<Vec<u8>>,
    /// The value encryption key: seals every value written, and opens.
    pub encryption_key: EncryptionKey,
    /// Older keys that still open values (a rotation in progress); they never seal. While
    /// there are any, a value that fails to open is kept (a miss, counted) rather than
    /// deleted: another replica may hold the key it was sealed with.
    pub decryption_keys: Vec<EncryptionKey>,
}

impl fmt::Debug for ElastiCacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElastiCacheConfig")
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("purge_timeout", &self.purge_timeout)
            .field("max_ttl", &self.max_ttl)
            .field("reconnect_retries", &self.reconnect_retries)
            .field(
                "tls_root_cert_pem",
                &self.tls_root_cert_pem.as_ref().map(|pem| pem.len()),
            )
            .field("encryption_key", &self.encryption_key)
            .field(
                "decryption_keys",
                &format_args!("{} <redacted>", self.decryption_keys.len()),
            )
            .finish()
    }
}

impl ElastiCacheConfig {
    /// Single-node settings for `url` with defaults: prefix [`DEFAULT_PREFIX`], connect
    /// timeout 250 ms, operation timeout 100 ms, purge timeout 30 s, max TTL 7 days, one
    /// reconnection retry.
    pub fn new(url: impl Into<String>, encryption_key: EncryptionKey) -> Self {
        Self {
            endpoint: Endpoint::Single(normalise_url(&url.into())),
            username: None,
            password: None,
            key_prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: Duration::from_millis(250),
            operation_timeout: Duration::from_millis(100),
            purge_timeout: Duration::from_secs(30),
            max_ttl: Duration::from_secs(7 * 24 * 60 * 60),
            reconnect_retries: 1,
            tls_root_cert_pem: None,
            encryption_key,
            decryption_keys: Vec::new(),
        }
    }

    /// Cluster-mode settings from seed node URLs (same defaults as [`ElastiCacheConfig::new`]).
    pub fn cluster<I, S>(urls: I, encryption_key: EncryptionKey) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut config = Self::new(String::new(), encryption_key);
        config.endpoint =
            Endpoint::Cluster(urls.into_iter().map(|u| normalise_url(&u.into())).collect());
        config
    }

    /// Settings from the environment: [`ENV_ENDPOINT`] and [`ENV_ENCRYPTION_KEY`] are
    /// required; [`ENV_CLUSTER`], [`ENV_USERNAME`], [`ENV_PASSWORD`] and
    /// [`ENV_KEY_PREFIX`] are optional.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`ElastiCacheConfig::from_env`], reading variables through `lookup` (tests use
    /// it: setting process env vars is `unsafe` in Rust 2024).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let endpoint = lookup(ENV_ENDPOINT)
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing(ENV_ENDPOINT))?;
        let keys = lookup(ENV_ENCRYPTION_KEY)
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing(ENV_ENCRYPTION_KEY))?;
        let mut ring = EncryptionKey::parse_ring(&keys)?.into_iter();
        let key = ring
            .next()
            .ok_or(ConfigError::Missing(ENV_ENCRYPTION_KEY))?;
        let previous: Vec<EncryptionKey> = ring.collect();
        let urls: Vec<String> = endpoint
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        let cluster_flag = lookup(ENV_CLUSTER)
            .map(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        let mut config = if cluster_flag || urls.len() > 1 {
            Self::cluster(urls, key)
        } else {
            Self::new(urls.into_iter().next().unwrap_or_default(), key)
        };
        config.decryption_keys = previous;
        config.username = lookup(ENV_USERNAME).filter(|v| !v.is_empty());
        config.password = lookup(ENV_PASSWORD).filter(|v| !v.is_empty());
        if let Some(prefix) = lookup(ENV_KEY_PREFIX).filter(|v| !v.is_empty()) {
            config.key_prefix = prefix;
        }
        if let Some(path) = lookup(ENV_TLS_CA_FILE).filter(|v| !v.is_empty()) {
            let pem = std::fs::read(&path).map_err(|error| ConfigError::Invalid {
                setting: ENV_TLS_CA_FILE,
                message: format!("cannot read {path}: {error}"),
            })?;
            config.tls_root_cert_pem = Some(pem);
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets the key that seals (and opens) values.
    pub fn with_encryption_key(mut self, key: EncryptionKey) -> Self {
        self.encryption_key = key;
        self
    }

    /// Keeps `keys` for opening values sealed before a rotation (they never seal). Start a
    /// rotation by making the new key the [`encryption_key`](Self::encryption_key) and the
    /// old one a decryption key on every replica; end it, once the old entries have
    /// expired (at most [`max_ttl`](Self::max_ttl)), by removing the old key.
    pub fn with_decryption_keys(mut self, keys: impl IntoIterator<Item = EncryptionKey>) -> Self {
        self.decryption_keys = keys.into_iter().collect();
        self
    }

    /// The key ring: the sealing key first, then the decryption keys.
    pub fn key_ring(&self) -> Vec<EncryptionKey> {
        std::iter::once(self.encryption_key.clone())
            .chain(self.decryption_keys.iter().cloned())
            .collect()
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the AUTH user name and password.
    pub fn with_credentials(mut self, username: Option<String>, password: Option<String>) -> Self {
        self.username = username;
        self.password = password;
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the per-operation timeout.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets the purge timeout.
    pub fn with_purge_timeout(mut self, timeout: Duration) -> Self {
        self.purge_timeout = timeout;
        self
    }

    /// Sets the longest TTL granted.
    pub fn with_max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    /// Trusts the CA certificate(s) in `pem` for `rediss://` instead of the platform's roots.
    pub fn with_tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert_pem = Some(pem.into());
        self
    }

    /// Sets the reconnection retries per operation.
    pub fn with_reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let urls = self.endpoint.urls();
        if urls.is_empty() || urls.iter().any(|u| u.is_empty()) {
            return Err(ConfigError::Missing("endpoint"));
        }
        for url in urls {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::Invalid {
                    setting: "endpoint",
                    message: format!("`{}` is not a redis:// or rediss:// URL", redact_url(url)),
                });
            }
        }
        check_prefix(&self.key_prefix).map_err(|message| ConfigError::Invalid {
            setting: "key prefix",
            message,
        })?;
        for (setting, value) in [
            ("connect timeout", self.connect_timeout),
            ("operation timeout", self.operation_timeout),
            ("purge timeout", self.purge_timeout),
            ("max TTL", self.max_ttl),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid {
                    setting,
                    message: "must be more than zero".to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// `host:port` → `rediss://host:port`; URLs with a scheme are kept.
fn normalise_url(url: &str) -> String {
    let url = url.trim();
    if url.is_empty() || url.contains("://") {
        url.to_owned()
    } else {
        format!("rediss://{url}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn bytes() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn encryption_key_parses_hex_and_base64_variants() {
        assert_eq!(EncryptionKey::parse(HEX).unwrap().0, bytes());
        assert_eq!(
            EncryptionKey::parse(&HEX.to_uppercase()).unwrap().0,
            bytes()
        );
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let text = engine.encode(bytes());
            assert_eq!(
                EncryptionKey::parse(&format!(" {text}\n")).unwrap().0,
                bytes()
            );
        }
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        let short = base64::engine::general_purpose::STANDARD.encode([9u8; 16]);
        for bad in [
            "",
            "abc",
            &HEX[..62],
            "zz-not-a-key-secretvalue",
            short.as_str(),
        ] {
            let error = EncryptionKey::parse(bad).unwrap_err().to_string();
            if !bad.is_empty() {
                assert!(!error.contains(bad), "{error}");
            }
        }
    }

    #[test]
    fn debug_hides_every_secret() {
        let config = ElastiCacheConfig::new(
            "redis://app:hunter2pass@127.0.0.1:7000/0",
            EncryptionKey::from_bytes([0xAB; 32]),
        )
        .with_credentials(Some("app".into()), Some("s3cr3t-password".into()));
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2pass"), "{text}");
        assert!(!text.contains("s3cr3t-password"), "{text}");
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(text.contains("app:***@127.0.0.1:7000"), "{text}");
        assert_eq!(
            format!("{:?}", EncryptionKey::from_bytes([1; 32])),
            "EncryptionKey(<redacted>)"
        );
    }

    #[test]
    fn from_lookup_reads_single_and_cluster_endpoints() {
        let env: HashMap<&str, &str> = [
            (ENV_ENDPOINT, "my.cache.amazonaws.com:6379"),
            (ENV_ENCRYPTION_KEY, HEX),
            (ENV_USERNAME, "app"),
            (ENV_PASSWORD, "pw"),
            (ENV_KEY_PREFIX, "prod:llm"),
        ]
        .into_iter()
        .collect();
        let config = ElastiCacheConfig::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(
            config.endpoint,
            Endpoint::Single("rediss://my.cache.amazonaws.com:6379".into())
        );
        assert_eq!(config.username.as_deref(), Some("app"));
        assert_eq!(config.key_prefix, "prod:llm");

        let env: HashMap<&str, &str> = [
            (
                ENV_ENDPOINT,
                "redis://127.0.0.1:7000, redis://127.0.0.1:7001",
            ),
            (ENV_ENCRYPTION_KEY, HEX),
        ]
        .into_iter()
        .collect();
        let config = ElastiCacheConfig::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(
            config.endpoint,
            Endpoint::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://127.0.0.1:7001".into()
            ])
        );
    }

    #[test]
    fn a_key_ring_from_the_environment_seals_with_the_first() {
        let other = "ff".repeat(32);
        let env = |value: String| {
            move |k: &str| match k {
                ENV_ENDPOINT => Some("redis://127.0.0.1:1".to_owned()),
                ENV_ENCRYPTION_KEY => Some(value.clone()),
                _ => None,
            }
        };
        let config = ElastiCacheConfig::from_lookup(env(format!("{other}, {HEX}"))).unwrap();
        assert_eq!(config.encryption_key.0, [0xff; 32]);
        assert_eq!(config.decryption_keys.len(), 1);
        assert_eq!(config.decryption_keys[0].0, bytes());
        assert_eq!(config.key_ring().len(), 2);
        let debug = format!("{config:?}");
        assert!(debug.contains("decryption_keys: 1 <redacted>"), "{debug}");
        assert!(!debug.contains("ffff"), "{debug}");
        let single = ElastiCacheConfig::from_lookup(env(HEX.to_owned())).unwrap();
        assert!(single.decryption_keys.is_empty());
        let error = ElastiCacheConfig::from_lookup(env(format!("{HEX},,"))).unwrap_err();
        assert!(error.to_string().contains("key 2 of the ring"), "{error}");
        let error = ElastiCacheConfig::from_lookup(env(format!("{HEX},nope"))).unwrap_err();
        assert!(error.to_string().contains("key 2 of the ring"), "{error}");
        assert!(!error.to_string().contains("nope"), "{error}");
    }

    #[test]
    fn from_lookup_requires_endpoint_and_key() {
        let none = ElastiCacheConfig::from_lookup(|_| None).unwrap_err();
        assert!(matches!(none, ConfigError::Missing(ENV_ENDPOINT)));
        let no_key = ElastiCacheConfig::from_lookup(|k| {
            (k == ENV_ENDPOINT).then(|| "redis://127.0.0.1:1".to_owned())
        })
        .unwrap_err();
        assert!(matches!(no_key, ConfigError::Missing(ENV_ENCRYPTION_KEY)));
    }

    #[test]
    fn a_tls_ca_file_is_read_and_an_unreadable_one_refused() {
        let path = std::env::temp_dir().join(format!("failover-ec-ca-{}.pem", std::process::id()));
        std::fs::write(&path, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        let lookup = |missing: bool| {
            let path = if missing {
                "/nonexistent/ca.pem".to_owned()
            } else {
                path.display().to_string()
            };
            move |k: &str| match k {
                ENV_ENDPOINT => Some("rediss://127.0.0.1:1".to_owned()),
                ENV_ENCRYPTION_KEY => Some(HEX.to_owned()),
                ENV_TLS_CA_FILE => Some(path.clone()),
                _ => None,
            }
        };
        let config = ElastiCacheConfig::from_lookup(lookup(false)).unwrap();
        assert_eq!(
            config.tls_root_cert_pem.as_deref(),
            Some(&b"-----BEGIN CERTIFICATE-----\n"[..])
        );
        assert!(format!("{config:?}").contains("tls_root_cert_pem: Some(28)"));
        let error = ElastiCacheConfig::from_lookup(lookup(true)).unwrap_err();
        assert!(error.to_string().contains(ENV_TLS_CA_FILE), "{error}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn validate_refuses_bad_settings() {
        let key = || EncryptionKey::from_bytes([0; 32]);
        assert!(
            ElastiCacheConfig::new("http://x", key())
                .validate()
                .is_err()
        );
        assert!(
            ElastiCacheConfig::new("redis://x", key())
                .with_key_prefix("a*")
                .validate()
                .is_err()
        );
        assert!(
            ElastiCacheConfig::new("redis://x", key())
                .with_operation_timeout(Duration::ZERO)
                .validate()
                .is_err()
        );
        assert!(
            ElastiCacheConfig::new("redis://x", key())
                .validate()
                .is_ok()
        );
    }
}
