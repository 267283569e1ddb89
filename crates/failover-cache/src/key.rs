//! Tenant-bound cache keys: a keyed BLAKE3 hash over every field that shapes an answer.
//!
//! See the crate README for the layout table and the isolation argument.

use std::fmt;

use failover_provider::{
    ContentPart, Message, ResponseFormat, Role, Sampling, ToolChoice, ToolConfig, ToolResultContent,
};

/// Version of the key layout. It is hashed into every key, so changing the layout (or the
/// meaning of a field) and bumping this makes every old entry unreachable instead of
/// wrongly reachable.
pub const KEY_FORMAT_VERSION: u32 = 2;

/// The built-in key used by [`KeyDeriver::default`]. **Not a secret**: it is published
/// here. It is the 32 ASCII bytes `llm-failover default cache key!!`.
const DEFAULT_SECRET: [u8; 32] = *b"llm-failover default cache key!!";

/// BLAKE3 `derive_key` context for [`KeyDeriver::from_secret`].
const SECRET_CONTEXT: &str = "llm-failover 2025-06 cache key secret v1";
/// BLAKE3 `derive_key` context for the subkey that hashes entries.
const ENTRY_CONTEXT: &str = "llm-failover 2025-06 cache entry digest v1";
/// BLAKE3 `derive_key` context for the subkey that hashes tenant tags.
const TENANT_CONTEXT: &str = "llm-failover 2025-06 cache tenant tag v1";

/// The environment variable [`KeyDeriver::from_env`] reads the cache key secret from.
pub const ENV_CACHE_KEY: &str = "FAILOVER_CACHE_KEY";

/// The shortest secret [`KeyDeriver::parse_secret`] accepts, in bytes (32 hex digits carry
/// 128 bits).
pub const MIN_SECRET_LEN: usize = 32;

/// A configured cache key secret the deriver refuses. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySecretError {
    /// Too short to carry enough entropy.
    #[error(
        "the cache key secret ({ENV_CACHE_KEY}) has {len} bytes; at least {min} are required (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The published built-in key of [`KeyDeriver::default`].
    #[error("the cache key secret ({ENV_CACHE_KEY}) is the published default key")]
    PublishedDefault,
}

/// Length of a [`TenantTag`] in bytes.
pub const TENANT_TAG_LEN: usize = 16;

/// A keyed hash of a tenant id alone (16 bytes).
///
/// Every [`CacheKey`] of a tenant carries the same tag, so a backend can group and purge a
/// tenant's entries (a Redis key prefix, a moka predicate) without the tenant id itself
/// appearing in any key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantTag([u8; TENANT_TAG_LEN]);

impl TenantTag {
    /// Wraps raw tag bytes, e.g. parsed back from a backend's key.
    pub fn from_bytes(bytes: [u8; TENANT_TAG_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw tag bytes.
    pub fn as_bytes(&self) -> &[u8; TENANT_TAG_LEN] {
        &self.0
    }

    /// Lowercase hex (32 characters).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for TenantTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TenantTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantTag({})", self.to_hex())
    }
}

/// The key of one cache entry: the tenant's tag and a 32-byte digest of every field.
///
/// The digest alone already binds the tenant (the tenant id is its first field); the tag
/// is there so backends can find a tenant's entries. Text form: `"{tenant_hex}:{digest_hex}"`
/// (32 + 1 + 64 characters, lowercase hex, never any request text).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    tenant: TenantTag,
    digest: [u8; 32],
}

impl CacheKey {
    /// Reassembles a key from its parts, e.g. parsed back from a backend's key.
    pub fn from_parts(tenant: TenantTag, digest: [u8; 32]) -> Self {
        Self { tenant, digest }
    }

    /// The tenant's tag.
    pub fn tenant(&self) -> &TenantTag {
        &self.tenant
    }

    /// The keyed digest of every field.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// `"{tenant_hex}:{digest_hex}"`.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(TENANT_TAG_LEN * 2 + 1 + 64);
        push_hex(&mut out, &self.tenant.0);
        out.push(':');
        push_hex(&mut out, &self.digest);
        out
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

/// Every field of a request that shapes its answer: the input of [`KeyDeriver::derive`].
///
/// Not in it, on purpose: the agent id (two agents of one tenant asking the same thing may
/// share an answer), the request id, the deadline, and the concrete provider model (the
/// logical `model` is the contract the caller asked for).
#[derive(Debug, Clone, Copy)]
pub struct CacheKeyInput<'a> {
    /// The tenant; hashed first.
    pub tenant_id: &'a str,
    /// The logical model name the caller asked for (`"gpt-4"`).
    pub model: &'a str,
    /// The conversation, in order; a plain prompt is one user message.
    pub messages: &'a [Message],
    /// Sampling temperature (`-0.0` is hashed as `0.0`).
    pub temperature: Option<f32>,
    /// Output token limit.
    pub max_tokens: Option<u32>,
    /// Stop sequences, in order.
    pub stop: &'a [String],
    /// Text, JSON object or JSON schema (the schema hashed as canonical JSON).
    pub response_format: &'a ResponseFormat,
    /// The tools offered (schemas hashed as canonical JSON), the choice and the parallel
    /// flag.
    pub tools: &'a ToolConfig,
    /// `top_p`, `seed` and `user`.
    pub sampling: &'a Sampling,
}

/// Derives [`CacheKey`]s and [`TenantTag`]s with a keyed BLAKE3 hash.
///
/// The key is what stops someone who can read the cache (a Redis `SCAN`, a backup) from
/// confirming a guessed prompt: without it they cannot recompute a key. Replicas that
/// share one cache must share one configured secret (or they never hit each other's
/// entries); [`KeyDeriver::default`] uses a fixed, published, non-secret key, fine for a
/// process-local cache and for tests, not for a cache others can read.
///
/// `Debug` never shows the secret.
#[derive(Clone)]
pub struct KeyDeriver {
    entry_key: [u8; 32],
    tenant_key: [u8; 32],
    is_default: bool,
}

impl KeyDeriver {
    /// A deriver keyed by a 32-byte secret (use 32 random bytes).
    pub fn new(secret: [u8; 32]) -> Self {
        Self {
            entry_key: blake3::derive_key(ENTRY_CONTEXT, &secret),
            tenant_key: blake3::derive_key(TENANT_CONTEXT, &secret),
            is_default: secret == DEFAULT_SECRET,
        }
    }

    /// A deriver keyed by a secret of any length (e.g. a passphrase from a secret store),
    /// stretched to 32 bytes with BLAKE3 `derive_key`. The secret should carry at least
    /// 128 bits of entropy.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self::new(blake3::derive_key(SECRET_CONTEXT, secret))
    }

    /// Whether this deriver uses the published built-in key of [`KeyDeriver::default`].
    /// A shared cache ([`Cache::is_shared`](crate::Cache::is_shared)) must not run on it:
    /// [`check_key_deriver`](crate::check_key_deriver) refuses the pair.
    pub fn is_default(&self) -> bool {
        self.is_default
    }

    /// A deriver keyed by the secret in [`ENV_CACHE_KEY`] (`FAILOVER_CACHE_KEY`): any text
    /// of at least [`MIN_SECRET_LEN`] bytes (e.g. `openssl rand -hex 32`), stretched by
    /// [`KeyDeriver::from_secret`]. `Ok(None)` when the variable is unset or empty.
    pub fn from_env() -> Result<Option<Self>, KeySecretError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`KeyDeriver::from_env`], reading the variable through `lookup` (setting
    /// process env vars is `unsafe` in Rust 2024, so tests pass a lookup).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, KeySecretError> {
        match lookup(ENV_CACHE_KEY) {
            Some(secret) if !secret.trim().is_empty() => Self::parse_secret(&secret).map(Some),
            _ => Ok(None),
        }
    }

    /// A deriver from a configured secret (surrounding whitespace ignored): refused when it
    /// is shorter than [`MIN_SECRET_LEN`] bytes or is the published default key.
    pub fn parse_secret(secret: &str) -> Result<Self, KeySecretError> {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeySecretError::TooShort {
                len: secret.len(),
                min: MIN_SECRET_LEN,
            });
        }
        if secret.as_bytes() == DEFAULT_SECRET {
            return Err(KeySecretError::PublishedDefault);
        }
        Ok(Self::from_secret(secret.as_bytes()))
    }

    /// The tag of one tenant: the first 16 bytes of a keyed hash of the tenant id alone.
    pub fn tenant_tag(&self, tenant_id: &str) -> TenantTag {
        let mut hasher = blake3::Hasher::new_keyed(&self.tenant_key);
        put_bytes(&mut hasher, tenant_id.as_bytes());
        let hash = hasher.finalize();
        let mut tag = [0u8; TENANT_TAG_LEN];
        tag.copy_from_slice(&hash.as_bytes()[..TENANT_TAG_LEN]);
        TenantTag(tag)
    }

    /// The key of one request. Deterministic for a given secret; any change of any field
    /// gives a different key (up to BLAKE3 collisions).
    pub fn derive(&self, input: &CacheKeyInput<'_>) -> CacheKey {
        let mut h = blake3::Hasher::new_keyed(&self.entry_key);
        // 1. tenant, first.
        put_bytes(&mut h, input.tenant_id.as_bytes());
        // 2. layout version.
        h.update(&KEY_FORMAT_VERSION.to_le_bytes());
        // 3. logical model.
        put_bytes(&mut h, input.model.as_bytes());
        // 4. messages: count, then each (role, parts, calls, result).
        put_len(&mut h, input.messages.len());
        for message in input.messages {
            put_message(&mut h, message);
        }
        // 5. temperature: presence tag + f32 bits.
        match input.temperature {
            None => {
                h.update(&[0]);
            }
            Some(t) => {
                h.update(&[1]);
                h.update(&canonical_f32_bits(t).to_le_bytes());
            }
        }
        // 6. max_tokens: presence tag + value.
        match input.max_tokens {
            None => {
                h.update(&[0]);
            }
            Some(n) => {
                h.update(&[1]);
                h.update(&n.to_le_bytes());
            }
        }
        // 7. stop sequences: count, then each.
        put_len(&mut h, input.stop.len());
        for stop in input.stop {
            put_bytes(&mut h, stop.as_bytes());
        }
        // 8. response format: tag, then name and canonical schema for JSON schema.
        match input.response_format {
            ResponseFormat::Text => {
                h.update(&[0]);
            }
            ResponseFormat::JsonObject => {
                h.update(&[1]);
            }
            ResponseFormat::JsonSchema { name, schema } => {
                h.update(&[2]);
                put_bytes(&mut h, name.as_bytes());
                put_json(&mut h, schema);
            }
        }
        // 9. tools: count, then (name, description, canonical schema) each; the choice;
        //    the parallel flag.
        put_tools(&mut h, input.tools);
        // 10. sampling: top_p, seed, user, each with a presence tag.
        put_option(&mut h, input.sampling.top_p, |h, p| {
            h.update(&canonical_f32_bits(p).to_le_bytes());
        });
        put_option(&mut h, input.sampling.seed, |h, seed| {
            h.update(&seed.to_le_bytes());
        });
        put_option(&mut h, input.sampling.user.as_deref(), |h, user| {
            put_bytes(h, user.as_bytes())
        });
        CacheKey {
            tenant: self.tenant_tag(input.tenant_id),
            digest: *h.finalize().as_bytes(),
        }
    }
}

impl Default for KeyDeriver {
    /// A deriver with the fixed, published, **non-secret** built-in key
    /// (`b"llm-failover default cache key!!"`). Use [`KeyDeriver::new`] or
    /// [`KeyDeriver::from_secret`] with a configured secret for any shared cache.
    fn default() -> Self {
        Self::new(DEFAULT_SECRET)
    }
}

impl fmt::Debug for KeyDeriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyDeriver")
            .field("secret", &"<redacted>")
            .field("is_default", &self.is_default)
            .finish()
    }
}

fn role_tag(role: Role) -> u8 {
    match role {
        Role::System => 1,
        Role::User => 2,
        Role::Assistant => 3,
        Role::Tool => 4,
    }
}

/// A message: role, parts (text, or image as media type and a BLAKE3 digest of its
/// bytes), tool calls (id, name, arguments as sent) and the tool result.
fn put_message(h: &mut blake3::Hasher, message: &Message) {
    h.update(&[role_tag(message.role)]);
    put_len(h, message.content.len());
    for part in &message.content {
        match part {
            ContentPart::Text { text } => {
                h.update(&[1]);
                put_bytes(h, text.as_bytes());
            }
            ContentPart::Image(image) => {
                h.update(&[2]);
                put_bytes(h, image.media_type.mime().as_bytes());
                h.update(blake3::hash(&image.data).as_bytes());
            }
        }
    }
    put_len(h, message.tool_calls.len());
    for call in &message.tool_calls {
        put_bytes(h, call.id.as_bytes());
        put_bytes(h, call.name.as_bytes());
        put_bytes(h, call.arguments.as_bytes());
    }
    put_option(h, message.tool_result.as_ref(), |h, result| {
        put_bytes(h, result.call_id.as_bytes());
        h.update(&[u8::from(result.is_error)]);
        match &result.content {
            ToolResultContent::Text(text) => {
                h.update(&[1]);
                put_bytes(h, text.as_bytes());
            }
            ToolResultContent::Json(value) => {
                h.update(&[2]);
                put_json(h, value);
            }
        }
    });
}

fn put_tools(h: &mut blake3::Hasher, tools: &ToolConfig) {
    put_len(h, tools.tools.len());
    for tool in &tools.tools {
        put_bytes(h, tool.name.as_bytes());
        put_option(h, tool.description.as_deref(), |h, description| {
            put_bytes(h, description.as_bytes())
        });
        put_json(h, &tool.input_schema);
    }
    match &tools.choice {
        ToolChoice::Auto => {
            h.update(&[1]);
        }
        ToolChoice::None => {
            h.update(&[2]);
        }
        ToolChoice::Required => {
            h.update(&[3]);
        }
        ToolChoice::Tool(name) => {
            h.update(&[4]);
            put_bytes(h, name.as_bytes());
        }
    }
    put_option(h, tools.parallel_tool_calls, |h, parallel| {
        h.update(&[u8::from(parallel)]);
    });
}

/// A presence tag (0 absent, 1 present), then the value.
fn put_option<T>(
    h: &mut blake3::Hasher,
    value: Option<T>,
    put: impl FnOnce(&mut blake3::Hasher, T),
) {
    match value {
        None => {
            h.update(&[0]);
        }
        Some(value) => {
            h.update(&[1]);
            put(h, value);
        }
    }
}

fn put_json(h: &mut blake3::Hasher, value: &serde_json::Value) {
    let mut canonical = String::new();
    canonical_json(value, &mut canonical);
    put_bytes(h, canonical.as_bytes());
}

/// `-0.0` → `0.0`; every NaN → the one canonical quiet NaN.
fn canonical_f32_bits(value: f32) -> u32 {
    if value == 0.0 {
        0.0f32.to_bits()
    } else if value.is_nan() {
        f32::NAN.to_bits()
    } else {
        value.to_bits()
    }
}

fn put_len(h: &mut blake3::Hasher, len: usize) {
    h.update(&(len as u64).to_le_bytes());
}

fn put_bytes(h: &mut blake3::Hasher, bytes: &[u8]) {
    put_len(h, bytes.len());
    h.update(bytes);
}

/// Writes `value` as canonical JSON: no whitespace, object keys sorted by their UTF-8
/// bytes at every depth, strings escaped by serde_json, numbers in serde_json's shortest
/// form. Independent of serde_json's `preserve_order` feature, which another crate in
/// the build may switch on (feature unification) and which would make `Value`'s own
/// serialisation follow insertion order.
fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => push_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(k, out);
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
    }
}

fn push_json_string(s: &str, out: &mut String) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_provider::{ImageMediaType, ImagePart, ToolCall, ToolDefinition};
    use proptest::prelude::*;
    use serde_json::json;

    struct Owned {
        tenant_id: String,
        model: String,
        messages: Vec<Message>,
        temperature: Option<f32>,
        max_tokens: Option<u32>,
        stop: Vec<String>,
        response_format: ResponseFormat,
        tools: ToolConfig,
        sampling: Sampling,
    }

    fn weather_tool() -> ToolDefinition {
        ToolDefinition::new(
            "get_weather",
            "The weather in a city",
            json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        )
    }

    impl Owned {
        fn base() -> Self {
            Self {
                tenant_id: "tenant-a".into(),
                model: "gpt-4".into(),
                messages: vec![
                    Message::system("You are terse."),
                    Message::user("What is 2+2?"),
                ],
                temperature: Some(0.1),
                max_tokens: Some(10),
                stop: vec!["\n\n".into()],
                response_format: ResponseFormat::Text,
                tools: ToolConfig::default(),
                sampling: Sampling::default(),
            }
        }

        fn input(&self) -> CacheKeyInput<'_> {
            CacheKeyInput {
                tenant_id: &self.tenant_id,
                model: &self.model,
                messages: &self.messages,
                temperature: self.temperature,
                max_tokens: self.max_tokens,
                stop: &self.stop,
                response_format: &self.response_format,
                tools: &self.tools,
                sampling: &self.sampling,
            }
        }

        fn key(&self) -> CacheKey {
            KeyDeriver::default().derive(&self.input())
        }
    }

    /// Every single-field change of the base request, named.
    type Change = Box<dyn Fn(&mut Owned)>;

    fn single_field_changes() -> Vec<(&'static str, Change)> {
        vec![
            ("tenant", Box::new(|o: &mut Owned| o.tenant_id.push('x'))),
            ("model", Box::new(|o: &mut Owned| o.model = "gpt-4o".into())),
            (
                "message content",
                Box::new(|o: &mut Owned| {
                    o.messages[1].content[0] = ContentPart::text("What is 2+2? ")
                }),
            ),
            (
                "message role",
                Box::new(|o: &mut Owned| o.messages[1].role = Role::Assistant),
            ),
            (
                "message added",
                Box::new(|o: &mut Owned| o.messages.push(Message::user(""))),
            ),
            (
                "message removed",
                Box::new(|o: &mut Owned| {
                    o.messages.remove(0);
                }),
            ),
            (
                "messages reordered",
                Box::new(|o: &mut Owned| o.messages.swap(0, 1)),
            ),
            (
                "temperature value",
                Box::new(|o: &mut Owned| o.temperature = Some(0.2)),
            ),
            (
                "temperature absent",
                Box::new(|o: &mut Owned| o.temperature = None),
            ),
            (
                "max_tokens value",
                Box::new(|o: &mut Owned| o.max_tokens = Some(11)),
            ),
            (
                "max_tokens absent",
                Box::new(|o: &mut Owned| o.max_tokens = None),
            ),
            ("stop value", Box::new(|o: &mut Owned| o.stop[0].push('x'))),
            ("stop removed", Box::new(|o: &mut Owned| o.stop.clear())),
            (
                "stop added",
                Box::new(|o: &mut Owned| o.stop.push(String::new())),
            ),
            (
                "json object",
                Box::new(|o: &mut Owned| o.response_format = ResponseFormat::JsonObject),
            ),
            (
                "json schema",
                Box::new(|o: &mut Owned| {
                    o.response_format = ResponseFormat::JsonSchema {
                        name: "answer".into(),
                        schema: json!({"type": "object"}),
                    }
                }),
            ),
            (
                "image added",
                Box::new(|o: &mut Owned| {
                    o.messages[1]
                        .content
                        .push(ContentPart::Image(ImagePart::new(
                            ImageMediaType::Png,
                            vec![1, 2],
                        )))
                }),
            ),
            (
                "tool call in history",
                Box::new(|o: &mut Owned| {
                    o.messages.push(Message::assistant_with_calls(
                        "",
                        vec![ToolCall::new("call_1", "get_weather", "{}")],
                    ))
                }),
            ),
            (
                "tool result",
                Box::new(|o: &mut Owned| {
                    o.messages.push(Message::tool_result(
                        "call_1",
                        ToolResultContent::Text("sunny".into()),
                    ))
                }),
            ),
            (
                "tool offered",
                Box::new(|o: &mut Owned| o.tools.tools.push(weather_tool())),
            ),
            (
                "tool choice",
                Box::new(|o: &mut Owned| o.tools.choice = ToolChoice::Required),
            ),
            (
                "parallel tool calls",
                Box::new(|o: &mut Owned| o.tools.parallel_tool_calls = Some(false)),
            ),
            (
                "top_p",
                Box::new(|o: &mut Owned| o.sampling.top_p = Some(0.9)),
            ),
            ("seed", Box::new(|o: &mut Owned| o.sampling.seed = Some(7))),
            (
                "user",
                Box::new(|o: &mut Owned| o.sampling.user = Some("u-1".into())),
            ),
        ]
    }

    #[test]
    fn image_bytes_tool_schemas_and_results_are_in_the_key() {
        let image = |bytes: Vec<u8>, media_type| {
            let mut o = Owned::base();
            o.messages[1]
                .content
                .push(ContentPart::Image(ImagePart::new(media_type, bytes)));
            o.key()
        };
        assert_ne!(
            image(vec![1, 2, 3], ImageMediaType::Png),
            image(vec![1, 2, 4], ImageMediaType::Png)
        );
        assert_ne!(
            image(vec![1, 2, 3], ImageMediaType::Png),
            image(vec![1, 2, 3], ImageMediaType::Jpeg)
        );
        let tool = |schema: serde_json::Value, choice: ToolChoice| {
            let mut o = Owned::base();
            o.tools.tools.push(ToolDefinition {
                input_schema: schema,
                ..weather_tool()
            });
            o.tools.choice = choice;
            o.key()
        };
        let object = json!({"type": "object"});
        assert_ne!(
            tool(object.clone(), ToolChoice::Auto),
            tool(
                json!({"type": "object", "required": ["city"]}),
                ToolChoice::Auto
            )
        );
        assert_ne!(
            tool(object.clone(), ToolChoice::Tool("get_weather".into())),
            tool(object, ToolChoice::Required)
        );
        let result = |content: ToolResultContent, is_error: bool| {
            let mut o = Owned::base();
            let mut message = Message::tool_result("call_1", content);
            message.tool_result.as_mut().unwrap().is_error = is_error;
            o.messages.push(message);
            o.key()
        };
        let text = ToolResultContent::Text("{\"t\":1}".into());
        assert_ne!(result(text.clone(), false), result(text.clone(), true));
        assert_ne!(
            result(text, false),
            result(ToolResultContent::Json(json!({"t": 1})), false)
        );
    }

    #[test]
    fn every_single_field_change_changes_the_key() {
        let base = Owned::base().key();
        let mut seen = std::collections::HashSet::new();
        seen.insert(base);
        for (name, change) in single_field_changes() {
            let mut o = Owned::base();
            change(&mut o);
            let key = o.key();
            assert_ne!(key, base, "changing {name} must change the key");
            assert!(
                seen.insert(key),
                "changing {name} collided with another change"
            );
        }
    }

    #[test]
    fn schema_name_and_schema_body_are_both_in_the_key() {
        let mut a = Owned::base();
        a.response_format = ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object"}),
        };
        let mut b = Owned::base();
        b.response_format = ResponseFormat::JsonSchema {
            name: "answer2".into(),
            schema: json!({"type": "object"}),
        };
        let mut c = Owned::base();
        c.response_format = ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "array"}),
        };
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        assert_ne!(b.key(), c.key());
    }

    #[test]
    fn schema_key_order_does_not_matter() {
        // Built from text in two orders: with serde_json's `preserve_order` on, the two
        // `Value`s would keep different orders; the canonical form sorts either way.
        let one: serde_json::Value =
            serde_json::from_str(r#"{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer"}},"required":["a","b"]}"#).unwrap();
        let two: serde_json::Value =
            serde_json::from_str(r#"{"required":["a","b"],"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}"#).unwrap();
        let mut a = Owned::base();
        a.response_format = ResponseFormat::JsonSchema {
            name: "s".into(),
            schema: one.clone(),
        };
        let mut b = Owned::base();
        b.response_format = ResponseFormat::JsonSchema {
            name: "s".into(),
            schema: two,
        };
        assert_eq!(a.key(), b.key());
        let mut canonical = String::new();
        canonical_json(&one, &mut canonical);
        assert_eq!(
            canonical,
            r#"{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a","b"],"type":"object"}"#
        );
    }

    #[test]
    fn array_order_in_schema_matters() {
        let mut a = Owned::base();
        a.response_format = ResponseFormat::JsonSchema {
            name: "s".into(),
            schema: json!({"required": ["a", "b"]}),
        };
        let mut b = Owned::base();
        b.response_format = ResponseFormat::JsonSchema {
            name: "s".into(),
            schema: json!({"required": ["b", "a"]}),
        };
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn negative_zero_temperature_is_zero() {
        let mut a = Owned::base();
        a.temperature = Some(0.0);
        let mut b = Owned::base();
        b.temperature = Some(-0.0);
        assert_eq!(a.key(), b.key());
        let mut c = Owned::base();
        c.temperature = None;
        assert_ne!(a.key(), c.key(), "Some(0.0) is not the provider default");
    }

    #[test]
    fn concatenation_collisions_are_prevented() {
        let mut a = Owned::base();
        a.tenant_id = "ab".into();
        a.model = "c".into();
        let mut b = Owned::base();
        b.tenant_id = "a".into();
        b.model = "bc".into();
        assert_ne!(a.key(), b.key());

        let mut c = Owned::base();
        c.messages = vec![Message::user("ab"), Message::user("c")];
        let mut d = Owned::base();
        d.messages = vec![Message::user("a"), Message::user("bc")];
        assert_ne!(c.key(), d.key());

        let mut e = Owned::base();
        e.stop = vec!["a".into(), "b".into()];
        let mut f = Owned::base();
        f.stop = vec!["ab".into()];
        assert_ne!(e.key(), f.key());

        // An empty stop list vs an empty message moved across field boundaries.
        let mut g = Owned::base();
        g.messages = vec![];
        g.stop = vec![];
        let mut h = Owned::base();
        h.messages = vec![Message::user("")];
        h.stop = vec![];
        assert_ne!(g.key(), h.key());
    }

    #[test]
    fn text_form_is_tag_colon_digest() {
        let key = Owned::base().key();
        let text = key.to_string();
        assert_eq!(text, key.to_hex());
        assert_eq!(text.len(), 32 + 1 + 64);
        let (tag, digest) = text.split_once(':').unwrap();
        assert_eq!(tag, key.tenant().to_hex());
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            CacheKey::from_parts(*key.tenant(), *key.digest()),
            key,
            "parts reassemble"
        );
        assert_eq!(*key.tenant(), KeyDeriver::default().tenant_tag("tenant-a"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = *b"0123456789abcdefSECRETSECRETSECR";
        let deriver = KeyDeriver::new(secret);
        let debug = format!("{deriver:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(!debug.contains("48, 49, 50"), "{debug}");
        assert!(!deriver.is_default());
        assert!(KeyDeriver::default().is_default());
    }

    #[test]
    fn a_configured_secret_from_the_environment() {
        let secret = "0123456789abcdef0123456789abcdef";
        let from_env = KeyDeriver::from_lookup(|name| {
            (name == ENV_CACHE_KEY).then(|| format!("  {secret}\n"))
        })
        .unwrap()
        .expect("set");
        assert!(!from_env.is_default());
        assert_eq!(
            from_env.tenant_tag("t"),
            KeyDeriver::from_secret(secret.as_bytes()).tenant_tag("t")
        );
        assert!(KeyDeriver::from_lookup(|_| None).unwrap().is_none());
        assert!(
            KeyDeriver::from_lookup(|_| Some("  ".into()))
                .unwrap()
                .is_none()
        );
        let short = KeyDeriver::parse_secret("short").unwrap_err();
        assert_eq!(short, KeySecretError::TooShort { len: 5, min: 32 });
        assert!(!short.to_string().contains("short"), "{short}");
        assert_eq!(
            KeyDeriver::parse_secret("llm-failover default cache key!!").unwrap_err(),
            KeySecretError::PublishedDefault
        );
    }

    #[test]
    fn key_format_is_pinned() {
        // A golden value: if this changes, the layout changed and KEY_FORMAT_VERSION
        // must be bumped (and this value updated).
        let key = Owned::base().key();
        assert_eq!(
            key.to_hex(),
            GOLDEN_KEY,
            "layout changed: bump KEY_FORMAT_VERSION"
        );
    }

    const GOLDEN_KEY: &str = "5036842449615dcaef93db274227b3d0:3b7f7de0f2f0442376912ca9effdddba9c70643754b3035b2f60c6ba84b1d0e0";

    #[test]
    fn layout_matches_the_documented_table() {
        // Rebuild the hashed bytes by hand from the README's table.
        fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let mut o = Owned::base();
        o.response_format = ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object", "required": ["x"]}),
        };
        o.messages[1]
            .content
            .push(ContentPart::Image(ImagePart::new(
                ImageMediaType::Png,
                vec![7, 7],
            )));
        o.messages.push(Message::assistant_with_calls(
            "",
            vec![ToolCall::new(
                "call_1",
                "get_weather",
                r#"{"city":"Paris"}"#,
            )],
        ));
        let mut result = Message::tool_result("call_1", ToolResultContent::Json(json!({"t": 1})));
        result.tool_result.as_mut().unwrap().is_error = true;
        o.messages.push(result);
        o.tools = ToolConfig {
            tools: vec![weather_tool()],
            choice: ToolChoice::Required,
            parallel_tool_calls: Some(false),
        };
        o.sampling = Sampling {
            top_p: Some(0.5),
            seed: None,
            user: Some("u".into()),
        };
        let mut bytes = Vec::new();
        lp(&mut bytes, b"tenant-a");
        bytes.extend_from_slice(&2u32.to_le_bytes());
        lp(&mut bytes, b"gpt-4");
        bytes.extend_from_slice(&4u64.to_le_bytes());
        // 4a-4d: role, parts (tag 1 text, tag 2 image digest), calls, result.
        bytes.push(1);
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.push(1);
        lp(&mut bytes, b"You are terse.");
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.push(0);
        bytes.push(2);
        bytes.extend_from_slice(&2u64.to_le_bytes());
        bytes.push(1);
        lp(&mut bytes, b"What is 2+2?");
        bytes.push(2);
        lp(&mut bytes, b"image/png");
        bytes.extend_from_slice(blake3::hash(&[7, 7]).as_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.push(0);
        bytes.push(3);
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        lp(&mut bytes, b"call_1");
        lp(&mut bytes, b"get_weather");
        lp(&mut bytes, br#"{"city":"Paris"}"#);
        bytes.push(0);
        bytes.push(4);
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.push(1);
        lp(&mut bytes, b"call_1");
        bytes.push(1);
        bytes.push(2);
        lp(&mut bytes, br#"{"t":1}"#);
        bytes.push(1);
        bytes.extend_from_slice(&0.1f32.to_bits().to_le_bytes());
        bytes.push(1);
        bytes.extend_from_slice(&10u32.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        lp(&mut bytes, b"\n\n");
        bytes.push(2);
        lp(&mut bytes, b"answer");
        lp(&mut bytes, br#"{"required":["x"],"type":"object"}"#);
        // 9: one tool, choice required, parallel flag false.
        bytes.extend_from_slice(&1u64.to_le_bytes());
        lp(&mut bytes, b"get_weather");
        bytes.push(1);
        lp(&mut bytes, b"The weather in a city");
        lp(
            &mut bytes,
            br#"{"properties":{"city":{"type":"string"}},"type":"object"}"#,
        );
        bytes.push(3);
        bytes.push(1);
        bytes.push(0);
        // 10: top_p 0.5, no seed, user "u".
        bytes.push(1);
        bytes.extend_from_slice(&0.5f32.to_bits().to_le_bytes());
        bytes.push(0);
        bytes.push(1);
        lp(&mut bytes, b"u");
        let entry_key = blake3::derive_key(ENTRY_CONTEXT, &DEFAULT_SECRET);
        let expected = blake3::keyed_hash(&entry_key, &bytes);
        assert_eq!(o.key().digest(), expected.as_bytes());

        let mut tag_bytes = Vec::new();
        lp(&mut tag_bytes, b"tenant-a");
        let tenant_key = blake3::derive_key(TENANT_CONTEXT, &DEFAULT_SECRET);
        let tag = blake3::keyed_hash(&tenant_key, &tag_bytes);
        assert_eq!(o.key().tenant().as_bytes()[..], tag.as_bytes()[..16]);
    }

    fn tenant_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            ".*",
            "[a-z:/]{0,6}",
            "[\\x00:/ab]{0,6}",
            Just(String::new()),
        ]
    }

    proptest! {
        #[test]
        fn distinct_tenants_never_share_keys_or_tags(
            a in tenant_strategy(),
            b in tenant_strategy(),
            model_a in "[a-z:/\\x00]{0,4}",
            model_b in "[a-z:/\\x00]{0,4}",
            prompt in ".{0,40}",
        ) {
            prop_assume!(a != b);
            let deriver = KeyDeriver::default();
            let messages = vec![Message::user(prompt)];
            let stop: Vec<String> = Vec::new();
            let fmt = ResponseFormat::Text;
            let ka = deriver.derive(&CacheKeyInput {
                tenant_id: &a, model: &model_a, messages: &messages, temperature: None,
                max_tokens: None, stop: &stop, response_format: &fmt,
                tools: &ToolConfig::NONE, sampling: &Sampling::NONE,
            });
            let kb = deriver.derive(&CacheKeyInput {
                tenant_id: &b, model: &model_b, messages: &messages, temperature: None,
                max_tokens: None, stop: &stop, response_format: &fmt,
                tools: &ToolConfig::NONE, sampling: &Sampling::NONE,
            });
            prop_assert_ne!(ka, kb);
            prop_assert_ne!(ka.tenant(), kb.tenant());
            prop_assert_ne!(deriver.tenant_tag(&a), deriver.tenant_tag(&b));
        }

        #[test]
        fn tenant_plus_model_split_points_never_collide(s in "[a-z:/\\x00]{2,12}", i in 0usize..12, j in 0usize..12) {
            // Same concatenation tenant‖model, different split point.
            let i = i.min(s.len());
            let j = j.min(s.len());
            prop_assume!(i != j);
            let deriver = KeyDeriver::default();
            let fmt = ResponseFormat::Text;
            let derive = |split: usize| deriver.derive(&CacheKeyInput {
                tenant_id: &s[..split], model: &s[split..], messages: &[], temperature: None,
                max_tokens: None, stop: &[], response_format: &fmt,
                tools: &ToolConfig::NONE, sampling: &Sampling::NONE,
            });
            prop_assert_ne!(derive(i), derive(j));
        }

        #[test]
        fn hex_key_never_contains_prompt_text(prompt in "[g-zG-Z ,.!?]{8,200}", tenant in "[g-z]{8,20}") {
            let deriver = KeyDeriver::default();
            let messages = vec![Message::user(prompt.clone())];
            let fmt = ResponseFormat::Text;
            let key = deriver.derive(&CacheKeyInput {
                tenant_id: &tenant, model: "gpt-4", messages: &messages, temperature: None,
                max_tokens: None, stop: &[], response_format: &fmt,
                tools: &ToolConfig::NONE, sampling: &Sampling::NONE,
            });
            let text = key.to_hex();
            prop_assert!(!text.contains(&prompt));
            prop_assert!(!text.contains(&tenant));
            let debug = format!("{:?}", key);
            prop_assert!(!debug.contains(&prompt));
        }

        #[test]
        fn deterministic_per_secret_and_distinct_across_secrets(
            secret in proptest::array::uniform32(any::<u8>()),
            other in proptest::array::uniform32(any::<u8>()),
            prompt in ".{0,64}",
            temperature in proptest::option::of(0.0f32..2.0),
            max_tokens in proptest::option::of(any::<u32>()),
        ) {
            let messages = vec![Message::user(prompt)];
            let fmt = ResponseFormat::JsonObject;
            let input = CacheKeyInput {
                tenant_id: "t", model: "m", messages: &messages, temperature,
                max_tokens, stop: &[], response_format: &fmt,
                tools: &ToolConfig::NONE, sampling: &Sampling::NONE,
            };
            let one = KeyDeriver::new(secret);
            let two = KeyDeriver::new(secret);
            prop_assert_eq!(one.derive(&input), one.derive(&input));
            prop_assert_eq!(one.derive(&input), two.derive(&input));
            prop_assume!(secret != other);
            let three = KeyDeriver::new(other);
            prop_assert_ne!(one.derive(&input), three.derive(&input));
            prop_assert_ne!(one.tenant_tag("t"), three.tenant_tag("t"));
        }

        #[test]
        fn any_single_field_change_changes_the_key(
            tenant in ".{0,8}", model in ".{0,8}", content in ".{0,16}",
            temperature in proptest::option::of(-2.0f32..2.0),
            max_tokens in proptest::option::of(any::<u32>()),
            stop in proptest::collection::vec(".{0,4}", 0..3),
            which in 0usize..7,
            suffix in ".{1,4}",
        ) {
            let mut a = Owned {
                tenant_id: tenant, model, messages: vec![Message::user(content)], temperature,
                max_tokens, stop, response_format: ResponseFormat::Text,
                tools: ToolConfig::default(), sampling: Sampling::default(),
            };
            let before = a.key();
            match which {
                0 => a.tenant_id.push_str(&suffix),
                1 => a.model.push_str(&suffix),
                2 => a.messages[0].content.push(ContentPart::text(suffix.clone())),
                3 => a.temperature = match a.temperature { None => Some(1.0), Some(t) => Some(t + 0.5) },
                4 => a.max_tokens = match a.max_tokens { None => Some(1), Some(n) => if n == 0 { None } else { Some(n - 1) } },
                5 => a.stop.push(suffix),
                _ => a.response_format = ResponseFormat::JsonObject,
            }
            prop_assert_ne!(a.key(), before);
        }

        #[test]
        fn from_secret_is_deterministic(secret in proptest::collection::vec(any::<u8>(), 0..64)) {
            let fmt = ResponseFormat::Text;
            let input = CacheKeyInput {
                tenant_id: "t", model: "m", messages: &[], temperature: None,
                max_tokens: None, stop: &[], response_format: &fmt,
                tools: &ToolConfig::NONE, sampling: &Sampling::NONE,
            };
            prop_assert_eq!(
                KeyDeriver::from_secret(&secret).derive(&input),
                KeyDeriver::from_secret(&secret).derive(&input)
            );
            prop_assert_ne!(
                KeyDeriver::from_secret(&secret).derive(&input),
                KeyDeriver::default().derive(&input)
            );
        }
    }
}
