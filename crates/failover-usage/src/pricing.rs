//! Model prices and exact cost.
//!
//! Prices are USD per million tokens, held as [`Decimal`]; no floating point is involved
//! anywhere, including parsing: TOML numbers are read from their source text, not through
//! `f64`.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::OnceLock;

use failover_provider::{TokenUsage, Usd};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The shipped price list (see the file's header for the date and the region).
const EMBEDDED_TOML: &str = include_str!("../pricing.toml");

/// The highest price per million tokens accepted from a file. Far above any real price; it
/// keeps every cost computation of up to `u64::MAX` tokens per class inside `Decimal`'s
/// range.
const MAX_PRICE_PER_MTOK: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

const MTOK: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// The price of one model, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Price of input (prompt) tokens.
    pub input_per_mtok: Decimal,
    /// Price of output (generated) tokens.
    pub output_per_mtok: Decimal,
    /// Price of prompt tokens read from the provider's prompt cache; the input price when
    /// `None`.
    pub cache_read_per_mtok: Option<Decimal>,
    /// Price of prompt tokens written to the provider's prompt cache; the input price when
    /// `None`.
    pub cache_write_per_mtok: Option<Decimal>,
}

impl ModelPrice {
    /// A price without prompt-cache prices (cache tokens cost the input price).
    pub fn new(input_per_mtok: Decimal, output_per_mtok: Decimal) -> Self {
        Self {
            input_per_mtok,
            output_per_mtok,
            cache_read_per_mtok: None,
            cache_write_per_mtok: None,
        }
    }

    /// Sets the prompt-cache read price.
    pub fn with_cache_read(mut self, per_mtok: Decimal) -> Self {
        self.cache_read_per_mtok = Some(per_mtok);
        self
    }

    /// Sets the prompt-cache write price.
    pub fn with_cache_write(mut self, per_mtok: Decimal) -> Self {
        self.cache_write_per_mtok = Some(per_mtok);
        self
    }

    /// The exact cost of `usage`: Σ tokens × price / 1 000 000, normalised.
    ///
    /// `None` only if the amount overflows `Decimal` (about 7.9 × 10²⁸ USD), which prices
    /// read by [`PricingTable::from_toml_str`] cannot reach.
    pub fn cost(&self, usage: &TokenUsage) -> Option<Usd> {
        let input = self.input_per_mtok;
        let terms = [
            (usage.input_tokens, input),
            (usage.output_tokens, self.output_per_mtok),
            (
                usage.cache_read_tokens,
                self.cache_read_per_mtok.unwrap_or(input),
            ),
            (
                usage.cache_write_tokens,
                self.cache_write_per_mtok.unwrap_or(input),
            ),
        ];
        let mut total = Decimal::ZERO;
        for (tokens, price) in terms {
            if tokens == 0 {
                continue;
            }
            total = total.checked_add(Decimal::from(tokens).checked_mul(price)?)?;
        }
        Some(Usd::new(total.checked_div(MTOK)?.normalize()))
    }
}

/// Why a price list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// The text is not TOML.
    #[error("pricing file is not valid TOML: {0}")]
    Syntax(String),
    /// The document's shape is wrong outside any entry.
    #[error("pricing file: {0}")]
    Layout(String),
    /// One entry is wrong.
    #[error("pricing entry {provider}/{model}: {reason}")]
    Entry {
        /// The entry's provider.
        provider: String,
        /// The entry's model.
        model: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Prices keyed by (provider, concrete model).
///
/// # File format
///
/// ```toml
/// [meta]
/// as_of = "2025-06-15"          # optional; any other meta keys are free-form
///
/// [price.openai."gpt-4o"]
/// input_per_mtok = "2.50"       # a string, integer or TOML float; read exactly
/// output_per_mtok = "10.00"
/// cache_read_per_mtok = "1.25"  # optional
/// cache_write_per_mtok = "3.75" # optional
/// ```
///
/// Prices must be between 0 and 1 000 000 000 inclusive; unknown keys are errors, so a
/// typo cannot silently bill at zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PricingTable {
    as_of: Option<String>,
    prices: BTreeMap<String, BTreeMap<String, ModelPrice>>,
}

impl PricingTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The price list shipped in this crate (`pricing.toml`: public on-demand list prices,
    /// Bedrock in us-east-1; the file states its date).
    pub fn embedded() -> Self {
        static EMBEDDED: OnceLock<PricingTable> = OnceLock::new();
        EMBEDDED
            .get_or_init(|| {
                PricingTable::from_toml_str(EMBEDDED_TOML)
                    .expect("the embedded pricing.toml is valid (checked by a unit test)")
            })
            .clone()
    }

    /// The shipped price list's TOML text, e.g. as a template for overrides.
    pub fn embedded_toml() -> &'static str {
        EMBEDDED_TOML
    }

    /// Parses a price list (format above).
    pub fn from_toml_str(text: &str) -> Result<Self, PricingError> {
        let document =
            toml::de::DeTable::parse(text).map_err(|e| PricingError::Syntax(e.to_string()))?;
        let mut table = PricingTable::new();
        for (key, value) in document.get_ref() {
            match key.get_ref().as_ref() {
                "meta" => {
                    let meta = value
                        .get_ref()
                        .as_table()
                        .ok_or_else(|| PricingError::Layout("`meta` must be a table".to_owned()))?;
                    if let Some(as_of) = meta.get("as_of") {
                        table.as_of = Some(match as_of.get_ref() {
                            toml::de::DeValue::String(s) => s.to_string(),
                            toml::de::DeValue::Datetime(d) => d.to_string(),
                            other => {
                                return Err(PricingError::Layout(format!(
                                    "`meta.as_of` must be a date or a string, not a {}",
                                    other.type_str()
                                )));
                            }
                        });
                    }
                }
                "price" => {
                    let providers = value.get_ref().as_table().ok_or_else(|| {
                        PricingError::Layout("`price` must be a table of providers".to_owned())
                    })?;
                    for (provider, models) in providers {
                        let provider = provider.get_ref().as_ref();
                        let models = models.get_ref().as_table().ok_or_else(|| {
                            PricingError::Layout(format!(
                                "`price.{provider}` must be a table of models"
                            ))
                        })?;
                        for (model, entry) in models {
                            let model = model.get_ref().as_ref();
                            let price = parse_entry(entry.get_ref()).map_err(|reason| {
                                PricingError::Entry {
                                    provider: provider.to_owned(),
                                    model: model.to_owned(),
                                    reason,
                                }
                            })?;
                            table.insert(provider, model, price);
                        }
                    }
                }
                other => {
                    return Err(PricingError::Layout(format!(
                        "unknown top-level key `{other}` (expected `meta` or `price`)"
                    )));
                }
            }
        }
        Ok(table)
    }

    /// Adds or replaces one price.
    pub fn insert(
        &mut self,
        provider: impl Into<String>,
        model: impl Into<String>,
        price: ModelPrice,
    ) {
        self.prices
            .entry(provider.into())
            .or_default()
            .insert(model.into(), price);
    }

    /// Merges `overrides` into this table: their entries replace ours, ours without an
    /// override stay. Their `as_of` wins when set.
    pub fn merge(&mut self, overrides: PricingTable) {
        for (provider, models) in overrides.prices {
            let ours = self.prices.entry(provider).or_default();
            for (model, price) in models {
                ours.insert(model, price);
            }
        }
        if overrides.as_of.is_some() {
            self.as_of = overrides.as_of;
        }
    }

    /// The price of a (provider, concrete model), if listed.
    pub fn price(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        self.prices.get(provider)?.get(model)
    }

    /// The exact cost of `usage` on (provider, concrete model); `None` when the model is
    /// not listed (see [`ModelPrice::cost`] for the arithmetic).
    pub fn cost(&self, provider: &str, model: &str, usage: &TokenUsage) -> Option<Usd> {
        self.price(provider, model)?.cost(usage)
    }

    /// The date the prices were taken, when the file states it.
    pub fn as_of(&self) -> Option<&str> {
        self.as_of.as_deref()
    }

    /// Every entry as (provider, model, price), sorted by provider then model.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &ModelPrice)> + '_ {
        self.prices.iter().flat_map(|(provider, models)| {
            models
                .iter()
                .map(move |(model, price)| (provider.as_str(), model.as_str(), price))
        })
    }

    /// Number of priced models.
    pub fn len(&self) -> usize {
        self.prices.values().map(BTreeMap::len).sum()
    }

    /// Whether no model is priced.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FromStr for PricingTable {
    type Err = PricingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_toml_str(text)
    }
}

fn parse_entry(value: &toml::de::DeValue<'_>) -> Result<ModelPrice, String> {
    let fields = value
        .as_table()
        .ok_or_else(|| format!("must be a table, not a {}", value.type_str()))?;
    let mut input = None;
    let mut output = None;
    let mut cache_read = None;
    let mut cache_write = None;
    for (key, value) in fields {
        let key = key.get_ref().as_ref();
        let slot = match key {
            "input_per_mtok" => &mut input,
            "output_per_mtok" => &mut output,
            "cache_read_per_mtok" => &mut cache_read,
            "cache_write_per_mtok" => &mut cache_write,
            other => return Err(format!("unknown field `{other}`")),
        };
        *slot = Some(parse_price(value.get_ref()).map_err(|e| format!("`{key}`: {e}"))?);
    }
    Ok(ModelPrice {
        input_per_mtok: input.ok_or("missing `input_per_mtok`")?,
        output_per_mtok: output.ok_or("missing `output_per_mtok`")?,
        cache_read_per_mtok: cache_read,
        cache_write_per_mtok: cache_write,
    })
}

/// Reads a price exactly from a TOML string, integer or float (by its source text).
fn parse_price(value: &toml::de::DeValue<'_>) -> Result<Decimal, String> {
    use toml::de::DeValue;
    let parsed = match value {
        DeValue::String(text) => parse_decimal_text(text.trim()),
        DeValue::Integer(int) if int.radix() == 10 => parse_decimal_text(int.as_str()),
        DeValue::Float(float) => parse_decimal_text(float.as_str()),
        other => Err(format!(
            "must be a decimal number or a string, not a {}",
            other.type_str()
        )),
    }?;
    if parsed.is_sign_negative() && !parsed.is_zero() {
        return Err(format!("negative price {parsed}"));
    }
    if parsed > MAX_PRICE_PER_MTOK {
        return Err(format!(
            "price {parsed} per million tokens is above the limit {MAX_PRICE_PER_MTOK}"
        ));
    }
    Ok(parsed.normalize())
}

fn parse_decimal_text(text: &str) -> Result<Decimal, String> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let result = if cleaned.contains(['e', 'E']) {
        Decimal::from_scientific(&cleaned)
    } else {
        Decimal::from_str_exact(&cleaned)
    };
    result.map_err(|e| format!("`{text}` is not an exact decimal ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    fn usd(text: &str) -> Usd {
        Usd::new(Decimal::from_str_exact(text).unwrap())
    }

    #[test]
    fn embedded_table_parses_and_every_price_is_positive() {
        let table = PricingTable::from_toml_str(EMBEDDED_TOML).unwrap();
        assert_eq!(table, PricingTable::embedded());
        assert!(table.as_of().is_some(), "the file states its date");
        assert!(table.len() >= 18, "{}", table.len());
        for (provider, model, price) in table.iter() {
            let all = [
                Some(price.input_per_mtok),
                Some(price.output_per_mtok),
                price.cache_read_per_mtok,
                price.cache_write_per_mtok,
            ];
            for p in all.into_iter().flatten() {
                assert!(p > Decimal::ZERO, "{provider}/{model}: {p}");
            }
            assert!(
                price.output_per_mtok >= price.input_per_mtok,
                "{provider}/{model}: output cheaper than input?"
            );
            if let Some(read) = price.cache_read_per_mtok {
                assert!(read < price.input_per_mtok, "{provider}/{model}");
            }
        }
    }

    #[test]
    fn embedded_table_has_the_required_models() {
        let table = PricingTable::embedded();
        let expect = [
            (
                "bedrock",
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                "3",
                "15",
                None,
                None,
            ),
            (
                "bedrock",
                "anthropic.claude-3-5-sonnet-20241022-v2:0",
                "3",
                "15",
                None,
                None,
            ),
            (
                "bedrock",
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                "3",
                "15",
                Some("0.30"),
                Some("3.75"),
            ),
            (
                "bedrock",
                "us.anthropic.claude-sonnet-4-20250514-v1:0",
                "3",
                "15",
                Some("0.30"),
                Some("3.75"),
            ),
            (
                "bedrock",
                "anthropic.claude-3-haiku-20240307-v1:0",
                "0.25",
                "1.25",
                None,
                None,
            ),
            (
                "bedrock",
                "anthropic.claude-3-5-haiku-20241022-v1:0",
                "0.80",
                "4",
                Some("0.08"),
                Some("1"),
            ),
            (
                "bedrock",
                "anthropic.claude-3-sonnet-20240229-v1:0",
                "3",
                "15",
                None,
                None,
            ),
            (
                "bedrock",
                "amazon.nova-pro-v1:0",
                "0.80",
                "3.20",
                None,
                None,
            ),
            (
                "bedrock",
                "amazon.nova-lite-v1:0",
                "0.06",
                "0.24",
                None,
                None,
            ),
            (
                "bedrock",
                "amazon.nova-micro-v1:0",
                "0.035",
                "0.14",
                None,
                None,
            ),
            ("openai", "gpt-4", "30", "60", None, None),
            ("openai", "gpt-4-turbo", "10", "30", None, None),
            ("openai", "gpt-3.5-turbo", "0.50", "1.50", None, None),
            ("openai", "gpt-4o", "2.50", "10", Some("1.25"), None),
            ("openai", "gpt-4o-mini", "0.15", "0.60", Some("0.075"), None),
            ("openai", "gpt-4.1", "2", "8", Some("0.50"), None),
            ("openai", "gpt-4.1-mini", "0.40", "1.60", Some("0.10"), None),
            ("openai", "o3-mini", "1.10", "4.40", Some("0.55"), None),
        ];
        let d = |s: &str| Decimal::from_str_exact(s).unwrap();
        for (provider, model, input, output, read, write) in expect {
            let price = table
                .price(provider, model)
                .unwrap_or_else(|| panic!("{provider}/{model} missing"));
            assert_eq!(price.input_per_mtok, d(input), "{model}");
            assert_eq!(price.output_per_mtok, d(output), "{model}");
            assert_eq!(price.cache_read_per_mtok, read.map(d), "{model}");
            assert_eq!(price.cache_write_per_mtok, write.map(d), "{model}");
        }
    }

    #[test]
    fn cost_is_exact() {
        let table = PricingTable::embedded();
        assert_eq!(
            table.cost("openai", "gpt-4", &TokenUsage::new(1_000, 500)),
            Some(usd("0.06"))
        );
        assert_eq!(
            table
                .cost("openai", "gpt-4", &TokenUsage::new(1_000, 500))
                .unwrap()
                .to_string(),
            "$0.06"
        );
        // 1 token of Nova Micro input: 0.035 / 1e6.
        assert_eq!(
            table.cost("bedrock", "amazon.nova-micro-v1:0", &TokenUsage::new(1, 0)),
            Some(usd("0.000000035"))
        );
        assert_eq!(
            table.cost("openai", "gpt-4o", &TokenUsage::default()),
            Some(Usd::ZERO)
        );
    }

    #[test]
    fn cache_tokens_use_cache_prices_or_fall_back_to_input() {
        let table = PricingTable::embedded();
        let usage = TokenUsage {
            input_tokens: 1_000,
            output_tokens: 1_000,
            cache_read_tokens: 10_000,
            cache_write_tokens: 2_000,
        };
        // Claude 3.7 Sonnet: 1000×3 + 1000×15 + 10000×0.30 + 2000×3.75 = 28 500 / 1e6.
        assert_eq!(
            table.cost(
                "bedrock",
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                &usage
            ),
            Some(usd("0.0285"))
        );
        // gpt-4o: no write price → input price. 1000×2.5 + 1000×10 + 10000×1.25 + 2000×2.5.
        assert_eq!(table.cost("openai", "gpt-4o", &usage), Some(usd("0.03")));
        // gpt-4: no cache prices at all → 13 000 × 30 + 1 000 × 60.
        assert_eq!(table.cost("openai", "gpt-4", &usage), Some(usd("0.45")));
    }

    #[test]
    fn unknown_models_and_providers_have_no_cost() {
        let table = PricingTable::embedded();
        let usage = TokenUsage::new(1, 1);
        assert_eq!(table.cost("openai", "gpt-17", &usage), None);
        assert_eq!(table.cost("azure", "gpt-4", &usage), None);
        assert_eq!(table.cost("bedrock", "gpt-4", &usage), None, "per provider");
    }

    #[test]
    fn overrides_win_and_the_rest_stays() {
        let mut table = PricingTable::embedded();
        let before = table.len();
        let overrides = PricingTable::from_toml_str(
            r#"
            [meta]
            as_of = 2030-01-01
            [price.openai."gpt-4"]
            input_per_mtok = 1
            output_per_mtok = 2.5
            [price.local."llama"]
            input_per_mtok = "0"
            output_per_mtok = "0"
            "#,
        )
        .unwrap();
        table.merge(overrides);
        assert_eq!(table.len(), before + 1);
        assert_eq!(table.as_of(), Some("2030-01-01"));
        assert_eq!(
            table.price("openai", "gpt-4"),
            Some(&ModelPrice::new(dec("1"), dec("2.5")))
        );
        assert_eq!(
            table.cost("openai", "gpt-4", &TokenUsage::new(1_000_000, 1_000_000)),
            Some(usd("3.5"))
        );
        assert_eq!(
            table.cost("local", "llama", &TokenUsage::new(5, 5)),
            Some(Usd::ZERO)
        );
        assert!(table.price("openai", "gpt-4o").is_some(), "untouched");
    }

    #[test]
    fn floats_are_read_from_their_text_exactly() {
        let table = PricingTable::from_toml_str(
            r#"
            [price.p.m]
            input_per_mtok = 0.1
            output_per_mtok = 0.000_000_3
            cache_read_per_mtok = 1e-2
            cache_write_per_mtok = 12_345
            "#,
        )
        .unwrap();
        let price = table.price("p", "m").unwrap();
        assert_eq!(price.input_per_mtok, dec("0.1"));
        assert_eq!(price.output_per_mtok, dec("0.0000003"));
        assert_eq!(price.cache_read_per_mtok, Some(dec("0.01")));
        assert_eq!(price.cache_write_per_mtok, Some(dec("12345")));
    }

    fn entry_error(text: &str) -> (String, String, String) {
        match PricingTable::from_toml_str(text) {
            Err(PricingError::Entry {
                provider,
                model,
                reason,
            }) => (provider, model, reason),
            other => panic!("expected an entry error, got {other:?}"),
        }
    }

    #[test]
    fn bad_entries_are_typed_errors_naming_the_entry() {
        let (provider, model, reason) = entry_error(
            r#"
            [price.openai."gpt-4o"]
            input_per_mtok = "-2.50"
            output_per_mtok = "10"
            "#,
        );
        assert_eq!((provider.as_str(), model.as_str()), ("openai", "gpt-4o"));
        assert!(reason.contains("negative"), "{reason}");

        let (_, model, reason) = entry_error(
            r#"
            [price.bedrock."amazon.nova-pro-v1:0"]
            input_per_mtok = "0.8"
            output_per_mtk = "3.2"
            "#,
        );
        assert_eq!(model, "amazon.nova-pro-v1:0");
        assert!(reason.contains("output_per_mtk"), "{reason}");

        let (_, _, reason) = entry_error("[price.a.b]\ninput_per_mtok = 1\n");
        assert!(reason.contains("missing `output_per_mtok`"), "{reason}");

        let (_, _, reason) =
            entry_error("[price.a.b]\ninput_per_mtok = \"abc\"\noutput_per_mtok = 1\n");
        assert!(reason.contains("input_per_mtok"), "{reason}");

        let (_, _, reason) =
            entry_error("[price.a.b]\ninput_per_mtok = true\noutput_per_mtok = 1\n");
        assert!(reason.contains("boolean"), "{reason}");

        let (_, _, reason) =
            entry_error("[price.a.b]\ninput_per_mtok = inf\noutput_per_mtok = 1\n");
        assert!(reason.contains("inf"), "{reason}");

        let (_, _, reason) =
            entry_error("[price.a.b]\ninput_per_mtok = 1e12\noutput_per_mtok = 1\n");
        assert!(reason.contains("limit"), "{reason}");

        let error = PricingTable::from_toml_str(
            "[price.openai.\"gpt-4\"]\ninput_per_mtok = -1\noutput_per_mtok = 1\n",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "pricing entry openai/gpt-4: `input_per_mtok`: negative price -1"
        );
    }

    #[test]
    fn bad_documents_are_typed_errors() {
        assert!(matches!(
            PricingTable::from_toml_str("this is = = not toml"),
            Err(PricingError::Syntax(_))
        ));
        assert!(matches!(
            PricingTable::from_toml_str("[prices.openai.gpt-4]\ninput_per_mtok = 1\n"),
            Err(PricingError::Layout(_))
        ));
        assert!(matches!(
            PricingTable::from_toml_str("price = 3\n"),
            Err(PricingError::Layout(_))
        ));
    }

    #[test]
    fn largest_accepted_prices_never_overflow() {
        let max = ModelPrice::new(MAX_PRICE_PER_MTOK, MAX_PRICE_PER_MTOK)
            .with_cache_read(MAX_PRICE_PER_MTOK)
            .with_cache_write(MAX_PRICE_PER_MTOK);
        let usage = TokenUsage {
            input_tokens: u64::MAX,
            output_tokens: u64::MAX,
            cache_read_tokens: u64::MAX,
            cache_write_tokens: u64::MAX,
        };
        assert!(max.cost(&usage).is_some());
    }
}
