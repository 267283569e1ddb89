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
    models: BTreeMap<String, BTreeMap<String, RouteEntry>>,
}

/// One entry of the file: a model id, or a table with what the model takes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RouteEntry {
    Model(String),
    Detailed(DetailedRoute),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetailedRoute {
    model: String,
    #[serde(default = "yes")]
    tools: bool,
    #[serde(default = "yes")]
    vision: bool,
}

fn yes() -> bool {
    true
}

/// The concrete model a provider serves a logical model with, and what that model takes
/// beyond text (the provider's own capabilities bound it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The provider's model id.
    pub model: String,
    /// Whether the model takes tools (default `true`).
    pub tools: bool,
    /// Whether the model takes images (default `true`).
    pub vision: bool,
}

impl Route {
    /// A route to `model` that takes tools and images.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            tools: true,
            vision: true,
        }
    }

    /// Sets whether the model takes tools.
    pub fn tools(mut self, tools: bool) -> Self {
        self.tools = tools;
        self
    }

    /// Sets whether the model takes images.
    pub fn vision(mut self, vision: bool) -> Self {
        self.vision = vision;
        self
    }
}

/// Maps logical model names (`"gpt-4"`) to a concrete model per provider name, and says
/// per model whether it takes tools and images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Router {
    routes: HashMap<String, HashMap<String, Route>>,
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

    /// Parses a table of the form `[models."gpt-4"] bedrock = "…" openai = "gpt-4"`; a
    /// target may also be a table saying what the model takes:
    /// `openai = { model = "gpt-4", vision = false }` (`tools` and `vision` default to
    /// `true`).
    pub fn from_toml_str(text: &str) -> Result<Self, RoutingError> {
        let file: RoutesFile = toml::from_str(text)?;
        let mut router = Self::empty();
        for (logical, targets) in file.models {
            for (provider, entry) in targets {
                let route = match entry {
                    RouteEntry::Model(model) => Route::new(model),
                    RouteEntry::Detailed(detailed) => Route::new(detailed.model)
                        .tools(detailed.tools)
                        .vision(detailed.vision),
                };
                if route.model.trim().is_empty() {
                    return Err(RoutingError::EmptyModel { logical, provider });
                }
                router = router.route_to(&logical, &provider, route);
            }
        }
        Ok(router)
    }

    /// Adds or replaces one route to a model that takes tools and images.
    pub fn route(self, logical: &str, provider: &str, model: impl Into<String>) -> Self {
        self.route_to(logical, provider, Route::new(model))
    }

    /// Adds or replaces one route.
    pub fn route_to(mut self, logical: &str, provider: &str, route: Route) -> Self {
        self.routes
            .entry(logical.to_owned())
            .or_default()
            .insert(provider.to_owned(), route);
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
        self.resolve_route(logical, provider)
            .map(|route| route.model.as_str())
    }

    /// The route `provider` serves `logical` with.
    pub fn resolve_route(&self, logical: &str, provider: &str) -> Option<&Route> {
        self.routes.get(logical)?.get(provider)
    }

    /// Whether any provider serves `logical`.
    pub fn knows(&self, logical: &str) -> bool {
        self.routes
            .get(logical)
            .is_some_and(|targets| !targets.is_empty())
    }

    /// The logical models some provider serves, sorted.
    pub fn logical_models(&self) -> Vec<&str> {
        let mut models: Vec<&str> = self
            .routes
            .iter()
            .filter(|(_, targets)| !targets.is_empty())
            .map(|(logical, _)| logical.as_str())
            .collect();
        models.sort_unstable();
        models
    }

    /// Every (logical, provider, model) triple, sorted.
    pub fn entries(&self) -> Vec<(&str, &str, &str)> {
        let mut entries: Vec<_> = self
            .routes
            .iter()
            .flat_map(|(logical, targets)| {
                targets.iter().map(move |(provider, route)| {
                    (logical.as_str(), provider.as_str(), route.model.as_str())
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
    fn a_target_may_say_what_its_model_takes() {
        let router = Router::from_toml_str(
            "[models.m]\nbedrock = \"b\"\nopenai = { model = \"o\", vision = false }\n",
        )
        .unwrap();
        assert_eq!(router.resolve_route("m", "bedrock"), Some(&Route::new("b")));
        assert_eq!(
            router.resolve_route("m", "openai"),
            Some(&Route::new("o").vision(false))
        );
        assert!(
            Router::from_toml_str("[models.m]\nopenai = { model = \"o\", eyes = 1 }\n").is_err()
        );
        let embedded = Router::embedded();
        assert!(!embedded.resolve_route("gpt-4", "openai").unwrap().vision);
        assert!(embedded.resolve_route("gpt-4o", "openai").unwrap().vision);
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
