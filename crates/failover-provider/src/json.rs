//! The JSON-mode contract every provider enforces on its answers.

use std::sync::Arc;

use crate::error::{ErrorKind, ProviderError};
use crate::request::ResponseFormat;

/// Longest schema-violation detail kept in an error message (a violation can quote a large
/// part of the answer).
const MAX_DETAIL_BYTES: usize = 512;

/// What JSON-mode content must be: valid JSON, an object, and matching the request's JSON
/// Schema when one was given. Providers check every JSON-mode answer against it, so content
/// that breaks the contract is a [`ErrorKind::MalformedResponse`], never returned as if it
/// were fine.
#[derive(Debug, Clone)]
pub struct JsonContract {
    validator: Option<Arc<jsonschema::Validator>>,
}

impl JsonContract {
    /// Any JSON object.
    pub fn object() -> Self {
        Self { validator: None }
    }

    /// A JSON object matching `schema`. An invalid schema is the caller's mistake
    /// ([`ErrorKind::InvalidRequest`]), found before anything is sent.
    pub fn schema(schema: &serde_json::Value) -> Result<Self, ProviderError> {
        let validator = jsonschema::validator_for(schema).map_err(|error| {
            ProviderError::new(
                ErrorKind::InvalidRequest,
                format!("the JSON schema of the request is invalid: {error}"),
            )
        })?;
        Ok(Self {
            validator: Some(Arc::new(validator)),
        })
    }

    /// The contract of `format`; `None` for text.
    pub fn for_format(format: &ResponseFormat) -> Result<Option<Self>, ProviderError> {
        match format {
            ResponseFormat::Text => Ok(None),
            ResponseFormat::JsonObject => Ok(Some(Self::object())),
            ResponseFormat::JsonSchema { schema, .. } => Self::schema(schema).map(Some),
        }
    }

    /// Checks a parsed value: an object, matching the schema.
    pub fn check_value(&self, value: &serde_json::Value) -> Result<(), ProviderError> {
        if !value.is_object() {
            return Err(malformed("JSON mode content is not a JSON object".into()));
        }
        if let Some(validator) = &self.validator
            && let Err(error) = validator.validate(value)
        {
            return Err(malformed(format!(
                "JSON mode content does not match the schema at `{}`: {}",
                error.instance_path(),
                truncate(&error.to_string())
            )));
        }
        Ok(())
    }

    /// Parses and checks text.
    pub fn check_text(&self, text: &str) -> Result<(), ProviderError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|error| malformed(format!("JSON mode content is not valid JSON: {error}")))?;
        self.check_value(&value)
    }
}

fn malformed(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::MalformedResponse, message)
}

fn truncate(message: &str) -> String {
    if message.len() <= MAX_DETAIL_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_DETAIL_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_pass_and_everything_else_is_malformed() {
        let contract = JsonContract::object();
        assert!(contract.check_text(r#"{"a": 1}"#).is_ok());
        for bad in ["[1]", "4", "not json", ""] {
            assert_eq!(
                contract.check_text(bad).unwrap_err().kind(),
                ErrorKind::MalformedResponse,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_schema_is_enforced_and_an_invalid_schema_is_the_callers_mistake() {
        let schema = serde_json::json!({"type": "object", "required": ["answer"],
            "properties": {"answer": {"type": "integer"}}});
        let contract = JsonContract::schema(&schema).unwrap();
        assert!(contract.check_text(r#"{"answer": 4}"#).is_ok());
        let error = contract.check_text(r#"{"answer": "four"}"#).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MalformedResponse);
        assert!(
            error
                .message()
                .contains("does not match the schema at `/answer`"),
            "{error}"
        );
        let invalid = serde_json::json!({"type": 12});
        assert_eq!(
            JsonContract::schema(&invalid).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        assert!(
            JsonContract::for_format(&ResponseFormat::Text)
                .unwrap()
                .is_none()
        );
    }
}
