//! A stream's chunks as OpenAI's server-sent events, byte for byte: a first chunk with the
//! role, one per text delta and tool-call item, a last one with the finish reason, the
//! usage chunk when asked for (`stream_options.include_usage`), then `data: [DONE]` — only
//! after a stream that completed.

use failover_provider::{StreamChunk, StreamSummary};
use serde::Serialize;

use super::response::{WireUsage, completion_id, finish_reason};

/// Writes one stream's events.
pub(crate) struct ChunkEncoder {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: Option<()>,
    choices: &'a [ChunkChoice<'a>],
    // With `include_usage`, OpenAI sends `"usage": null` on every chunk but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<WireUsage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl ChunkEncoder {
    /// An encoder for the stream of request `request_id`.
    pub(crate) fn new(request_id: &str, model: &str, created: u64, include_usage: bool) -> Self {
        Self {
            id: completion_id(request_id),
            created,
            model: model.to_owned(),
            include_usage,
        }
    }

    /// The first event: the assistant's role and empty content, as OpenAI starts.
    pub(crate) fn opening(&self, out: &mut Vec<u8>) {
        self.write(
            out,
            Delta {
                role: Some("assistant"),
                content: Some(""),
                tool_calls: None,
            },
            None,
        );
    }

    /// The events for one chunk of the engine's stream.
    pub(crate) fn chunk(&self, chunk: &StreamChunk, out: &mut Vec<u8>) {
        match chunk {
            StreamChunk::Delta { text } => self.write(
                out,
                Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                None,
            ),
            StreamChunk::ToolCallStart { index, id, name } => self.write(
                out,
                Delta {
                    tool_calls: Some([ToolCallDelta {
                        index: *index,
                        id: Some(id),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(name),
                            arguments: "",
                        },
                    }]),
                    ..Delta::default()
                },
                None,
            ),
            StreamChunk::ToolCallDelta { index, arguments } => self.write(
                out,
                Delta {
                    tool_calls: Some([ToolCallDelta {
                        index: *index,
                        id: None,
                        kind: None,
                        function: FunctionDelta {
                            name: None,
                            arguments,
                        },
                    }]),
                    ..Delta::default()
                },
                None,
            ),
            // OpenAI has no event for a call's end: the next call or the finish says it.
            StreamChunk::ToolCallEnd { .. } => {}
            StreamChunk::Done(summary) => self.done(summary, out),
        }
    }

    fn done(&self, summary: &StreamSummary, out: &mut Vec<u8>) {
        self.write(
            out,
            Delta::default(),
            Some(finish_reason(&summary.finish_reason)),
        );
        if self.include_usage {
            self.frame(out, &[], Some(Some(summary.usage.into())));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn write(&self, out: &mut Vec<u8>, delta: Delta<'_>, finish_reason: Option<&'static str>) {
        let choices = [ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        }];
        let usage = self.include_usage.then_some(None);
        self.frame(out, &choices, usage);
    }

    fn frame(
        &self,
        out: &mut Vec<u8>,
        choices: &[ChunkChoice<'_>],
        usage: Option<Option<WireUsage>>,
    ) {
        out.extend_from_slice(b"data: ");
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices,
            usage,
        };
        // Writing strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &chunk);
        out.extend_from_slice(b"\n\n");
    }
}

#[cfg(test)]
mod tests {
    use failover_provider::{FinishReason, RequestId, TokenUsage};

    use super::*;

    fn events(out: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter(|event| !event.is_empty() && *event != "data: [DONE]")
            .map(|event| serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn a_tool_call_stream_is_openais_chunk_sequence() {
        let encoder = ChunkEncoder::new("r1", "gpt-4", 7, true);
        let mut out = Vec::new();
        encoder.opening(&mut out);
        for chunk in [
            StreamChunk::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "get_weather".into(),
            },
            StreamChunk::ToolCallDelta {
                index: 0,
                arguments: "{\"city\":".into(),
            },
            StreamChunk::ToolCallDelta {
                index: 0,
                arguments: "\"Paris\"}".into(),
            },
            StreamChunk::ToolCallEnd { index: 0 },
            StreamChunk::Done(StreamSummary {
                request_id: RequestId::new("r1"),
                provider: "bedrock".into(),
                model: "m".into(),
                tool_calls: Vec::new(),
                finish_reason: FinishReason::ToolUse,
                usage: TokenUsage {
                    input_tokens: 3,
                    output_tokens: 4,
                    ..TokenUsage::default()
                },
                estimated_cost: failover_provider::Usd::ZERO,
                cached: false,
                latency: std::time::Duration::ZERO,
                attempts: Vec::new(),
            }),
        ] {
            encoder.chunk(&chunk, &mut out);
        }
        assert!(out.ends_with(b"data: [DONE]\n\n"));
        let events = events(&out);
        assert_eq!(events.len(), 6);
        assert!(
            events
                .iter()
                .all(|e| e["id"] == "chatcmpl-r1" && e["object"] == "chat.completion.chunk")
        );
        assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            events[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(
            events[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":"
        );
        assert!(
            events[2]["choices"][0]["delta"]["tool_calls"][0]
                .get("id")
                .is_none()
        );
        assert_eq!(events[4]["choices"][0]["finish_reason"], "tool_calls");
        assert!(events[3]["usage"].is_null());
        assert_eq!(events[5]["choices"], serde_json::json!([]));
        assert_eq!(events[5]["usage"]["total_tokens"], 7);
    }
}
