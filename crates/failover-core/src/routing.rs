//! Model routing: a logical model name to the concrete model each provider serves it with.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

const EMBEDDED_ROUTES: &str = include_str!("../data/routes.toml");

/// A routing table that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// The TOML does not parse or has the wrong shape.
    #[error("routing table is not valid TOML: {0}")]
    Parse(#[from] toml::de::Error),
    /// An entry names an empty model.
    #[error("routing table entry `{logical}` -> `{provider}` has an empty model id")]
    EmptyModel {
        /// The logical model.
        logical: String,
        /// The provider.
        provider: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    #[serde(default)]
    models: BTreeMap<String, BTreeMap<String, String>>,
}

/// Maps logical model names (`"gpt-4"`) to a concrete model per provider name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Router {
    routes: HashMap<String, HashMap<String, String>>,
}

impl Router {
    /// An empty table.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The table shipped in `data/routes.toml`.
    pub fn embedded() -> Self {
        Self::from_toml_str(EMBEDDED_ROUTES).expect("the embedded routing table is valid")
    }

    /// Parses a table of the form `[models."gpt-4"] bedrock = "…" openai = "gpt-4"`.
    pub fn from_toml_str(text: &str) -> Result<Self, RoutingError> {
        let file: RoutesFile = toml::from_str(text)?;
        let mut router = Self::empty();
        for (logical, targets) in file.models {
            for (provider, model) in targets {
                if model.trim().is_empty() {
                    return Err(RoutingError::EmptyModel { logical, provider });
                }
                router = router.route(&logical, &provider, model);
            }
        }
        Ok(router)
    }

    /// Adds or replaces one route.
    pub fn route(mut self, logical: &str, provider: &str, model: impl Into<String>) -> Self {
        self.routes
            .entry(logical.to_owned())
            .or_default()
            .insert(provider.to_owned(), model.into());
        self
    }

    /// Applies `overrides` on top of this table; their entries win.
    pub fn merge(mut self, overrides: Router) -> Self {
        for (logical, targets) in overrides.routes {
            self.routes.entry(logical).or_default().extend(targets);
        }
        self
    }

    /// The concrete model `provider` serves `logical` with.
    pub fn resolve(&self, logical: &str, provider: &str) -> Option<&str> {
        self.routes.get(logical)?.get(provider).map(String::as_str)
    }

    /// Whether any provider serves `logical`.
    pub fn knows(&self, logical: &str) -> bool {
        self.routes
            .get(logical)
            .is_some_and(|targets| !targets.is_empty())
    }

    /// Every (logical, provider, model) triple, sorted.
    pub fn entries(&self) -> Vec<(&str, &str, &str)> {
        let mut entries: Vec<_> = self
            .routes
            .iter()
            .flat_map(|(logical, targets)| {
                targets.iter().map(move |(provider, model)| {
                    (logical.as_str(), provider.as_str(), model.as_str())
                })
            })
            .collect();
        entries.sort_unstable();
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_routes_gpt4_to_claude_on_bedrock_and_gpt4_on_openai() {
        let router = Router::embedded();
        assert!(
            router
                .resolve("gpt-4", "bedrock")
                .unwrap()
                .contains("anthropic.claude")
        );
        assert_eq!(router.resolve("gpt-4", "openai"), Some("gpt-4"));
        assert_eq!(router.resolve("no-such-model", "openai"), None);
    }

    #[test]
    fn overrides_win_and_keep_other_entries() {
        let router = Router::embedded().merge(Router::empty().route(
            "gpt-4",
            "bedrock",
            "amazon.nova-pro-v1:0",
        ));
        assert_eq!(
            router.resolve("gpt-4", "bedrock"),
            Some("amazon.nova-pro-v1:0")
        );
        assert_eq!(router.resolve("gpt-4", "openai"), Some("gpt-4"));
    }

    #[test]
    fn empty_model_is_rejected_with_its_entry_named() {
        let error = Router::from_toml_str("[models.x]\nbedrock = \" \"\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "routing table entry `x` -> `bedrock` has an empty model id"
        );
    }
}
