//! Who is calling: the caller's API key (`Authorization: Bearer …`) maps to a tenant, the
//! agents and the models it may use.
//!
//! Keys live in the configuration as hashes (`blake3:` and 64 hex digits), never in clear:
//! a leaked configuration file leaks no key. The tenant never comes from a free header; only
//! a service key with `assert_tenant` may name one (`x-failover-tenant`), for a trusted
//! backend that serves many tenants. The agent comes from `x-failover-agent` (when the key
//! allows it) or the key's default.

use std::collections::HashMap;
use std::fmt;

use http::HeaderMap;
use serde::Deserialize;

use crate::error::ApiError;

/// The header a service key names the tenant with.
pub const TENANT_HEADER: &str = "x-failover-tenant";
/// The header naming the calling agent.
pub const AGENT_HEADER: &str = "x-failover-agent";

/// The hash of an API key, as the configuration holds it: `blake3:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The hash of `key`.
    pub fn of(key: &str) -> Self {
        Self(*blake3::hash(key.as_bytes()).as_bytes())
    }

    /// Parses `blake3:<64 hex digits>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hex = text.strip_prefix("blake3:").ok_or_else(|| {
            format!("a key hash is `blake3:` and 64 hex digits (`failover hash-key` prints one), not {text:?}")
        })?;
        blake3::Hash::from_hex(hex)
            .map(|hash| Self(*hash.as_bytes()))
            .map_err(|error| format!("key hash {text:?}: {error}"))
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", blake3::Hash::from_bytes(self.0).to_hex())
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        KeyHash::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One API key's grant, as configured (`[[keys]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyGrant {
    /// A name for logs and errors (never the key).
    pub name: String,
    /// The key's hash.
    pub hash: KeyHash,
    /// The tenant billed and whose cache space is used.
    pub tenant: String,
    /// The agent when the request names none.
    #[serde(default = "default_agent")]
    pub default_agent: String,
    /// The agents the caller may name in `x-failover-agent`; empty: any.
    #[serde(default)]
    pub agents: Vec<String>,
    /// The logical models the key may use; empty: every one.
    #[serde(default)]
    pub models: Vec<String>,
    /// Whether the key may name the tenant in `x-failover-tenant` (a service key).
    #[serde(default)]
    pub assert_tenant: bool,
}

fn default_agent() -> String {
    "default".to_owned()
}

impl KeyGrant {
    /// A grant of `tenant` to the key hashed as `hash`, with the defaults a configuration
    /// entry has: agent `default`, any agent, every model, no tenant assertion.
    pub fn new(name: impl Into<String>, hash: KeyHash, tenant: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            hash,
            tenant: tenant.into(),
            default_agent: default_agent(),
            agents: Vec::new(),
            models: Vec::new(),
            assert_tenant: false,
        }
    }
}

/// The keys the gateway knows, by hash.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    by_hash: HashMap<KeyHash, KeyGrant>,
}

/// The caller of one request, as its key decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name.
    pub key: String,
    /// The tenant.
    pub tenant_id: String,
    /// The agent.
    pub agent_id: String,
}

impl Keys {
    /// The keys of `grants`; two grants with one hash are refused.
    pub fn new(grants: Vec<KeyGrant>) -> Result<Self, String> {
        let mut by_hash = HashMap::with_capacity(grants.len());
        for grant in grants {
            if grant.tenant.trim().is_empty() {
                return Err(format!("key {:?} has an empty tenant", grant.name));
            }
            let name = grant.name.clone();
            if let Some(earlier) = by_hash.insert(grant.hash, grant) {
                return Err(format!(
                    "keys {:?} and {name:?} have the same hash",
                    earlier.name
                ));
            }
        }
        Ok(Self { by_hash })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The grant of the request's bearer key: 401 without a known key.
    pub(crate) fn grant(&self, headers: &HeaderMap) -> Result<&KeyGrant, ApiError> {
        let key = bearer(headers)?;
        self.by_hash
            .get(&KeyHash::of(key))
            .ok_or_else(|| ApiError::unauthorized("the API key is not known to this gateway"))
    }

    /// Who is calling: the key's tenant (or, for a service key, the asserted one) and the
    /// agent; 401 without a known key, 403 for an agent or tenant the key may not name.
    pub(crate) fn caller(&self, headers: &HeaderMap) -> Result<(Caller, &KeyGrant), ApiError> {
        let grant = self.grant(headers)?;
        let tenant_id = match header(headers, TENANT_HEADER)? {
            None => grant.tenant.clone(),
            Some(tenant) if grant.assert_tenant => tenant.to_owned(),
            Some(tenant) if tenant == grant.tenant => tenant.to_owned(),
            Some(_) => {
                return Err(ApiError::forbidden(
                    format!(
                        "key {:?} may not name a tenant in {TENANT_HEADER}: only a service key \
                         with assert_tenant may",
                        grant.name
                    ),
                    None,
                ));
            }
        };
        let agent_id = match header(headers, AGENT_HEADER)? {
            None => grant.default_agent.clone(),
            Some(agent) if grant.agents.is_empty() || grant.agents.iter().any(|a| a == agent) => {
                agent.to_owned()
            }
            Some(agent) => {
                return Err(ApiError::forbidden(
                    format!("key {:?} may not act as agent {agent:?}", grant.name),
                    None,
                ));
            }
        };
        Ok((
            Caller {
                key: grant.name.clone(),
                tenant_id,
                agent_id,
            },
            grant,
        ))
    }
}

impl KeyGrant {
    /// 403 unless the key may use the logical model `model`.
    pub(crate) fn check_model(&self, model: &str) -> Result<(), ApiError> {
        if self.models.is_empty() || self.models.iter().any(|allowed| allowed == model) {
            return Ok(());
        }
        Err(ApiError::forbidden(
            format!("key {:?} may not use model {model:?}", self.name),
            Some("model"),
        ))
    }

    /// Whether the key may use `model` (for `GET /v1/models`).
    pub(crate) fn allows(&self, model: &str) -> bool {
        self.check_model(model).is_ok()
    }
}

/// The bearer token of `Authorization`; 401 when there is none.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("no API key: send `Authorization: Bearer <key>`"))?;
    value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer <key>`"))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|value| Some(value.trim()))
            .map_err(|_| ApiError::invalid_request(format!("{name} is not visible ASCII"), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(name: &str, key: &str, tenant: &str) -> KeyGrant {
        KeyGrant {
            models: vec!["gpt-3.5-turbo".into()],
            ..KeyGrant::new(name, KeyHash::of(key), tenant)
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn a_hash_round_trips_through_its_text() {
        let hash = KeyHash::of("sk-1");
        assert_eq!(KeyHash::parse(&hash.to_string()).unwrap(), hash);
        assert!(KeyHash::parse("sk-1").is_err());
    }

    #[test]
    fn the_tenant_comes_from_the_key_not_from_a_header() {
        let keys = Keys::new(vec![grant("acme", "sk-acme", "acme")]).unwrap();
        let (caller, _) = keys
            .caller(&headers(&[("authorization", "Bearer sk-acme")]))
            .unwrap();
        assert_eq!(caller.tenant_id, "acme");
        let asserted = keys
            .caller(&headers(&[
                ("authorization", "Bearer sk-acme"),
                (TENANT_HEADER, "globex"),
            ]))
            .unwrap_err();
        assert_eq!(asserted.status(), http::StatusCode::FORBIDDEN);
        let unknown = keys
            .caller(&headers(&[("authorization", "Bearer sk-other")]))
            .unwrap_err();
        assert_eq!(unknown.status(), http::StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_service_key_may_assert_a_tenant() {
        let mut service = grant("svc", "sk-svc", "svc");
        service.assert_tenant = true;
        let keys = Keys::new(vec![service]).unwrap();
        let (caller, grant) = keys
            .caller(&headers(&[
                ("authorization", "Bearer sk-svc"),
                (TENANT_HEADER, "globex"),
            ]))
            .unwrap();
        assert_eq!(caller.tenant_id, "globex");
        assert!(grant.check_model("gpt-4").is_err());
    }
}
