//! Pure mapping between this workspace's types and Bedrock Converse shapes: no I/O, tested
//! on fixtures.
//!
//! - [`to_converse`]: a [`ProviderRequest`] → messages (text, images, tool calls and tool
//!   results), system blocks, inference configuration, the tool configuration (the
//!   caller's tools and the JSON-mode tool) or the output configuration.
//! - [`from_converse`]: a `Converse` answer → content, tool calls, [`FinishReason`] and
//!   [`TokenUsage`], with JSON-mode content validated.

use std::collections::HashMap;

use aws_sdk_bedrockruntime::operation::converse::ConverseOutput as ConverseResponse;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, ContentBlock, ConversationRole, ConverseOutput, ImageBlock,
    ImageFormat, ImageSource, InferenceConfiguration, JsonSchemaDefinition,
    Message as BedrockMessage, OutputConfig, OutputFormat, OutputFormatStructure, OutputFormatType,
    SpecificToolChoice, StopReason, SystemContentBlock, Tool, ToolChoice, ToolConfiguration,
    ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolResultStatus, ToolSpecification,
    ToolUseBlock,
};
use aws_smithy_types::{Blob, Document, Number};
use failover_provider::{
    ContentPart, ErrorKind, FinishReason, ImagePart, JsonContract, Message, ProviderError,
    ProviderRequest, ResponseFormat, Role, TokenUsage, ToolCall, ToolChoice as NeutralChoice,
    ToolResult, ToolResultContent,
};

use crate::config::JsonModeConfig;

/// The name of the tool that carries JSON-mode answers (forced-tool emulation), always: the
/// requested schema's name goes in its description. The name is reserved: a JSON-mode
/// request that offers (or whose history calls) a tool of its own by this name is an
/// [`ErrorKind::InvalidRequest`], so the JSON tool can never be confused with the
/// caller's tools. Outside JSON mode the name is free.
pub const JSON_TOOL_NAME: &str = "json_response";

/// The opening of the JSON tool's description (the schema's name follows it when there is
/// one). Together with [`JSON_TOOL_NAME`] it tells a stand-in that a `toolSpec` is the JSON
/// tool and not a caller's tool that happens to share the name outside JSON mode.
pub const JSON_TOOL_DESCRIPTION: &str =
    "Reply by calling this tool. Its input is the whole answer, as JSON matching the input schema.";

/// The user turn put before a conversation whose first turn is the assistant's: Converse
/// requires the first message to be the user's.
pub const LEADING_USER_TURN: &str = "(start of conversation)";

/// The system instruction added when the request must not call a tool but its tool
/// configuration cannot be left out: Converse has no `none` tool choice, and refuses
/// `toolUse` / `toolResult` blocks in the history without a `toolConfig`.
pub const NO_TOOL_CALLS_INSTRUCTION: &str =
    "Do not call any tool in this turn: answer in text, using the tool results above.";

/// The input schema of a tool spec synthesised for a tool named in the history but not
/// offered by the request: any object.
pub fn synthesised_tool_schema() -> serde_json::Value {
    serde_json::json!({"type": "object"})
}

/// How a request's response format is obtained from Bedrock, and how the answer is checked.
#[derive(Debug, Clone)]
pub enum JsonPlan {
    /// Free text: no JSON contract.
    Text,
    /// JSON emulated with a forced tool: the tool's input is the content.
    ForcedTool {
        /// The JSON tool's name ([`JSON_TOOL_NAME`]).
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

    /// The JSON tool's name, in forced-tool mode.
    pub fn json_tool(&self) -> Option<&str> {
        match self {
            JsonPlan::ForcedTool { tool_name, .. } => Some(tool_name),
            _ => None,
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
    /// System prompts (and [`NO_TOOL_CALLS_INSTRUCTION`] where it applies).
    pub system: Vec<SystemContentBlock>,
    /// Temperature, max tokens, stop sequences, `top_p`; `None` when all are the model's
    /// defaults.
    pub inference: Option<InferenceConfiguration>,
    /// The caller's tools and the forced JSON tool (see [`map_tool_config`]).
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

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidRequest, message)
}

/// An image as a Converse image block (the bytes go as they are: the SDK base64-encodes
/// them on the wire).
pub fn image_block(image: &ImagePart) -> Result<ContentBlock, ProviderError> {
    converse_image(image).map(ContentBlock::Image)
}

fn converse_image(image: &ImagePart) -> Result<ImageBlock, ProviderError> {
    ImageBlock::builder()
        .format(ImageFormat::from(image.media_type.format()))
        .source(ImageSource::Bytes(Blob::new(image.data.to_vec())))
        .build()
        .map_err(|error| build_error("image block", error))
}

/// A call of the history as a Converse `toolUse` block: the arguments are parsed from
/// their JSON text (empty arguments are `{}`); arguments that are not a JSON object are the
/// caller's mistake.
pub fn tool_use_block(call: &ToolCall) -> Result<ContentBlock, ProviderError> {
    // Parsed straight into a document: one pass, no intermediate `serde_json::Value`.
    let arguments = if call.arguments.trim().is_empty() {
        Document::Object(HashMap::new())
    } else {
        serde_json::from_str::<JsonDocument>(&call.arguments)
            .map_err(|error| {
                invalid(format!(
                    "the arguments of tool call `{}` ({}) are not valid JSON: {error}",
                    call.id, call.name
                ))
            })?
            .0
    };
    if !matches!(arguments, Document::Object(_)) {
        return Err(invalid(format!(
            "the arguments of tool call `{}` ({}) must be a JSON object",
            call.id, call.name
        )));
    }
    ToolUseBlock::builder()
        .tool_use_id(&call.id)
        .name(&call.name)
        .input(arguments)
        .build()
        .map(ContentBlock::ToolUse)
        .map_err(|error| build_error("tool use block", error))
}

/// A tool's result as a Converse `toolResult` block, with any text or image parts the tool
/// message also carries after the result. `status` is sent only for a failure: Bedrock
/// documents the field for some models only, and success is the default.
pub fn tool_result_block(
    result: &ToolResult,
    extra: &[ContentPart],
) -> Result<ContentBlock, ProviderError> {
    let mut content = vec![match &result.content {
        ToolResultContent::Text(text) => ToolResultContentBlock::Text(text.clone()),
        ToolResultContent::Json(value) => ToolResultContentBlock::Json(json_to_document(value)),
    }];
    for part in extra {
        match part {
            ContentPart::Text { text } if text.trim().is_empty() => {}
            ContentPart::Text { text } => content.push(ToolResultContentBlock::Text(text.clone())),
            ContentPart::Image(image) => {
                content.push(ToolResultContentBlock::Image(converse_image(image)?))
            }
        }
    }
    ToolResultBlock::builder()
        .tool_use_id(&result.call_id)
        .set_content(Some(content))
        .set_status(result.is_error.then_some(ToolResultStatus::Error))
        .build()
        .map(ContentBlock::ToolResult)
        .map_err(|error| build_error("tool result block", error))
}

/// One turn being built: in a user turn, tool results go before anything else (Converse
/// wants a turn answering calls to open with the results).
struct Turn {
    role: ConversationRole,
    results: Vec<ContentBlock>,
    blocks: Vec<ContentBlock>,
}

impl Turn {
    fn into_message(self) -> Result<BedrockMessage, ProviderError> {
        let mut content = self.results;
        content.extend(self.blocks);
        BedrockMessage::builder()
            .role(self.role)
            .set_content(Some(content))
            .build()
            .map_err(|error| build_error("message", error))
    }
}

fn text_blocks(message: &Message, what: &str) -> Result<Vec<ContentBlock>, ProviderError> {
    let mut blocks = Vec::with_capacity(message.content.len());
    for part in &message.content {
        match part {
            // Converse refuses blank text blocks.
            ContentPart::Text { text } if text.trim().is_empty() => {}
            ContentPart::Text { text } => blocks.push(ContentBlock::Text(text.clone())),
            ContentPart::Image(image) if message.role == Role::User => {
                blocks.push(image_block(image)?)
            }
            ContentPart::Image(_) => {
                return Err(invalid(format!(
                    "Bedrock takes images only in user messages, not in {what}"
                )));
            }
        }
    }
    Ok(blocks)
}

/// Maps messages to Converse messages and system blocks.
///
/// System messages become system blocks, in order, wherever they stand. User messages map
/// their text and image parts in order; assistant messages their text and then their tool
/// calls (`toolUse` blocks, ids kept); tool messages become a user turn's `toolResult`
/// blocks. Consecutive turns of the same role are merged into one message (Converse
/// requires alternating roles), the tool results of a merged user turn before its other
/// blocks. A conversation that opens with the assistant gets a [`LEADING_USER_TURN`]
/// first. Blank text is dropped (Converse rejects it); a message carrying calls, a result
/// or an image never is. What Converse cannot carry (an image outside a user message, a
/// call outside an assistant message, a tool message without a result, arguments that are
/// not a JSON object) is an [`ErrorKind::InvalidRequest`].
pub fn map_messages(
    messages: &[Message],
) -> Result<(Vec<SystemContentBlock>, Vec<BedrockMessage>), ProviderError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for message in messages {
        if message.is_blank() {
            continue;
        }
        if !message.tool_calls.is_empty() && message.role != Role::Assistant {
            return Err(invalid(format!(
                "only assistant messages carry tool calls, not {} messages",
                message.role.as_str()
            )));
        }
        if message.tool_result.is_some() && message.role != Role::Tool {
            return Err(invalid(format!(
                "only tool messages carry tool results, not {} messages",
                message.role.as_str()
            )));
        }
        let (role, results, blocks) = match message.role {
            Role::System => {
                if message.images().next().is_some() {
                    return Err(invalid(
                        "Bedrock takes images only in user messages, not in system messages",
                    ));
                }
                system.push(SystemContentBlock::Text(message.text()));
                continue;
            }
            Role::User => (
                ConversationRole::User,
                Vec::new(),
                text_blocks(message, "user messages")?,
            ),
            Role::Assistant => {
                let mut blocks = text_blocks(message, "assistant messages")?;
                for call in &message.tool_calls {
                    blocks.push(tool_use_block(call)?);
                }
                (ConversationRole::Assistant, Vec::new(), blocks)
            }
            Role::Tool => {
                let result = message.tool_result.as_ref().ok_or_else(|| {
                    invalid("a tool message must carry the result of a call (tool_result)")
                })?;
                (
                    ConversationRole::User,
                    vec![tool_result_block(result, &message.content)?],
                    Vec::new(),
                )
            }
        };
        match turns.last_mut() {
            Some(last) if last.role == role => {
                last.results.extend(results);
                last.blocks.extend(blocks);
            }
            _ => turns.push(Turn {
                role,
                results,
                blocks,
            }),
        }
    }
    match turns.first() {
        None => {
            return Err(invalid(
                "Bedrock needs at least one user or assistant message",
            ));
        }
        Some(first) if first.role == ConversationRole::Assistant => turns.insert(
            0,
            Turn {
                role: ConversationRole::User,
                results: Vec::new(),
                blocks: vec![ContentBlock::Text(LEADING_USER_TURN.to_owned())],
            },
        ),
        Some(_) => {}
    }
    let messages = turns
        .into_iter()
        .map(Turn::into_message)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((system, messages))
}

/// Maps temperature, max tokens, stop sequences and `top_p`. Bedrock's models take
/// temperatures in `0..=1`: higher values (OpenAI allows up to 2) are clamped to 1.
/// Converse has no seed: `sampling.seed` is left out ([`CAPABILITIES`](crate::CAPABILITIES)
/// says so).
pub fn map_inference(request: &ProviderRequest) -> Option<InferenceConfiguration> {
    let top_p = request.sampling.top_p;
    if request.temperature.is_none()
        && request.max_tokens.is_none()
        && request.stop.is_empty()
        && top_p.is_none()
    {
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
            .set_top_p(top_p.map(|p| p.clamp(0.0, 1.0)))
            .set_stop_sequences(stop)
            .build(),
    )
}

fn tool_spec(
    name: &str,
    description: Option<&str>,
    schema: &serde_json::Value,
) -> Result<Tool, ProviderError> {
    ToolSpecification::builder()
        .name(name)
        // Bedrock refuses an empty description: leave it out instead.
        .set_description(
            description
                .filter(|text| !text.trim().is_empty())
                .map(str::to_owned),
        )
        .input_schema(ToolInputSchema::Json(json_to_document(schema)))
        .build()
        .map(Tool::ToolSpec)
        .map_err(|error| build_error("tool specification", error))
}

fn json_tool_spec(
    schema_name: Option<&str>,
    schema: &serde_json::Value,
) -> Result<Tool, ProviderError> {
    let description = match schema_name.map(str::trim).filter(|name| !name.is_empty()) {
        Some(name) => format!("{JSON_TOOL_DESCRIPTION} The answer is a `{name}`."),
        None => JSON_TOOL_DESCRIPTION.to_owned(),
    };
    tool_spec(JSON_TOOL_NAME, Some(&description), schema)
}

fn specific(name: &str) -> Result<ToolChoice, ProviderError> {
    SpecificToolChoice::builder()
        .name(name)
        .build()
        .map(ToolChoice::Tool)
        .map_err(|error| build_error("tool choice", error))
}

/// What the history of a conversation holds of tool use.
#[derive(Debug, Default)]
struct ToolHistory {
    /// Whether any `toolUse` or `toolResult` block is in it (Converse then needs a
    /// `toolConfig`).
    any: bool,
    /// The names of the tools called, first call first, each once.
    names: Vec<String>,
}

fn tool_history(messages: &[Message]) -> ToolHistory {
    let mut history = ToolHistory::default();
    for message in messages {
        history.any |= message.tool_result.is_some() || !message.tool_calls.is_empty();
        for call in &message.tool_calls {
            if !history.names.contains(&call.name) {
                history.names.push(call.name.clone());
            }
        }
    }
    history
}

/// The tool configuration of a request, and whether the model must be told not to call a
/// tool.
#[derive(Debug, Clone, Default)]
pub struct ToolPlan {
    /// The `toolConfig`, when the request needs one.
    pub config: Option<ToolConfiguration>,
    /// Whether [`NO_TOOL_CALLS_INSTRUCTION`] goes into the system prompt.
    pub instruct_no_calls: bool,
}

/// Maps the caller's tools, their choice and the JSON tool (`json_tool`: its spec, in
/// forced-tool JSON mode) to a `toolConfig`.
///
/// - The caller's tools become `toolSpec`s; choice `Auto` → `auto`, `Required` → `any`,
///   `Tool(n)` → `tool{name: n}`.
/// - `None` has no Converse equivalent. Without tool use in the history the tools are
///   withheld (what TensorZero does): the model cannot call what it is not offered. With
///   tool use in the history Converse needs a `toolConfig`, so the specs stay with `auto`
///   and [`NO_TOOL_CALLS_INSTRUCTION`] is added to the system prompt: an instruction, not a
///   guarantee (a call made anyway is returned as a call).
/// - No tools offered but tool use in the history: a spec is synthesised for each name
///   called in the history ([`synthesised_tool_schema`]), and treated like `None` (the
///   caller offered nothing to call, as on OpenAI).
/// - The JSON tool goes first. With callable user tools the choice widens so the model
///   may call either: `Auto` and `Required` → `any`, `Tool(n)` → `tool{name: n}` (the JSON
///   tool still offered); otherwise it is forced (`tool{name: json_response}`).
pub fn map_tool_config(
    request: &ProviderRequest,
    json_tool: Option<Tool>,
) -> Result<ToolPlan, ProviderError> {
    let offered = &request.tools.tools;
    let choice = &request.tools.choice;
    let history = tool_history(&request.messages);
    let callable = !offered.is_empty() && *choice != NeutralChoice::None;
    let mut tools = Vec::new();
    let forced_json = json_tool.is_some();
    if let Some(json_tool) = json_tool {
        let reserved = offered
            .iter()
            .map(|tool| tool.name.as_str())
            .chain(history.names.iter().map(String::as_str))
            .any(|name| name == JSON_TOOL_NAME);
        if reserved {
            return Err(invalid(format!(
                "the tool name `{JSON_TOOL_NAME}` is reserved for JSON mode on Bedrock: rename \
                 the tool, or ask for text"
            )));
        }
        tools.push(json_tool);
    }
    if callable || (!offered.is_empty() && history.any) {
        for tool in offered {
            tools.push(tool_spec(
                &tool.name,
                tool.description.as_deref(),
                &tool.input_schema,
            )?);
        }
    } else if offered.is_empty() && history.any {
        let schema = synthesised_tool_schema();
        for name in &history.names {
            tools.push(tool_spec(name, None, &schema)?);
        }
    }
    if tools.is_empty() {
        return Ok(ToolPlan::default());
    }
    let tool_choice = match (forced_json, callable, choice) {
        (true, false, _) => specific(JSON_TOOL_NAME)?,
        (_, true, NeutralChoice::Tool(name)) => specific(name)?,
        (true, true, _) | (false, true, NeutralChoice::Required) => {
            ToolChoice::Any(AnyToolChoice::builder().build())
        }
        (false, _, _) => ToolChoice::Auto(AutoToolChoice::builder().build()),
    };
    let config = ToolConfiguration::builder()
        .set_tools(Some(tools))
        .tool_choice(tool_choice)
        .build()
        .map_err(|error| build_error("tool configuration", error))?;
    Ok(ToolPlan {
        config: Some(config),
        instruct_no_calls: !forced_json && !callable,
    })
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

/// A name Bedrock accepts for a native JSON schema (`[a-zA-Z0-9_-]{1,64}`), from a
/// schema's name.
fn schema_name(name: &str) -> String {
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

/// Maps a whole request.
///
/// JSON modes: `JsonObject` always, and `JsonSchema` for models not listed in
/// [`JsonModeConfig::native_structured_output`], use a forced tool ([`JSON_TOOL_NAME`])
/// whose input schema is the requested schema (`{"type": "object"}` for `JsonObject`);
/// listed models get native structured output. Either way the answer is checked against a
/// [`JsonContract`]. The caller's tools go with the JSON tool ([`map_tool_config`]).
pub fn to_converse(
    request: &ProviderRequest,
    json: &JsonModeConfig,
) -> Result<ConverseRequest, ProviderError> {
    let (mut system, messages) = map_messages(&request.messages)?;
    let mut json_tool = None;
    let mut output_config = None;
    let plan = match &request.response_format {
        ResponseFormat::Text => JsonPlan::Text,
        ResponseFormat::JsonObject => {
            json_tool = Some(json_tool_spec(
                None,
                &serde_json::json!({"type": "object"}),
            )?);
            JsonPlan::ForcedTool {
                tool_name: JSON_TOOL_NAME.to_owned(),
                contract: JsonContract::object(),
            }
        }
        ResponseFormat::JsonSchema { name, schema } => {
            let contract = JsonContract::schema(schema)?;
            if json.is_native(&request.model) {
                output_config = Some(native_output(&schema_name(name), schema)?);
                JsonPlan::Native { contract }
            } else {
                if let Some(kind) = schema.get("type")
                    && kind != "object"
                {
                    return Err(invalid(format!(
                        "Bedrock JSON mode needs an object schema (a tool input), not type \
                         {kind}"
                    )));
                }
                json_tool = Some(json_tool_spec(Some(name), schema)?);
                JsonPlan::ForcedTool {
                    tool_name: JSON_TOOL_NAME.to_owned(),
                    contract,
                }
            }
        }
    };
    let tools = map_tool_config(request, json_tool)?;
    if tools.instruct_no_calls {
        system.push(SystemContentBlock::Text(
            NO_TOOL_CALLS_INSTRUCTION.to_owned(),
        ));
    }
    Ok(ConverseRequest {
        model_id: request.model.clone(),
        messages,
        system,
        inference: map_inference(request),
        tool_config: tools.config,
        output_config,
        plan,
    })
}

/// Maps a stop reason. `tool_use` in forced-tool JSON mode is the normal end and reads as
/// [`FinishReason::Stop`]; an answer with calls of the caller's tools reads as
/// [`FinishReason::ToolUse`] whatever the plan (see [`from_converse`]).
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
    stop_error(reason, plan.contract().is_some())
}

/// [`stop_reason_error`], where `json_checked` says whether the JSON contract applies (it
/// does not to an answer that calls the caller's tools).
pub(crate) fn stop_error(reason: &StopReason, json_checked: bool) -> Option<ProviderError> {
    let code = reason.as_str().to_owned();
    let error = match reason {
        StopReason::MalformedModelOutput | StopReason::MalformedToolUse => ProviderError::new(
            ErrorKind::MalformedResponse,
            format!("Bedrock stopped with {code}"),
        ),
        StopReason::GuardrailIntervened | StopReason::ContentFiltered if json_checked => {
            ProviderError::new(
                ErrorKind::ContentFiltered,
                format!("Bedrock stopped with {code}"),
            )
        }
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded if json_checked => {
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

/// The content, tool calls, finish reason and usage of a `Converse` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConverseAnswer {
    /// The content (in JSON mode, checked JSON; empty when a forced-tool JSON answer calls
    /// the caller's tools instead).
    pub content: String,
    /// The caller's tools the model called, in order (never the JSON tool).
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Tokens, zero when Bedrock reported none.
    pub usage: TokenUsage,
}

/// A `toolUse` block as a call: the input document as compact JSON text.
pub fn tool_call_of(block: &ToolUseBlock) -> ToolCall {
    ToolCall::new(
        block.tool_use_id.clone(),
        block.name.clone(),
        document_to_json(&block.input).to_string(),
    )
}

/// Reads a `Converse` answer according to `plan`.
///
/// `toolUse` blocks of the caller's tools are [`ConverseAnswer::tool_calls`] and make the
/// finish reason [`FinishReason::ToolUse`]. An answer with such calls asks for tool
/// results first, so the JSON contract is not applied to it: in forced-tool mode its
/// content is empty (text blocks are never the content there, as in a stream), otherwise
/// it is the text.
pub fn from_converse(
    response: &ConverseResponse,
    plan: &JsonPlan,
) -> Result<ConverseAnswer, ProviderError> {
    let blocks: &[ContentBlock] = match &response.output {
        Some(ConverseOutput::Message(message)) => &message.content,
        _ => {
            return Err(ProviderError::new(
                ErrorKind::MalformedResponse,
                "Bedrock's answer has no message",
            ));
        }
    };
    let json_tool = plan.json_tool();
    let tool_calls: Vec<ToolCall> = blocks
        .iter()
        .filter_map(|block| match block {
            ContentBlock::ToolUse(tool) if Some(tool.name.as_str()) != json_tool => {
                Some(tool_call_of(tool))
            }
            _ => None,
        })
        .collect();
    let json_checked = plan.contract().is_some() && tool_calls.is_empty();
    if let Some(error) = stop_error(&response.stop_reason, json_checked) {
        return Err(error);
    }
    let text: String = blocks
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let usage = response.usage.as_ref().map(map_usage).unwrap_or_default();
    if !tool_calls.is_empty() {
        let content = if json_tool.is_some() {
            String::new()
        } else {
            text
        };
        return Ok(ConverseAnswer {
            content,
            tool_calls,
            finish_reason: FinishReason::ToolUse,
            usage,
        });
    }
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
        tool_calls,
        finish_reason: map_stop_reason(&response.stop_reason, plan),
        usage,
    })
}

/// JSON text parsed straight into a Smithy document, numbers read as [`json_to_document`]
/// reads them (non-negative integers `PosInt`, negative `NegInt`, the rest `Float`).
struct JsonDocument(Document);

impl<'de> serde::Deserialize<'de> for JsonDocument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(DocumentVisitor)
            .map(JsonDocument)
    }
}

struct DocumentVisitor;

impl<'de> serde::de::Visitor<'de> for DocumentVisitor {
    type Value = Document;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Document, E> {
        Ok(Document::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Document, E> {
        Ok(Document::Bool(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Document, E> {
        Ok(Document::Number(Number::PosInt(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Document, E> {
        // serde_json hands non-negative integers to `visit_u64`; be exact anyway.
        Ok(Document::Number(match u64::try_from(value) {
            Ok(value) => Number::PosInt(value),
            Err(_) => Number::NegInt(value),
        }))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Document, E> {
        Ok(Document::Number(Number::Float(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Document, E> {
        Ok(Document::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Document, E> {
        Ok(Document::String(value))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Document, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(JsonDocument(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Document::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let mut entries = HashMap::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((key, JsonDocument(value))) = map.next_entry::<String, JsonDocument>()? {
            entries.insert(key, value);
        }
        Ok(Document::Object(entries))
    }
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
            JsonPlan::ForcedTool { tool_name, .. } if tool_name == JSON_TOOL_NAME
        ));
        let Tool::ToolSpec(spec) = &emulated.tool_config.unwrap().tools[0] else {
            panic!("not a tool spec")
        };
        assert_eq!(spec.name, JSON_TOOL_NAME);
        let description = spec.description.as_deref().unwrap();
        assert!(
            description.starts_with(JSON_TOOL_DESCRIPTION),
            "{description}"
        );
        assert!(description.contains("math answer!"), "{description}");
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

    fn weather() -> failover_provider::ToolDefinition {
        failover_provider::ToolDefinition::new(
            "get_weather",
            "The weather in a city",
            serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        )
    }

    fn tool_history() -> Vec<Message> {
        vec![
            Message::user("Weather in Paris and Rome?"),
            Message::assistant_with_calls(
                "Checking.",
                vec![
                    ToolCall::new("tooluse_1", "get_weather", r#"{"city":"Paris"}"#),
                    ToolCall::new("tooluse_2", "get_weather", ""),
                ],
            ),
            Message::tool_result("tooluse_1", ToolResultContent::Text("sunny".into())),
            Message::tool_error("tooluse_2", "no city given"),
            Message::user("Thanks. And tomorrow?"),
        ]
    }

    fn names(config: &ToolConfiguration) -> Vec<&str> {
        config
            .tools
            .iter()
            .map(|tool| tool.as_tool_spec().unwrap().name.as_str())
            .collect()
    }

    #[test]
    fn calls_and_results_map_to_tool_blocks_with_results_first_in_a_merged_turn() {
        let (_, messages) = map_messages(&tool_history()).unwrap();
        assert_eq!(messages.len(), 3);
        let assistant = &messages[1].content;
        assert_eq!(assistant[0], ContentBlock::Text("Checking.".into()));
        let first = assistant[1].as_tool_use().unwrap();
        assert_eq!(
            (first.tool_use_id.as_str(), first.name.as_str()),
            ("tooluse_1", "get_weather")
        );
        assert_eq!(
            document_to_json(&first.input),
            serde_json::json!({"city": "Paris"})
        );
        // Empty arguments are an empty object.
        let second = assistant[2].as_tool_use().unwrap();
        assert_eq!(document_to_json(&second.input), serde_json::json!({}));
        let user = &messages[2].content;
        assert_eq!(user.len(), 3);
        let ok = user[0].as_tool_result().unwrap();
        assert_eq!(ok.tool_use_id, "tooluse_1");
        assert_eq!(
            ok.content,
            vec![ToolResultContentBlock::Text("sunny".into())]
        );
        assert_eq!(ok.status, None);
        let failed = user[1].as_tool_result().unwrap();
        assert_eq!(failed.status, Some(ToolResultStatus::Error));
        assert_eq!(user[2], ContentBlock::Text("Thanks. And tomorrow?".into()));
    }

    #[test]
    fn arguments_that_are_not_a_json_object_are_invalid() {
        for arguments in ["{\"city\":", "[1]"] {
            let error = map_messages(&[
                Message::user("q"),
                Message::assistant_with_calls("", vec![ToolCall::new("t", "f", arguments)]),
            ])
            .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{arguments}");
            assert!(error.message().contains("`t`"), "{error}");
        }
    }

    #[test]
    fn images_map_in_user_turns_and_are_refused_elsewhere() {
        let image = failover_provider::ImagePart::new(
            failover_provider::ImageMediaType::Webp,
            vec![1, 2, 3],
        );
        let (_, messages) = map_messages(&[Message::user_parts(vec![
            ContentPart::text("What is this?"),
            ContentPart::Image(image.clone()),
        ])])
        .unwrap();
        let block = messages[0].content[1].as_image().unwrap();
        assert_eq!(block.format, ImageFormat::Webp);
        assert_eq!(
            block.source,
            Some(ImageSource::Bytes(Blob::new(vec![1, 2, 3])))
        );
        let mut assistant = Message::assistant("look");
        assistant.content.push(ContentPart::Image(image));
        let error = map_messages(&[Message::user("q"), assistant]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn tool_choices_map_and_none_withholds_the_tools_without_history() {
        let mut req = request(vec![Message::user("q")]);
        req.tools.tools = vec![weather()];
        let choice = |req: &ProviderRequest| {
            to_converse(req, &JsonModeConfig::default())
                .unwrap()
                .tool_config
                .map(|config| config.tool_choice.unwrap())
        };
        assert!(matches!(choice(&req), Some(ToolChoice::Auto(_))));
        req.tools.choice = NeutralChoice::Required;
        assert!(matches!(choice(&req), Some(ToolChoice::Any(_))));
        req.tools.choice = NeutralChoice::Tool("get_weather".into());
        assert_eq!(choice(&req), Some(specific("get_weather").unwrap()));
        req.tools.choice = NeutralChoice::None;
        let mapped = to_converse(&req, &JsonModeConfig::default()).unwrap();
        assert!(mapped.tool_config.is_none());
        assert!(mapped.system.is_empty());
    }

    #[test]
    fn none_with_history_keeps_the_specs_and_instructs_not_to_call() {
        let mut req = request(tool_history());
        req.tools.tools = vec![weather()];
        req.tools.choice = NeutralChoice::None;
        let mapped = to_converse(&req, &JsonModeConfig::default()).unwrap();
        let config = mapped.tool_config.unwrap();
        assert_eq!(names(&config), vec!["get_weather"]);
        assert!(matches!(config.tool_choice, Some(ToolChoice::Auto(_))));
        assert_eq!(
            mapped.system.last(),
            Some(&SystemContentBlock::Text(NO_TOOL_CALLS_INSTRUCTION.into()))
        );
    }

    #[test]
    fn history_without_tools_gets_synthesised_specs() {
        let mut history = tool_history();
        history.insert(
            1,
            Message::assistant_with_calls("", vec![ToolCall::new("t0", "get_time", "{}")]),
        );
        history.insert(
            2,
            Message::tool_result("t0", ToolResultContent::Json(serde_json::json!({"h": 9}))),
        );
        let mapped = to_converse(&request(history), &JsonModeConfig::default()).unwrap();
        let config = mapped.tool_config.unwrap();
        assert_eq!(names(&config), vec!["get_time", "get_weather"]);
        let spec = config.tools[0].as_tool_spec().unwrap();
        assert_eq!(
            spec.input_schema,
            Some(ToolInputSchema::Json(json_to_document(
                &synthesised_tool_schema()
            )))
        );
        assert!(
            mapped
                .system
                .contains(&SystemContentBlock::Text(NO_TOOL_CALLS_INSTRUCTION.into()))
        );
    }

    #[test]
    fn json_mode_with_user_tools_widens_the_choice_and_reserves_the_name() {
        let mut req = request(vec![Message::user("q")]);
        req.response_format = ResponseFormat::JsonObject;
        req.tools.tools = vec![weather()];
        let mapped = |req: &ProviderRequest| {
            to_converse(req, &JsonModeConfig::default())
                .unwrap()
                .tool_config
                .unwrap()
        };
        let auto = mapped(&req);
        assert_eq!(names(&auto), vec![JSON_TOOL_NAME, "get_weather"]);
        assert!(matches!(auto.tool_choice, Some(ToolChoice::Any(_))));
        req.tools.choice = NeutralChoice::Required;
        assert!(matches!(mapped(&req).tool_choice, Some(ToolChoice::Any(_))));
        req.tools.choice = NeutralChoice::Tool("get_weather".into());
        let named = mapped(&req);
        assert_eq!(names(&named), vec![JSON_TOOL_NAME, "get_weather"]);
        assert_eq!(named.tool_choice, Some(specific("get_weather").unwrap()));
        req.tools.choice = NeutralChoice::None;
        let none = mapped(&req);
        assert_eq!(names(&none), vec![JSON_TOOL_NAME]);
        assert_eq!(none.tool_choice, Some(specific(JSON_TOOL_NAME).unwrap()));

        req.tools.choice = NeutralChoice::Auto;
        req.tools.tools.push(failover_provider::ToolDefinition::new(
            JSON_TOOL_NAME,
            "mine",
            serde_json::json!({"type": "object"}),
        ));
        let error = to_converse(&req, &JsonModeConfig::default()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
        assert!(error.message().contains("reserved"), "{error}");
        // Outside JSON mode the name is the caller's to use.
        req.response_format = ResponseFormat::Text;
        assert!(to_converse(&req, &JsonModeConfig::default()).is_ok());
    }

    #[test]
    fn top_p_maps_and_seed_and_user_are_left_out() {
        let mut req = request(vec![Message::user("q")]);
        req.sampling.top_p = Some(0.9);
        req.sampling.seed = Some(7);
        req.sampling.user = Some("u-1".into());
        let config = map_inference(&req).unwrap();
        assert_eq!(config.top_p, Some(0.9));
        assert_eq!(config.temperature, None);
    }

    #[test]
    fn user_tool_calls_are_tool_calls_and_skip_the_json_contract() {
        let plan = JsonPlan::ForcedTool {
            tool_name: JSON_TOOL_NAME.into(),
            contract: JsonContract::object(),
        };
        let blocks = || {
            vec![
                ContentBlock::Text("Let me look.".into()),
                tool_use(
                    "get_weather",
                    serde_json::json!({"city": "Paris", "days": 2}),
                ),
            ]
        };
        for plan in [&JsonPlan::Text, &plan] {
            let answer =
                from_converse(&response(blocks(), StopReason::ToolUse, None), plan).unwrap();
            assert_eq!(
                answer.tool_calls,
                vec![ToolCall::new(
                    "t1",
                    "get_weather",
                    r#"{"city":"Paris","days":2}"#
                )]
            );
            assert_eq!(answer.finish_reason, FinishReason::ToolUse);
            let expected = if plan.json_tool().is_some() {
                ""
            } else {
                "Let me look."
            };
            assert_eq!(answer.content, expected);
        }
    }

    fn parsed_json(document: &JsonDocument) -> serde_json::Value {
        document_to_json(&document.0)
    }

    #[test]
    fn documents_and_json_round_trip() {
        let value = serde_json::json!({
            "s": "x", "n": -3, "u": 7, "f": 1.5, "b": true, "z": null, "a": [1, {"k": []}]
        });
        assert_eq!(document_to_json(&json_to_document(&value)), value);
        // Call arguments are parsed straight into a document, with the same numbers.
        let parsed: JsonDocument = serde_json::from_str(&value.to_string()).unwrap();
        assert_eq!(parsed.0, json_to_document(&value));
        let big: JsonDocument =
            serde_json::from_str("[18446744073709551615, -9223372036854775808, -0.0]").unwrap();
        assert_eq!(
            parsed_json(&big),
            serde_json::json!([18446744073709551615_u64, i64::MIN, -0.0])
        );
    }
}
