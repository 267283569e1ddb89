//! Local stand-ins for Bedrock and OpenAI: two wiremock servers that answer *every* request
//! in the provider's real wire format, so the real clients (the AWS SDK's Bedrock client,
//! the OpenAI client) can talk to them unchanged.
//!
//! - **Bedrock**: `Converse` gets a JSON answer, `ConverseStream` an AWS event stream
//!   (`messageStart`, text deltas, `messageStop`, `metadata`); a forced JSON tool
//!   (`toolConfig`) is answered by calling that tool.
//! - **OpenAI**: chat completions get a `chat.completion`, or an SSE stream with the usage
//!   chunk and `[DONE]` when `stream` is set; `response_format` JSON gets a JSON object.
//!
//! Answers are deterministic: the text is the provider's canned reply, the input tokens are
//! derived from the request's size (one per four bytes of message text, at least one), the
//! output tokens are the reply's word count.
//!
//! Each test scripts faults on top ([`StandIns::inject`]): the next N requests fail with a
//! 503, are throttled (429 with a retry hint), get a stream cut before its end, or are
//! answered after a delay. Faults take precedence over the default answer and are used up
//! in the order they were injected. A test also scripts answers ([`StandIns::reply`]):
//! text or tool calls, typed ([`Reply`]), sent plain or streamed as the request asks, in
//! the vendor's wire format; faults win over scripted answers, which win over the default.
//! Both refuse, with the real services' 400s, what a tool-calling mapping could get wrong:
//! Bedrock `toolUse`/`toolResult` blocks without a `toolConfig`; an OpenAI `tool` message
//! that answers no earlier `tool_calls` id, or `parallel_tool_calls` without `tools`.

use std::time::Duration;

use failover_provider::ToolCall;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::eventstream::{ConverseStreamBody, EVENT_STREAM_CONTENT_TYPE, bedrock_error};
use crate::openai_fixtures::{
    self, json_response, rate_limit_error, server_error, sse_done, sse_finish_chunk,
    sse_role_chunk, sse_text_chunk, sse_usage_chunk,
};

/// What the Bedrock stand-in says.
pub const BEDROCK_REPLY: &str = "Four, as computed by the Bedrock stand-in.";
/// What the OpenAI stand-in says.
pub const OPENAI_REPLY: &str = "Four, as computed by the OpenAI stand-in.";
/// The JSON object both stand-ins answer JSON-mode requests with.
pub const JSON_REPLY: &str = r#"{"answer":"4"}"#;

/// The name of the tool the Bedrock provider forces for JSON mode
/// (`failover_bedrock::mapping::JSON_TOOL_NAME`, reserved there; the stand-ins do not
/// depend on the provider crates, and the Bedrock crate's tests pin the two together).
pub const BEDROCK_JSON_TOOL: &str = "json_response";

/// Priority of the default answers (wiremock: lower numbers win; the default is 5).
const DEFAULT_PRIORITY: u8 = 10;
/// Priority of injected faults: they win over the default answer.
const FAULT_PRIORITY: u8 = 1;
/// Priority of scripted answers: below faults, above the default answer.
const REPLY_PRIORITY: u8 = 5;

/// An answer a test scripts a stand-in to give ([`StandIns::reply`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Text. To a Bedrock JSON-mode request it is the forced JSON tool's input, so it must
    /// be a JSON object there.
    Text(String),
    /// Tool calls, after some text (or none).
    ToolCalls {
        /// Text before the calls.
        text: Option<String>,
        /// The calls, in order.
        calls: Vec<ToolCall>,
    },
}

impl Reply {
    /// A text answer.
    pub fn text(text: impl Into<String>) -> Self {
        Reply::Text(text.into())
    }

    /// An answer that only calls tools.
    pub fn tool_calls(calls: Vec<ToolCall>) -> Self {
        Reply::ToolCalls { text: None, calls }
    }
}

/// Which stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// The Bedrock runtime stand-in.
    Bedrock,
    /// The OpenAI chat completions stand-in.
    OpenAi,
}

/// A fault a stand-in serves instead of its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 503 (`ServiceUnavailableException` / OpenAI's server error body).
    Unavailable,
    /// HTTP 429 (`ThrottlingException` / `rate_limit_exceeded`) with `retry-after` seconds.
    Throttled {
        /// The retry hint sent in `retry-after`.
        retry_after_secs: u64,
    },
    /// Streaming requests only: the stream starts (a first text delta arrives) and then the
    /// body ends without the stream's end (no `messageStop`/`metadata`, no `[DONE]`).
    CutStream,
    /// The normal answer, sent after this long.
    Slow(Duration),
}

/// The two stand-in servers of one test.
#[derive(Debug)]
pub struct StandIns {
    bedrock: MockServer,
    openai: MockServer,
}

impl StandIns {
    /// Starts both servers with their default answers mounted.
    pub async fn start() -> Self {
        let bedrock = MockServer::start().await;
        let openai = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/model/[^/]+/converse(-stream)?$"))
            .respond_with(Answer::new(Vendor::Bedrock))
            .with_priority(DEFAULT_PRIORITY)
            .mount(&bedrock)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/v1/chat/completions$"))
            .respond_with(Answer::new(Vendor::OpenAi))
            .with_priority(DEFAULT_PRIORITY)
            .mount(&openai)
            .await;
        Self { bedrock, openai }
    }

    /// The Bedrock runtime endpoint URL (for `BedrockConfig::endpoint_url`).
    pub fn bedrock_endpoint(&self) -> String {
        self.bedrock.uri()
    }

    /// The OpenAI base URL, `…/v1` (for `OpenAiConfig::base_url`).
    pub fn openai_base_url(&self) -> String {
        openai_fixtures::base_url(&self.openai)
    }

    /// The server behind `vendor`, to inspect what it received.
    pub fn server(&self, vendor: Vendor) -> &MockServer {
        match vendor {
            Vendor::Bedrock => &self.bedrock,
            Vendor::OpenAi => &self.openai,
        }
    }

    /// Serves `fault` to the next `times` matching requests of `vendor` (a
    /// [`Fault::CutStream`] matches streaming requests only).
    pub async fn inject(&self, vendor: Vendor, fault: Fault, times: u64) {
        let route = match (vendor, &fault) {
            (Vendor::Bedrock, Fault::CutStream) => r"^/model/[^/]+/converse-stream$",
            (Vendor::Bedrock, _) => r"^/model/[^/]+/converse(-stream)?$",
            (Vendor::OpenAi, _) => r"^/v1/chat/completions$",
        };
        let mut mock = Mock::given(method("POST")).and(path_regex(route));
        if vendor == Vendor::OpenAi && fault == Fault::CutStream {
            mock = mock.and(IsStreaming);
        }
        mock.respond_with(FaultResponder { vendor, fault })
            .up_to_n_times(times)
            .with_priority(FAULT_PRIORITY)
            .mount(self.server(vendor))
            .await;
    }

    /// Answers the next `times` requests of `vendor` with `reply` (plain or streamed, as each
    /// request asks), in the order scripted; faults injected meanwhile still win.
    pub async fn reply(&self, vendor: Vendor, reply: Reply, times: u64) {
        let route = match vendor {
            Vendor::Bedrock => r"^/model/[^/]+/converse(-stream)?$",
            Vendor::OpenAi => r"^/v1/chat/completions$",
        };
        Mock::given(method("POST"))
            .and(path_regex(route))
            .respond_with(Scripted { vendor, reply })
            .up_to_n_times(times)
            .with_priority(REPLY_PRIORITY)
            .mount(self.server(vendor))
            .await;
    }

    /// Every request `vendor`'s server received, in order.
    pub async fn requests(&self, vendor: Vendor) -> Vec<Request> {
        self.server(vendor)
            .received_requests()
            .await
            .expect("stand-ins record their requests (wiremock's default)")
    }

    /// How many requests `vendor`'s server received.
    pub async fn calls(&self, vendor: Vendor) -> usize {
        self.requests(vendor).await.len()
    }

    /// The JSON bodies `vendor`'s server received, in order.
    pub async fn bodies(&self, vendor: Vendor) -> Vec<Value> {
        self.requests(vendor)
            .await
            .iter()
            .map(|request| serde_json::from_slice(&request.body).unwrap_or(Value::Null))
            .collect()
    }
}

/// Matches OpenAI requests with `"stream": true`.
struct IsStreaming;

impl wiremock::Match for IsStreaming {
    fn matches(&self, request: &Request) -> bool {
        body_json(request)["stream"] == json!(true)
    }
}

fn body_json(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
}

/// The facts of one request the answer depends on.
struct Asked {
    streaming: bool,
    /// The forced tool's name (Bedrock JSON mode).
    json_tool: Option<String>,
    /// OpenAI `response_format` is JSON.
    json_format: bool,
    input_tokens: u32,
}

impl Asked {
    fn read(vendor: Vendor, request: &Request) -> Self {
        let body = body_json(request);
        let message_bytes: usize = body["messages"]
            .as_array()
            .map(|messages| messages.iter().map(|m| m.to_string().len()).sum())
            .unwrap_or(0)
            + body["system"].to_string().len();
        let input_tokens = u32::try_from(message_bytes / 4).unwrap_or(u32::MAX).max(1);
        match vendor {
            Vendor::Bedrock => Self {
                streaming: request.url.path().ends_with("/converse-stream"),
                json_tool: body["toolConfig"]["tools"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|tool| tool["toolSpec"]["name"].as_str())
                    .find(|name| *name == BEDROCK_JSON_TOOL)
                    .map(str::to_owned),
                json_format: false,
                input_tokens,
            },
            Vendor::OpenAi => Self {
                streaming: body["stream"] == json!(true),
                json_tool: None,
                json_format: matches!(
                    body["response_format"]["type"].as_str(),
                    Some("json_object" | "json_schema")
                ),
                input_tokens,
            },
        }
    }
}

fn words(text: &str) -> Vec<String> {
    // Keep the separating space with each word, so the deltas concatenate to the text.
    let mut pieces = Vec::new();
    for (index, word) in text.split(' ').enumerate() {
        pieces.push(if index == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        });
    }
    pieces
}

/// The default answer of a stand-in.
struct Answer {
    vendor: Vendor,
    delay: Duration,
}

impl Answer {
    fn new(vendor: Vendor) -> Self {
        Self {
            vendor,
            delay: Duration::ZERO,
        }
    }

    fn complete(&self, request: &Request) -> ResponseTemplate {
        let asked = Asked::read(self.vendor, request);
        let response = match self.vendor {
            Vendor::Bedrock => bedrock_answer(&asked, true),
            Vendor::OpenAi => openai_answer(&asked, true),
        };
        response.set_delay(self.delay)
    }
}

impl Respond for Answer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        refusal(self.vendor, request).unwrap_or_else(|| self.complete(request))
    }
}

/// The 400 the real service answers a request shaped in a way it refuses — the mistakes a
/// tool-calling mapping can make — so such a mistake fails a test instead of passing
/// against a lenient stand-in. The messages are the services' own.
fn refusal(vendor: Vendor, request: &Request) -> Option<ResponseTemplate> {
    let body = body_json(request);
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    match vendor {
        Vendor::Bedrock => {
            let tool_blocks = messages.iter().any(|message| {
                message["content"].as_array().is_some_and(|blocks| {
                    blocks.iter().any(|block| {
                        block.get("toolUse").is_some() || block.get("toolResult").is_some()
                    })
                })
            });
            (tool_blocks && body.get("toolConfig").is_none()).then(|| {
                bedrock_error(
                    400,
                    "ValidationException",
                    "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
                )
            })
        }
        Vendor::OpenAi => {
            let refused = |message: &str, param: &str| {
                json_response(
                    400,
                    &openai_fixtures::error_body(
                        message,
                        "invalid_request_error",
                        Some(param),
                        None,
                    ),
                )
            };
            if body.get("parallel_tool_calls").is_some() && body.get("tools").is_none() {
                return Some(refused(
                    "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' are specified.",
                    "parallel_tool_calls",
                ));
            }
            let mut called: Vec<&str> = Vec::new();
            for message in &messages {
                if let Some(calls) = message["tool_calls"].as_array() {
                    called.extend(calls.iter().filter_map(|call| call["id"].as_str()));
                }
                if message["role"] == "tool"
                    && !message["tool_call_id"]
                        .as_str()
                        .is_some_and(|id| called.contains(&id))
                {
                    return Some(refused(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                        "messages.[].role",
                    ));
                }
            }
            None
        }
    }
}

fn reply_text(vendor: Vendor, asked: &Asked) -> &'static str {
    if asked.json_tool.is_some() || asked.json_format {
        JSON_REPLY
    } else if vendor == Vendor::Bedrock {
        BEDROCK_REPLY
    } else {
        OPENAI_REPLY
    }
}

fn output_tokens(text: &str) -> u32 {
    u32::try_from(words(text).len()).unwrap_or(u32::MAX)
}

/// Bedrock's answer; when `whole` is false, a stream cut after its first delta.
fn bedrock_answer(asked: &Asked, whole: bool) -> ResponseTemplate {
    let text = reply_text(Vendor::Bedrock, asked);
    let output = output_tokens(text);
    if !asked.streaming {
        let body = match &asked.json_tool {
            Some(tool) => crate::eventstream::converse_tool_use(
                tool,
                serde_json::from_str(JSON_REPLY).unwrap_or(Value::Null),
                asked.input_tokens,
                output,
            ),
            None => crate::eventstream::converse_text(text, "end_turn", asked.input_tokens, output),
        };
        return crate::eventstream::converse_response(body);
    }
    let mut stream = ConverseStreamBody::new().message_start();
    let pieces = words(text);
    let stop_reason = match &asked.json_tool {
        Some(tool) => {
            stream = stream.tool_use_start("tooluse_standin", tool);
            "tool_use"
        }
        None => "end_turn",
    };
    let sent = if whole { pieces.len() } else { 1 };
    for piece in pieces.iter().take(sent) {
        stream = if asked.json_tool.is_some() {
            stream.tool_input(piece)
        } else {
            stream.text(piece)
        };
    }
    if whole {
        stream = stream
            .block_stop()
            .message_stop(stop_reason)
            .metadata(asked.input_tokens, output);
    }
    ResponseTemplate::new(200).set_body_raw(stream.to_bytes(), EVENT_STREAM_CONTENT_TYPE)
}

/// OpenAI's answer; when `whole` is false, a stream cut after its first delta.
fn openai_answer(asked: &Asked, whole: bool) -> ResponseTemplate {
    let text = reply_text(Vendor::OpenAi, asked);
    let output = u64::from(output_tokens(text));
    let input = u64::from(asked.input_tokens);
    if !asked.streaming {
        return json_response(
            200,
            &openai_fixtures::chat_completion("gpt-4-0613", text, input, output),
        );
    }
    let pieces = words(text);
    let mut events = vec![sse_role_chunk()];
    if whole {
        events.extend(pieces.iter().map(|piece| sse_text_chunk(piece)));
        events.push(sse_finish_chunk("stop"));
        events.push(sse_usage_chunk(input, 0, output));
        events.push(sse_done());
    } else {
        events.push(sse_text_chunk(&pieces[0]));
    }
    openai_fixtures::sse_response(&events)
}

/// Serves one scripted [`Reply`].
struct Scripted {
    vendor: Vendor,
    reply: Reply,
}

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(refused) = refusal(self.vendor, request) {
            return refused;
        }
        let asked = Asked::read(self.vendor, request);
        let (text, calls) = match &self.reply {
            Reply::Text(text) => (Some(text.as_str()), &[][..]),
            Reply::ToolCalls { text, calls } => (text.as_deref(), calls.as_slice()),
        };
        match self.vendor {
            Vendor::Bedrock => scripted_bedrock(&asked, text, calls),
            Vendor::OpenAi => scripted_openai(&asked, text, calls),
        }
    }
}

/// A scripted Bedrock answer. Text in JSON mode is the forced JSON tool's input; tool
/// calls are toolUse blocks (stop reason `tool_use`).
fn scripted_bedrock(asked: &Asked, text: Option<&str>, calls: &[ToolCall]) -> ResponseTemplate {
    let output = output_tokens(text.unwrap_or_default()) + calls_tokens(calls);
    let json_answer = asked.json_tool.as_deref().filter(|_| calls.is_empty());
    if !asked.streaming {
        let body = match (json_answer, text) {
            (Some(tool), Some(text)) => crate::eventstream::converse_tool_use(
                tool,
                serde_json::from_str(text).unwrap_or(Value::Null),
                asked.input_tokens,
                output,
            ),
            _ if calls.is_empty() => crate::eventstream::converse_text(
                text.unwrap_or_default(),
                "end_turn",
                asked.input_tokens,
                output,
            ),
            _ => {
                let calls: Vec<_> = calls
                    .iter()
                    .map(|call| {
                        let input =
                            serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
                        (call.id.as_str(), call.name.as_str(), input)
                    })
                    .collect();
                crate::eventstream::converse_tool_calls(text, &calls, asked.input_tokens, output)
            }
        };
        return crate::eventstream::converse_response(body);
    }
    let mut stream = ConverseStreamBody::new().message_start();
    let mut stop_reason = "end_turn";
    match (json_answer, text) {
        (Some(tool), Some(text)) => {
            stream = stream.tool_use_start("tooluse_standin_json", tool);
            for piece in words(text) {
                stream = stream.tool_input(&piece);
            }
            stream = stream.block_stop();
            stop_reason = "tool_use";
        }
        (_, Some(text)) => {
            for piece in words(text) {
                stream = stream.text(&piece);
            }
            stream = stream.block_stop();
        }
        (_, None) => {}
    }
    for call in calls {
        stream = stream.tool_use_start(&call.id, &call.name);
        for fragment in halves(&call.arguments) {
            stream = stream.tool_input(fragment);
        }
        stream = stream.block_stop();
        stop_reason = "tool_use";
    }
    let stream = stream
        .message_stop(stop_reason)
        .metadata(asked.input_tokens, output);
    ResponseTemplate::new(200).set_body_raw(stream.to_bytes(), EVENT_STREAM_CONTENT_TYPE)
}

/// A scripted OpenAI answer; tool calls come with finish reason `tool_calls`.
fn scripted_openai(asked: &Asked, text: Option<&str>, calls: &[ToolCall]) -> ResponseTemplate {
    let output = u64::from(output_tokens(text.unwrap_or_default()) + calls_tokens(calls));
    let input = u64::from(asked.input_tokens);
    if !asked.streaming {
        let body = if calls.is_empty() {
            openai_fixtures::chat_completion("gpt-4-0613", text.unwrap_or_default(), input, output)
        } else {
            openai_fixtures::tool_calls_response(
                "gpt-4-0613",
                text,
                &fixture_calls(calls),
                input,
                output,
            )
        };
        return json_response(200, &body);
    }
    let mut events = vec![sse_role_chunk()];
    events.extend(
        words(text.unwrap_or_default())
            .iter()
            .filter(|piece| !piece.is_empty())
            .map(|piece| sse_text_chunk(piece)),
    );
    for (index, call) in (0u32..).zip(calls) {
        events.push(openai_fixtures::sse_tool_call_start_chunk(
            index, &call.id, &call.name,
        ));
        for fragment in halves(&call.arguments) {
            events.push(openai_fixtures::sse_tool_call_arguments_chunk(
                index, fragment,
            ));
        }
    }
    events.push(sse_finish_chunk(if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }));
    events.push(sse_usage_chunk(input, 0, output));
    events.push(sse_done());
    openai_fixtures::sse_response(&events)
}

fn fixture_calls(calls: &[ToolCall]) -> Vec<openai_fixtures::FixtureToolCall<'_>> {
    calls
        .iter()
        .map(|call| openai_fixtures::FixtureToolCall::new(&call.id, &call.name, &call.arguments))
        .collect()
}

/// `text` in two fragments split on a character boundary (empty fragments left out): a
/// call's arguments arrive in pieces, as the providers send them.
fn halves(text: &str) -> impl Iterator<Item = &str> {
    let middle = (0..=text.len() / 2)
        .rev()
        .find(|at| text.is_char_boundary(*at))
        .unwrap_or(0);
    let (head, tail) = text.split_at(middle);
    [head, tail].into_iter().filter(|piece| !piece.is_empty())
}

/// Output tokens of tool calls: a word's worth per four bytes of name and arguments.
fn calls_tokens(calls: &[ToolCall]) -> u32 {
    let bytes: usize = calls.iter().map(|c| c.name.len() + c.arguments.len()).sum();
    u32::try_from(bytes / 4).unwrap_or(u32::MAX)
}

/// Serves one [`Fault`].
struct FaultResponder {
    vendor: Vendor,
    fault: Fault,
}

impl Respond for FaultResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match (&self.fault, self.vendor) {
            (Fault::Unavailable, Vendor::Bedrock) => bedrock_error(
                503,
                "ServiceUnavailableException",
                "Bedrock is unavailable. Try your request again.",
            ),
            (Fault::Unavailable, Vendor::OpenAi) => json_response(503, &server_error()),
            (Fault::Throttled { retry_after_secs }, Vendor::Bedrock) => bedrock_error(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
            )
            .insert_header("retry-after", retry_after_secs.to_string().as_str()),
            (Fault::Throttled { retry_after_secs }, Vendor::OpenAi) => {
                json_response(429, &rate_limit_error())
                    .insert_header("retry-after", retry_after_secs.to_string().as_str())
            }
            (Fault::CutStream, vendor) => {
                let asked = Asked::read(vendor, request);
                match vendor {
                    Vendor::Bedrock => bedrock_answer(&asked, false),
                    Vendor::OpenAi => openai_answer(&asked, false),
                }
            }
            (Fault::Slow(delay), vendor) => Answer {
                vendor,
                delay: *delay,
            }
            .complete(request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_concatenate_to_the_reply() {
        assert_eq!(words(BEDROCK_REPLY).concat(), BEDROCK_REPLY);
        assert_eq!(output_tokens(BEDROCK_REPLY), 7);
    }

    #[tokio::test]
    async fn the_stand_ins_refuse_tool_blocks_without_a_tool_config_and_orphan_tool_messages() {
        let standins = StandIns::start().await;
        let orphan = r#"{"model":"gpt-4","messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"c1","content":"x"}]}"#;
        let answered = r#"{"model":"gpt-4","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"t","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"x"}],"tools":[{"type":"function","function":{"name":"t","parameters":{"type":"object"}}}]}"#;
        let openai = standins.openai_base_url();
        assert_eq!(raw_post(&openai, "/v1/chat/completions", orphan).await, 400);
        assert_eq!(
            raw_post(&openai, "/v1/chat/completions", answered).await,
            200
        );
        let bedrock = standins.bedrock_endpoint();
        let no_config = r#"{"messages":[{"role":"user","content":[{"toolResult":{"toolUseId":"c1","content":[{"text":"x"}]}}]}]}"#;
        assert_eq!(
            raw_post(&bedrock, "/model/m/converse", no_config).await,
            400
        );
    }

    #[tokio::test]
    async fn faults_are_used_up_before_the_default_answer_returns() {
        let standins = StandIns::start().await;
        standins.inject(Vendor::OpenAi, Fault::Unavailable, 1).await;
        let statuses = two_raw_posts(&standins.openai_base_url()).await;
        assert_eq!(statuses, (503, 200));
        assert_eq!(standins.calls(Vendor::OpenAi).await, 2);
    }

    /// Two POSTs with a raw TCP client (the testkit has no HTTP client dependency).
    async fn two_raw_posts(base_url: &str) -> (u16, u16) {
        let body = r#"{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}"#;
        (
            raw_post(base_url, "/v1/chat/completions", body).await,
            raw_post(base_url, "/v1/chat/completions", body).await,
        )
    }

    /// One POST of `body` to `path` on the server at `base_url`; its status.
    async fn raw_post(base_url: &str, path: &str, body: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = base_url
            .trim_start_matches("http://")
            .trim_end_matches("/v1")
            .to_owned();
        let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response[9..12].parse().unwrap()
    }
}
