//! The tools a request offers and its tool choice.

use std::collections::HashSet;

use failover_provider::{ToolChoice, ToolConfig};

use super::{Limits, ValidationError};

/// Whether `name` is a tool name every provider takes: `^[a-zA-Z0-9_-]{1,64}$` (OpenAI's
/// rule; Bedrock's is the same set).
pub(super) fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks the tools offered: a count within the limit, valid and distinct names, object
/// schemas, and a choice that names an offered tool.
pub(super) fn validate_tools(tools: &ToolConfig, limits: &Limits) -> Result<(), ValidationError> {
    if tools.tools.len() > limits.max_tools {
        return Err(ValidationError::TooManyTools {
            count: tools.tools.len(),
            max: limits.max_tools,
        });
    }
    let mut names = HashSet::with_capacity(tools.tools.len());
    for tool in &tools.tools {
        if !valid_tool_name(&tool.name) {
            return Err(ValidationError::ToolName {
                name: tool.name.clone(),
            });
        }
        if !names.insert(tool.name.as_str()) {
            return Err(ValidationError::DuplicateToolName {
                name: tool.name.clone(),
            });
        }
        if let Some(reason) = schema_problem(&tool.input_schema) {
            return Err(ValidationError::ToolSchema {
                name: tool.name.clone(),
                reason,
            });
        }
    }
    match &tools.choice {
        ToolChoice::Auto | ToolChoice::None => Ok(()),
        choice @ (ToolChoice::Required | ToolChoice::Tool(_)) if tools.tools.is_empty() => {
            Err(ValidationError::ToolChoiceWithoutTools {
                choice: choice.as_str(),
            })
        }
        ToolChoice::Required => Ok(()),
        ToolChoice::Tool(name) if names.contains(name.as_str()) => Ok(()),
        ToolChoice::Tool(name) => Err(ValidationError::ToolChoiceUnknown { name: name.clone() }),
    }
}

/// What keeps `schema` from being a JSON object schema, the shape both providers require
/// for a tool's input: a JSON object with `"type": "object"` and, when present, an object
/// of `properties` and an array of string `required` names.
fn schema_problem(schema: &serde_json::Value) -> Option<&'static str> {
    let Some(schema) = schema.as_object() else {
        return Some("is not a JSON object");
    };
    if schema.get("type").and_then(serde_json::Value::as_str) != Some("object") {
        return Some("must have \"type\": \"object\"");
    }
    if schema
        .get("properties")
        .is_some_and(|properties| !properties.is_object())
    {
        return Some("has `properties` that is not an object");
    }
    if schema.get("required").is_some_and(|required| {
        !required
            .as_array()
            .is_some_and(|names| names.iter().all(serde_json::Value::is_string))
    }) {
        return Some("has `required` that is not an array of names");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_provider::ToolDefinition;
    use serde_json::json;

    fn tool(name: &str) -> ToolDefinition {
        ToolDefinition::new(name, "d", json!({"type": "object", "properties": {}}))
    }

    fn check(tools: Vec<ToolDefinition>, choice: ToolChoice) -> Result<(), ValidationError> {
        validate_tools(
            &ToolConfig {
                tools,
                choice,
                parallel_tool_calls: None,
            },
            &Limits::default(),
        )
    }

    #[test]
    fn names_schemas_and_choices_are_checked() {
        assert_eq!(
            check(vec![tool("a"), tool("b-2_")], ToolChoice::Auto),
            Ok(())
        );
        assert_eq!(
            check(vec![tool("a"), tool("a")], ToolChoice::Auto),
            Err(ValidationError::DuplicateToolName { name: "a".into() })
        );
        for name in ["", "has space", "dot.ted", &"x".repeat(65)] {
            assert_eq!(
                check(vec![tool(name)], ToolChoice::Auto),
                Err(ValidationError::ToolName { name: name.into() }),
                "{name:?}"
            );
        }
        for schema in [
            json!("object"),
            json!({"type": "array"}),
            json!({"properties": {}}),
            json!({"type": "object", "properties": []}),
            json!({"type": "object", "required": "a"}),
        ] {
            let error = check(
                vec![ToolDefinition {
                    input_schema: schema.clone(),
                    ..tool("t")
                }],
                ToolChoice::Auto,
            )
            .unwrap_err();
            assert!(
                matches!(error, ValidationError::ToolSchema { .. }),
                "{schema}: {error}"
            );
        }
        assert_eq!(
            check(vec![tool("a")], ToolChoice::Tool("b".into())),
            Err(ValidationError::ToolChoiceUnknown { name: "b".into() })
        );
        assert_eq!(check(vec![tool("a")], ToolChoice::Tool("a".into())), Ok(()));
        assert_eq!(
            check(Vec::new(), ToolChoice::Required),
            Err(ValidationError::ToolChoiceWithoutTools { choice: "required" })
        );
        assert_eq!(check(Vec::new(), ToolChoice::None), Ok(()));
        let many = (0..129).map(|i| tool(&format!("t{i}"))).collect();
        assert_eq!(
            check(many, ToolChoice::Auto),
            Err(ValidationError::TooManyTools {
                count: 129,
                max: 128
            })
        );
    }
}
