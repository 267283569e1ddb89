"""Tools, tool results, images and chat messages in the OpenAI-style dicts Python users
write, mapped onto the engine's request types (checked in what each stand-in received);
and bad input of every kind: a typed Python exception, never a crash."""

from __future__ import annotations

import json
import math

import pytest

from helpers import SEED
from llm_failover import AWSLLMAdapter, ConfigurationError, InvalidRequest, LLMFailoverError

PNG_1X1 = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


@pytest.mark.asyncio
async def test_tool_call_round_trip(adapter: AWSLLMAdapter, standins, tenant: str) -> None:
    standins.reply("bedrock", tool_calls=[CALL])
    first = await adapter.generate_completion(
        prompt="What is the weather in Paris?", tenant_id=tenant, tools=[WEATHER], tool_choice="auto", **SEED
    )
    assert first["finish_reason"] == "tool_calls"
    assert first["tool_calls"] == [CALL]
    spec = standins.bodies("bedrock")[0]["toolConfig"]["tools"][0]["toolSpec"]
    assert spec["name"] == "get_weather" and spec["inputSchema"]["json"] == WEATHER["function"]["parameters"]

    answer = await adapter.generate_completion(
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": first["tool_calls"]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
        ],
        tenant_id=tenant,
        tools=[WEATHER],
        **SEED,
    )
    assert answer["finish_reason"] == "stop" and answer["provider"] == "bedrock"
    blocks = [b for m in standins.bodies("bedrock")[1]["messages"] for b in m["content"]]
    assert any("toolUse" in b and b["toolUse"]["toolUseId"] == "call_1" for b in blocks)
    assert any("toolResult" in b and b["toolResult"]["toolUseId"] == "call_1" for b in blocks)


@pytest.mark.asyncio
async def test_tools_fail_over_to_openai(adapter: AWSLLMAdapter, standins, tenant: str) -> None:
    standins.inject("bedrock", "unavailable", 1)
    standins.reply("openai", tool_calls=[CALL])
    result = await adapter.generate_completion(
        prompt="Weather in Paris?", tenant_id=tenant, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}, **SEED
    )
    assert result["provider"] == "openai" and result["tool_calls"] == [CALL]
    body = standins.bodies("openai")[0]
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.asyncio
async def test_streamed_tool_call(adapter: AWSLLMAdapter, standins, tenant: str) -> None:
    standins.reply("bedrock", tool_calls=[CALL])
    chunks = [c async for c in adapter.stream_completion(prompt="stream a call", tenant_id=tenant, tools=[WEATHER], **SEED)]
    kinds = [c["type"] for c in chunks]
    assert kinds[0] == "tool_call_start" and kinds[-2:] == ["tool_call_end", "done"]
    assert chunks[0]["name"] == "get_weather" and chunks[0]["id"] == "call_1"
    arguments = "".join(c["arguments"] for c in chunks if c["type"] == "tool_call_delta")
    assert json.loads(arguments) == {"city": "Paris"}
    assert chunks[-1]["tool_calls"] == [CALL]


@pytest.mark.asyncio
async def test_images_as_argument_and_as_content_part(adapter: AWSLLMAdapter, standins, tenant: str) -> None:
    a = await adapter.generate_completion(prompt="What is this?", images=[PNG_1X1], tenant_id=tenant, **SEED)
    b = await adapter.generate_completion(
        messages=[
            {"role": "system", "content": "You describe images."},
            {"role": "user", "content": [{"type": "text", "text": "And this?"}, {"type": "image_url", "image_url": {"url": PNG_1X1}}]},
        ],
        tenant_id=tenant,
        **SEED,
    )
    assert a["provider"] == b["provider"] == "bedrock"
    bodies = standins.bodies("bedrock")
    for body in bodies:
        blocks = body["messages"][-1]["content"]
        assert any("image" in block and block["image"]["format"] == "png" for block in blocks), blocks
    assert bodies[1]["system"] == [{"text": "You describe images."}]


@pytest.mark.asyncio
async def test_json_schema_response_format(adapter: AWSLLMAdapter, tenant: str) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    result = await adapter.generate_completion(
        prompt="2+2 as JSON", tenant_id=tenant,
        **{**SEED, "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}},
    )
    assert json.loads(result["content"]) == {"answer": "4"}


BAD_REQUESTS = [
    ({"tenant_id": None}, "tenant_id must not be empty"),
    ({"agent_id": ""}, "agent_id must not be empty"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": 7.5}, "temperature"),
    ({"temperature": math.nan}, "temperature"),
    ({"timeout": -1.0}, "timeout"),
    ({"timeout": 1e300}, "timeout"),
    ({"response_format": "yaml"}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "schema"),
    ({"messages": [{"role": "user", "content": "x"}]}, "either prompt or messages"),
    ({"prompt": None, "messages": "not a list"}, "messages"),
    ({"prompt": None, "messages": [{"role": "wizard", "content": "x"}]}, "unknown role"),
    ({"prompt": None, "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "content part"),
    ({"images": ["https://example.com/cat.png"]}, "images"),
    ({"images": ["data:image/tiff;base64,AAAA"]}, "images"),
    ({"tools": [{"type": "function", "function": {}}]}, "tools[0]"),
    ({"tools": [{"type": "retrieval"}]}, "function"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"stop": [1, 2]}, "stop"),
    ({"prompt": ""}, "prompt"),
    ({"model": "no-such-model"}, "model"),
]


@pytest.mark.parametrize("change,message", BAD_REQUESTS, ids=[m for _, m in BAD_REQUESTS])
def test_bad_requests_are_invalid_request(adapter: AWSLLMAdapter, standins, tenant: str, change: dict, message: str) -> None:
    kwargs = {"prompt": "hello", "tenant_id": tenant, **SEED, **change}
    with pytest.raises(InvalidRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        adapter.generate_completion_sync(**kwargs)
    assert isinstance(InvalidRequest("x"), ValueError)
    assert standins.calls("bedrock") + standins.calls("openai") == 0


def test_wrong_types_raise_type_errors(adapter: AWSLLMAdapter, tenant: str) -> None:
    with pytest.raises(TypeError):
        adapter.generate_completion_sync(prompt=42, tenant_id=tenant, **SEED)
    with pytest.raises(OverflowError):
        adapter.generate_completion_sync(prompt="x", tenant_id=tenant, **{**SEED, "max_tokens": 2**80})
    with pytest.raises(TypeError):
        adapter.stream_completion(prompt="x", tenant_id=tenant, no_such_argument=1, **SEED)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"cache_ttl": -1.0}, "cache_ttl"),
        ({"timeout": 0.0}, "timeout must be above 0"),
        ({"recovery_timeout": math.inf}, "recovery_timeout"),
        ({"elasticache_endpoint": "http://not-redis:80"}, "ElastiCache"),
        ({"dynamodb_endpoint": "http://127.0.0.1:9", "dynamodb_table": ""}, "no table"),
    ],
)
def test_bad_configuration_is_configuration_error(standins, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AWSLLMAdapter(**{**standins.adapter_kwargs(), **kwargs})


def test_misuse_of_breakers_and_stand_ins(adapter: AWSLLMAdapter, standins) -> None:
    with pytest.raises(InvalidRequest, match="no provider named `anthropic`"):
        adapter.circuit_breaker("anthropic")
    with pytest.raises(InvalidRequest, match="unknown fault"):
        standins.inject("bedrock", "explode")
    with pytest.raises(InvalidRequest, match="unknown stand-in"):
        standins.calls("azure")
    assert issubclass(InvalidRequest, LLMFailoverError)
