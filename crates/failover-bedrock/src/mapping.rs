//! Pure mapping between this workspace's types and Bedrock Converse shapes: no I/O, tested
//! on fixtures.
//!
//! - [`to_converse`]: a [`ProviderRequest`] → messages, system blocks, inference
//!   configuration, and the JSON-mode tool or output configuration.
//! - [`from_converse`]: a `Converse` answer → content, [`FinishReason`] and [`TokenUsage`],
//!   with JSON-mode content validated.

use std::collections::HashMap;

use aws_sdk_bedrockruntime::operation::converse::ConverseOutput as ConverseResponse;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput, InferenceConfiguration, JsonSchemaDefinition,
    Message as BedrockMessage, OutputConfig, OutputFormat, OutputFormatStructure, OutputFormatType,
    SpecificToolChoice, StopReason, SystemContentBlock, Tool, ToolChoice, ToolConfiguration,
    ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::{Document, Number};
use failover_provider::{
    ErrorKind, FinishReason, JsonContract, Message, ProviderError, ProviderRequest, ResponseFormat,
    Role, TokenUsage,
};

use crate::config::JsonModeConfig;

/// The name of the tool that carries JSON-mode answers when the schema names none.
pub const JSON_TOOL_NAME: &str = "json_response";

/// The user turn put before a conversation whose first turn is the assistant's: Converse
/// requires the first message to be the user's.
pub const LEADING_USER_TURN: &str = "(start of conversation)";

/// How a request's response format is obtained from Bedrock, and how the answer is checked.
#[derive(Debug, Clone)]
pub enum JsonPlan {
    /// Free text: no JSON contract.
    Text,
    /// JSON emulated with a forced tool: the tool's input is the content.
    ForcedTool {
        /// The tool the model is forced to call.
        tool_name: String,
        /// The contract the content must meet.
        contract: JsonContract,
    },
    /// Native structured output (`outputConfig.textFormat`): the text is the content.
    Native {
        /// The contract the content must meet.
        contract: JsonContract,
    },
}

impl JsonPlan {
    /// The contract to check, when the format is JSON.
    pub fn contract(&self) -> Option<&JsonContract> {
        match self {
            JsonPlan::Text => None,
            JsonPlan::ForcedTool { contract, .. } | JsonPlan::Native { contract } => Some(contract),
        }
    }
}

/// A [`ProviderRequest`] in Converse shapes, ready for either operation.
#[derive(Debug, Clone)]
pub struct ConverseRequest {
    /// The model id (`anthropic.…`, an inference profile `us.anthropic.…`, or an ARN).
    pub model_id: String,
    /// The conversation; the first message is the user's.
    pub messages: Vec<BedrockMessage>,
    /// System prompts.
    pub system: Vec<SystemContentBlock>,
    /// Temperature, max tokens, stop sequences; `None` when all are the model's defaults.
    pub inference: Option<InferenceConfiguration>,
    /// The forced JSON tool, in emulated JSON mode.
    pub tool_config: Option<ToolConfiguration>,
    /// Native structured output, where configured.
    pub output_config: Option<OutputConfig>,
    /// How the answer is read and checked.
    pub plan: JsonPlan,
}

fn build_error(what: &str, error: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(
        ErrorKind::InvalidRequest,
        format!("cannot build the Bedrock {what}: {error}"),
    )
}

/// Maps messages to Converse messages and system blocks.
///
/// System messages become system blocks, in order, wherever they stand. Consecutive turns of
/// the same role are merged into one message of several text blocks (Converse requires
/// alternating roles). A conversation that opens with the assistant gets a
/// [`LEADING_USER_TURN`] first. Blank turns are dropped (Converse rejects blank text).
pub fn map_messages(
    messages: &[Message],
) -> Result<(Vec<SystemContentBlock>, Vec<BedrockMessage>), ProviderError> {
    let mut system = Vec::new();
    let mut turns: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();
    for message in messages {
        if message.is_blank() {
            continue;
        }
        let role = match message.role {
            Role::System => {
                system.push(SystemContentBlock::Text(message.text()));
                continue;
            }
            Role::User | Role::Tool => ConversationRole::User,
            Role::Assistant => ConversationRole::Assistant,
        };
        let block = ContentBlock::Text(message.text());
        match turns.last_mut() {
            Some((last, blocks)) if *last == role => blocks.push(block),
            _ => turns.push((role, vec![block])),
        }
    }
    match turns.first() {
        None => {
            return Err(ProviderError::new(
                ErrorKind::InvalidRequest,
                "Bedrock needs at least one user or assistant message",
            ));
        }
        Some((ConversationRole::Assistant, _)) => turns.insert(
            0,
            (
                ConversationRole::User,
                vec![ContentBlock::Text(LEADING_USER_TURN.to_owned())],
            ),
        ),
        Some(_) => {}
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| {
            BedrockMessage::builder()
                .role(role)
                .set_content(Some(content))
                .build()
                .map_err(|error| build_error("message", error))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((system, messages))
}

/// Maps temperature, max tokens and stop sequences. Bedrock's models take temperatures in
/// `0..=1`: higher values (OpenAI allows up to 2) are clamped to 1.
pub fn map_inference(request: &ProviderRequest) -> Option<InferenceConfiguration> {
    if request.temperature.is_none() && request.max_tokens.is_none() && request.stop.is_empty() {
        return None;
    }
    let stop = (!request.stop.is_empty()).then(|| request.stop.clone());
    Some(
        InferenceConfiguration::builder()
            .set_max_tokens(
                request
                    .max_tokens
                    .map(|tokens| i32::try_from(tokens).unwrap_or(i32::MAX)),
            )
            .set_temperature(request.temperature.map(|t| t.clamp(0.0, 1.0)))
            .set_stop_sequences(stop)
            .build(),
    )
}

/// A tool name Bedrock accepts (`[a-zA-Z0-9_-]{1,64}`), from a schema's name.
fn tool_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect();
    if cleaned.is_empty() {
        JSON_TOOL_NAME.to_owned()
    } else {
        cleaned
    }
}

fn forced_tool(name: &str, schema: &serde_json::Value) -> Result<ToolConfiguration, ProviderError> {
    let spec = ToolSpecification::builder()
        .name(name)
        .description(
            "Reply by calling this tool. Its input is the whole answer, as JSON matching the \
             input schema.",
        )
        .input_schema(ToolInputSchema::Json(json_to_document(schema)))
        .build()
        .map_err(|error| build_error("JSON tool", error))?;
    let choice = SpecificToolChoice::builder()
        .name(name)
        .build()
        .map_err(|error| build_error("tool choice", error))?;
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(spec))
        .tool_choice(ToolChoice::Tool(choice))
        .build()
        .map_err(|error| build_error("tool configuration", error))
}

fn native_output(name: &str, schema: &serde_json::Value) -> Result<OutputConfig, ProviderError> {
    let definition = JsonSchemaDefinition::builder()
        .schema(schema.to_string())
        .name(name)
        .build()
        .map_err(|error| build_error("JSON schema definition", error))?;
    let format = OutputFormat::builder()
        .r#type(OutputFormatType::JsonSchema)
        .structure(OutputFormatStructure::JsonSchema(definition))
        .build()
        .map_err(|error| build_error("output format", error))?;
    Ok(OutputConfig::builder().text_format(format).build())
}

/// Maps a whole request.
///
/// JSON modes: `JsonObject` always, and `JsonSchema` for models not listed in
/// [`JsonModeConfig::native_structured_output`], use a forced tool whose input schema is the
/// requested schema (`{"type": "object"}` for `JsonObject`); listed models get native
/// structured output. Either way the answer is checked against a [`JsonContract`].
pub fn to_converse(
    request: &ProviderRequest,
    json: &JsonModeConfig,
) -> Result<ConverseRequest, ProviderError> {
    let (system, messages) = map_messages(&request.messages)?;
    let mut tool_config = None;
    let mut output_config = None;
    let plan = match &request.response_format {
        ResponseFormat::Text => JsonPlan::Text,
        ResponseFormat::JsonObject => {
            let schema = serde_json::json!({"type": "object"});
            tool_config = Some(forced_tool(JSON_TOOL_NAME, &schema)?);
            JsonPlan::ForcedTool {
                tool_name: JSON_TOOL_NAME.to_owned(),
                contract: JsonContract::object(),
            }
        }
        ResponseFormat::JsonSchema { name, schema } => {
            let contract = JsonContract::schema(schema)?;
            let name = tool_name(name);
            if json.is_native(&request.model) {
                output_config = Some(native_output(&name, schema)?);
                JsonPlan::Native { contract }
            } else {
                if let Some(kind) = schema.get("type")
                    && kind != "object"
                {
                    return Err(ProviderError::new(
                        ErrorKind::InvalidRequest,
                        format!(
                            "Bedrock JSON mode needs an object schema (a tool input), not type \
                             {kind}"
                        ),
                    ));
                }
                tool_config = Some(forced_tool(&name, schema)?);
                JsonPlan::ForcedTool {
                    tool_name: name,
                    contract,
                }
            }
        }
    };
    Ok(ConverseRequest {
        model_id: request.model.clone(),
        messages,
        system,
        inference: map_inference(request),
        tool_config,
        output_config,
        plan,
    })
}

/// Maps a stop reason. `tool_use` in forced-tool JSON mode is the normal end and reads as
/// [`FinishReason::Stop`].
pub fn map_stop_reason(reason: &StopReason, plan: &JsonPlan) -> FinishReason {
    match reason {
        StopReason::EndTurn => FinishReason::Stop,
        StopReason::ToolUse if matches!(plan, JsonPlan::ForcedTool { .. }) => FinishReason::Stop,
        StopReason::ToolUse => FinishReason::ToolUse,
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => FinishReason::Length,
        StopReason::StopSequence => FinishReason::StopSequence,
        StopReason::GuardrailIntervened | StopReason::ContentFiltered => {
            FinishReason::ContentFilter
        }
        other => FinishReason::Other(other.as_str().to_owned()),
    }
}

/// The error a stop reason stands for, if any: the model produced malformed output, or (in
/// JSON mode, where a partial answer is no answer) a filter cut it or it ran out of tokens.
pub fn stop_reason_error(reason: &StopReason, plan: &JsonPlan) -> Option<ProviderError> {
    let code = reason.as_str().to_owned();
    let error = match reason {
        StopReason::MalformedModelOutput | StopReason::MalformedToolUse => ProviderError::new(
            ErrorKind::MalformedResponse,
            format!("Bedrock stopped with {code}"),
        ),
        StopReason::GuardrailIntervened | StopReason::ContentFiltered
            if plan.contract().is_some() =>
        {
            ProviderError::new(
                ErrorKind::ContentFiltered,
                format!("Bedrock stopped with {code}"),
            )
        }
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded
            if plan.contract().is_some() =>
        {
            ProviderError::new(
                ErrorKind::MalformedResponse,
                format!("JSON mode answer cut short: Bedrock stopped with {code}"),
            )
        }
        _ => return None,
    };
    Some(error.with_provider_code(code))
}

fn count(tokens: i32) -> u64 {
    u64::try_from(tokens).unwrap_or(0)
}

/// Maps Bedrock's usage. Bedrock's `inputTokens` excludes prompt-cache reads and writes,
/// which are reported (and billed) separately.
pub fn map_usage(usage: &aws_sdk_bedrockruntime::types::TokenUsage) -> TokenUsage {
    TokenUsage {
        input_tokens: count(usage.input_tokens),
        output_tokens: count(usage.output_tokens),
        cache_read_tokens: usage.cache_read_input_tokens.map(count).unwrap_or(0),
        cache_write_tokens: usage.cache_write_input_tokens.map(count).unwrap_or(0),
    }
}

/// The content, finish reason and usage of a `Converse` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConverseAnswer {
    /// The content (in JSON mode, checked JSON).
    pub content: String,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Tokens, zero when Bedrock reported none.
    pub usage: TokenUsage,
}

/// Reads a `Converse` answer according to `plan`.
pub fn from_converse(
    response: &ConverseResponse,
    plan: &JsonPlan,
) -> Result<ConverseAnswer, ProviderError> {
    if let Some(error) = stop_reason_error(&response.stop_reason, plan) {
        return Err(error);
    }
    let blocks: &[ContentBlock] = match &response.output {
        Some(ConverseOutput::Message(message)) => &message.content,
        _ => {
            return Err(ProviderError::new(
                ErrorKind::MalformedResponse,
                "Bedrock's answer has no message",
            ));
        }
    };
    let text: String = blocks
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let content = match plan {
        JsonPlan::Text => text,
        JsonPlan::Native { contract } => {
            contract.check_text(&text)?;
            text
        }
        JsonPlan::ForcedTool {
            tool_name,
            contract,
        } => {
            let tool_input = blocks.iter().find_map(|block| match block {
                ContentBlock::ToolUse(tool) if tool.name == *tool_name => Some(&tool.input),
                _ => None,
            });
            match tool_input {
                Some(input) => {
                    let value = document_to_json(input);
                    contract.check_value(&value)?;
                    value.to_string()
                }
                // A model that answered in text instead: acceptable only if the text
                // itself meets the contract.
                None => {
                    contract.check_text(text.trim()).map_err(|error| {
                        ProviderError::new(
                            error.kind(),
                            format!(
                                "Bedrock did not call the JSON tool `{tool_name}`, and its \
                                 text is no substitute: {}",
                                error.message()
                            ),
                        )
                    })?;
                    text.trim().to_owned()
                }
            }
        }
    };
    Ok(ConverseAnswer {
        content,
        finish_reason: map_stop_reason(&response.stop_reason, plan),
        usage: response.usage.as_ref().map(map_usage).unwrap_or_default(),
    })
}

/// A JSON value as a Smithy document.
pub fn json_to_document(value: &serde_json::Value) -> Document {
    match value {
        serde_json::Value::Null => Document::Null,
        serde_json::Value::Bool(b) => Document::Bool(*b),
        serde_json::Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(f64::NAN))
        }),
        serde_json::Value::String(s) => Document::String(s.clone()),
        serde_json::Value::Array(items) => {
            Document::Array(items.iter().map(json_to_document).collect())
        }
        serde_json::Value::Object(map) => Document::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), json_to_document(value)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// A Smithy document as a JSON value (object keys sorted).
pub fn document_to_json(document: &Document) -> serde_json::Value {
    match document {
        Document::Null => serde_json::Value::Null,
        Document::Bool(b) => serde_json::Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => serde_json::Value::from(*u),
        Document::Number(Number::NegInt(i)) => serde_json::Value::from(*i),
        Document::Number(Number::Float(f)) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Document::String(s) => serde_json::Value::String(s.clone()),
        Document::Array(items) => {
            serde_json::Value::Array(items.iter().map(document_to_json).collect())
        }
        Document::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.clone(), document_to_json(value)))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::ToolUseBlock;
    use failover_provider::RequestId;

    fn request(messages: Vec<Message>) -> ProviderRequest {
        ProviderRequest {
            request_id: RequestId::new("r"),
            model: "us.anthropic.claude-3-7-sonnet-20250219-v1:0".into(),
            messages,
            temperature: None,
            max_tokens: None,
            stop: Vec::new(),
            response_format: ResponseFormat::Text,
            tools: Default::default(),
            sampling: Default::default(),
            deadline: None,
            attempt_deadline: None,
        }
    }

    fn texts(message: &BedrockMessage) -> Vec<&str> {
        message
            .content
            .iter()
            .map(|block| block.as_text().unwrap().as_str())
            .collect()
    }

    fn response(
        blocks: Vec<ContentBlock>,
        stop: StopReason,
        usage: Option<aws_sdk_bedrockruntime::types::TokenUsage>,
    ) -> ConverseResponse {
        ConverseResponse::builder()
            .output(ConverseOutput::Message(
                BedrockMessage::builder()
                    .role(ConversationRole::Assistant)
                    .set_content(Some(blocks))
                    .build()
                    .unwrap(),
            ))
            .stop_reason(stop)
            .set_usage(usage)
            .build()
            .unwrap()
    }

    fn usage(input: i32, output: i32) -> aws_sdk_bedrockruntime::types::TokenUsage {
        aws_sdk_bedrockruntime::types::TokenUsage::builder()
            .input_tokens(input)
            .output_tokens(output)
            .total_tokens(input + output)
            .build()
            .unwrap()
    }

    fn tool_use(name: &str, input: serde_json::Value) -> ContentBlock {
        ContentBlock::ToolUse(
            ToolUseBlock::builder()
                .tool_use_id("t1")
                .name(name)
                .input(json_to_document(&input))
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn system_messages_become_system_blocks_and_same_role_turns_merge() {
        let (system, messages) = map_messages(&[
            Message::system("be brief"),
            Message::user("hi"),
            Message::user("there"),
            Message::assistant("hello"),
            Message::system("and polite"),
            Message::user("2+2?"),
        ])
        .unwrap();
        assert_eq!(
            system,
            vec![
                SystemContentBlock::Text("be brief".into()),
                SystemContentBlock::Text("and polite".into())
            ]
        );
        let roles: Vec<_> = messages.iter().map(|m| m.role.clone()).collect();
        assert_eq!(
            roles,
            vec![
                ConversationRole::User,
                ConversationRole::Assistant,
                ConversationRole::User
            ]
        );
        assert_eq!(texts(&messages[0]), vec!["hi", "there"]);
        assert_eq!(texts(&messages[2]), vec!["2+2?"]);
    }

    #[test]
    fn a_conversation_opening_with_the_assistant_gets_a_user_turn_first() {
        let (_, messages) =
            map_messages(&[Message::assistant("How can I help?"), Message::user("2+2?")]).unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].role, ConversationRole::User);
        assert_eq!(texts(&messages[0]), vec![LEADING_USER_TURN]);
        assert_eq!(messages[1].role, ConversationRole::Assistant);
    }

    #[test]
    fn a_conversation_of_system_prompts_only_is_invalid() {
        let error = map_messages(&[Message::system("x"), Message::user("  ")]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn inference_parameters_map_and_temperature_is_clamped() {
        let mut req = request(vec![Message::user("q")]);
        assert!(map_inference(&req).is_none());
        req.temperature = Some(1.7);
        req.max_tokens = Some(10);
        req.stop = vec!["\n\n".into()];
        let config = map_inference(&req).unwrap();
        assert_eq!(config.temperature, Some(1.0));
        assert_eq!(config.max_tokens, Some(10));
        assert_eq!(config.stop_sequences, Some(vec!["\n\n".to_owned()]));
        req.max_tokens = Some(u32::MAX);
        assert_eq!(map_inference(&req).unwrap().max_tokens, Some(i32::MAX));
    }

    #[test]
    fn cross_region_profile_ids_are_kept_as_model_ids() {
        let mapped = to_converse(
            &request(vec![Message::user("q")]),
            &JsonModeConfig::default(),
        )
        .unwrap();
        assert_eq!(
            mapped.model_id,
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
        );
        assert!(mapped.tool_config.is_none() && mapped.output_config.is_none());
    }

    #[test]
    fn json_object_forces_a_tool_with_an_object_schema() {
        let mut req = request(vec![Message::user("q")]);
        req.response_format = ResponseFormat::JsonObject;
        let mapped = to_converse(&req, &JsonModeConfig::default()).unwrap();
        let tools = mapped.tool_config.unwrap();
        let Tool::ToolSpec(spec) = &tools.tools[0] else {
            panic!("not a tool spec")
        };
        assert_eq!(spec.name, JSON_TOOL_NAME);
        let Some(ToolInputSchema::Json(schema)) = &spec.input_schema else {
            panic!("no schema")
        };
        assert_eq!(
            document_to_json(schema),
            serde_json::json!({"type": "object"})
        );
        assert_eq!(
            tools.tool_choice,
            Some(ToolChoice::Tool(
                SpecificToolChoice::builder()
                    .name(JSON_TOOL_NAME)
                    .build()
                    .unwrap()
            ))
        );
    }

    #[test]
    fn json_schema_goes_native_only_for_listed_models() {
        let mut req = request(vec![Message::user("q")]);
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"answer": {"type": "integer"}},
            "required": ["answer"]
        });
        req.response_format = ResponseFormat::JsonSchema {
            name: "math answer!".into(),
            schema: schema.clone(),
        };
        let emulated = to_converse(&req, &JsonModeConfig::default()).unwrap();
        assert!(matches!(
            &emulated.plan,
            JsonPlan::ForcedTool { tool_name, .. } if tool_name == "mathanswer"
        ));
        let native_config = JsonModeConfig {
            native_structured_output: vec!["us.anthropic.*".into()],
        };
        let native = to_converse(&req, &native_config).unwrap();
        assert!(native.tool_config.is_none());
        let format = native.output_config.unwrap().text_format.unwrap();
        let definition = format.structure.unwrap();
        let definition = definition.as_json_schema().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&definition.schema).unwrap(),
            schema
        );
    }

    #[test]
    fn a_non_object_or_invalid_schema_is_the_callers_mistake() {
        let mut req = request(vec![Message::user("q")]);
        req.response_format = ResponseFormat::JsonSchema {
            name: "list".into(),
            schema: serde_json::json!({"type": "array"}),
        };
        let error = to_converse(&req, &JsonModeConfig::default()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
        req.response_format = ResponseFormat::JsonSchema {
            name: "bad".into(),
            schema: serde_json::json!({"type": 12}),
        };
        let error = to_converse(&req, &JsonModeConfig::default()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn text_answers_map_content_stop_reason_and_usage() {
        let mut tokens = usage(18, 1);
        tokens.cache_read_input_tokens = Some(100);
        tokens.cache_write_input_tokens = Some(7);
        let answer = from_converse(
            &response(
                vec![
                    ContentBlock::Text("4".into()),
                    ContentBlock::Text("!".into()),
                ],
                StopReason::EndTurn,
                Some(tokens),
            ),
            &JsonPlan::Text,
        )
        .unwrap();
        assert_eq!(answer.content, "4!");
        assert_eq!(answer.finish_reason, FinishReason::Stop);
        assert_eq!(
            answer.usage,
            TokenUsage {
                input_tokens: 18,
                output_tokens: 1,
                cache_read_tokens: 100,
                cache_write_tokens: 7
            }
        );
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        let text = JsonPlan::Text;
        let tool = JsonPlan::ForcedTool {
            tool_name: JSON_TOOL_NAME.into(),
            contract: JsonContract::object(),
        };
        let cases = [
            (StopReason::EndTurn, &text, FinishReason::Stop),
            (StopReason::MaxTokens, &text, FinishReason::Length),
            (
                StopReason::ModelContextWindowExceeded,
                &text,
                FinishReason::Length,
            ),
            (StopReason::StopSequence, &text, FinishReason::StopSequence),
            (
                StopReason::GuardrailIntervened,
                &text,
                FinishReason::ContentFilter,
            ),
            (
                StopReason::ContentFiltered,
                &text,
                FinishReason::ContentFilter,
            ),
            (StopReason::ToolUse, &text, FinishReason::ToolUse),
            (StopReason::ToolUse, &tool, FinishReason::Stop),
            (
                StopReason::from("brand_new"),
                &text,
                FinishReason::Other("brand_new".into()),
            ),
        ];
        for (reason, plan, expected) in cases {
            assert_eq!(map_stop_reason(&reason, plan), expected, "{reason:?}");
        }
        assert_eq!(
            stop_reason_error(&StopReason::MalformedModelOutput, &text).map(|e| e.kind()),
            Some(ErrorKind::MalformedResponse)
        );
        assert_eq!(
            stop_reason_error(&StopReason::GuardrailIntervened, &tool).map(|e| e.kind()),
            Some(ErrorKind::ContentFiltered)
        );
        assert!(stop_reason_error(&StopReason::GuardrailIntervened, &text).is_none());
    }

    #[test]
    fn forced_tool_input_is_the_content_and_is_checked_against_the_schema() {
        let contract = JsonContract::schema(&serde_json::json!({
            "type": "object",
            "properties": {"answer": {"type": "integer"}},
            "required": ["answer"]
        }))
        .unwrap();
        let plan = JsonPlan::ForcedTool {
            tool_name: JSON_TOOL_NAME.into(),
            contract,
        };
        let ok = from_converse(
            &response(
                vec![tool_use(JSON_TOOL_NAME, serde_json::json!({"answer": 4}))],
                StopReason::ToolUse,
                Some(usage(30, 12)),
            ),
            &plan,
        )
        .unwrap();
        assert_eq!(ok.content, r#"{"answer":4}"#);
        assert_eq!(ok.finish_reason, FinishReason::Stop);
        let wrong = from_converse(
            &response(
                vec![tool_use(
                    JSON_TOOL_NAME,
                    serde_json::json!({"answer": "four"}),
                )],
                StopReason::ToolUse,
                None,
            ),
            &plan,
        )
        .unwrap_err();
        assert_eq!(wrong.kind(), ErrorKind::MalformedResponse);
        assert!(wrong.message().contains("schema"), "{wrong}");
        let prose = from_converse(
            &response(
                vec![ContentBlock::Text("Sure! {\"answer\": 4}".into())],
                StopReason::EndTurn,
                None,
            ),
            &plan,
        )
        .unwrap_err();
        assert_eq!(prose.kind(), ErrorKind::MalformedResponse);
        let json_text = from_converse(
            &response(
                vec![ContentBlock::Text(" {\"answer\": 4} ".into())],
                StopReason::EndTurn,
                None,
            ),
            &plan,
        )
        .unwrap();
        assert_eq!(json_text.content, "{\"answer\": 4}");
    }

    #[test]
    fn native_json_text_is_checked() {
        let plan = JsonPlan::Native {
            contract: JsonContract::object(),
        };
        let ok = from_converse(
            &response(
                vec![ContentBlock::Text(r#"{"a":1}"#.into())],
                StopReason::EndTurn,
                None,
            ),
            &plan,
        )
        .unwrap();
        assert_eq!(ok.content, r#"{"a":1}"#);
        let not_object = from_converse(
            &response(
                vec![ContentBlock::Text("[1]".into())],
                StopReason::EndTurn,
                None,
            ),
            &plan,
        )
        .unwrap_err();
        assert_eq!(not_object.kind(), ErrorKind::MalformedResponse);
    }

    #[test]
    fn documents_and_json_round_trip() {
        let value = serde_json::json!({
            "s": "x", "n": -3, "u": 7, "f": 1.5, "b": true, "z": null, "a": [1, {"k": []}]
        });
        assert_eq!(document_to_json(&json_to_document(&value)), value);
    }
}
