"""The gateway seen through the official `openai` Python SDK.

Run by `tests/openai_sdk.rs` as `$FAILOVER_SDK_PYTHON sdk_cases.py CASE`, one case per
run, after the driver has scripted the upstream for that case. Exit 0: the case passed;
exit 1: it failed (the reason, or the traceback of an unexpected exception, on stderr);
exit 2: no such case.

The environment, set by the driver:
  FAILOVER_BASE_URL     the gateway's OpenAI base URL, e.g. http://127.0.0.1:PORT/v1
  FAILOVER_API_KEY      a key allowed every model
  FAILOVER_LIMITED_KEY  another tenant's key, allowed only gpt-3.5-turbo
  FAILOVER_MODEL        the model to ask for (gpt-4)

Only the stdlib and `openai` are imported: the SDK's HTTP client (`httpx` before 3.x,
`httpx2` since) is reached through `openai.DefaultHttpxClient`, so the script does not
depend on which one the pinned release uses.
"""

import json
import os
import sys
import traceback

import openai

PROVIDERS = {"bedrock", "openai"}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class CheckFailed(Exception):
    """A contract the gateway broke (not a bug of this script)."""


def check(cond, msg):
    """Fails the case with `msg` unless `cond`."""
    if not cond:
        raise CheckFailed(msg)


def env(name):
    value = os.environ.get(name)
    if not value:
        raise CheckFailed(f"{name} is not set (the Rust driver sets it)")
    return value


def client(api_key=None, max_retries=0, http_client=None):
    """A client of the gateway; no retries unless a case asks for them, so a status
    error is the gateway's first answer."""
    return openai.OpenAI(
        base_url=env("FAILOVER_BASE_URL"),
        api_key=api_key if api_key is not None else env("FAILOVER_API_KEY"),
        max_retries=max_retries,
        timeout=20,
        http_client=http_client,
    )


def model():
    return env("FAILOVER_MODEL")


def ask(text):
    return [{"role": "user", "content": text}]


def expect_status_error(call, cls, status):
    """Runs `call`, which must raise `cls` with `status`, and checks the error body:
    `{"error": {"message", "type", "param", "code"}}`, message and type non-empty, and the
    SDK's `e.body` (the inner object) equal to it. Returns the exception."""
    try:
        call()
    except cls as e:
        check(
            e.status_code == status,
            f"expected status {status}, got {e.status_code} ({type(e).__name__}: {e})",
        )
        check_error_body(e)
        return e
    except openai.APIConnectionError as e:
        raise CheckFailed(
            f"expected {cls.__name__} ({status}), but no response was read: "
            f"{type(e).__name__}: {e} (cause: {e.__cause__!r})"
        ) from e
    except openai.APIError as e:
        status_code = getattr(e, "status_code", None)
        raise CheckFailed(
            f"expected {cls.__name__} ({status}), got {type(e).__name__} "
            f"(status {status_code}): {e}"
        ) from e
    raise CheckFailed(f"expected {cls.__name__} ({status}), but the call succeeded")


def check_error_body(e):
    """The gateway's error body on a status error, and the SDK reading it as such."""
    try:
        whole = e.response.json()
    except ValueError:
        raise CheckFailed(
            f"{e.status_code}: the error body is not JSON: {e.response.text[:300]!r}"
        ) from None
    check(
        isinstance(whole, dict) and isinstance(whole.get("error"), dict),
        f"{e.status_code}: the body has no `error` object: {whole!r}",
    )
    error = whole["error"]
    for key in ("message", "type", "param", "code"):
        check(key in error, f"{e.status_code}: error.{key} is missing: {error!r}")
    for key in ("message", "type"):
        check(
            isinstance(error[key], str) and error[key],
            f"{e.status_code}: error.{key} is not a non-empty string: {error!r}",
        )
    check(
        e.body == error,
        f"{e.status_code}: the SDK's e.body {e.body!r} is not the error object {error!r}",
    )


def check_header(headers, name, want, where=""):
    """`headers[name] == want`, with both in the message when not."""
    got = headers.get(name)
    check(got == want, f"{where}{name} is {got!r}, not {want!r}")


def case_plain():
    """A plain completion parses into the SDK's ChatCompletion, and the gateway's own
    headers ride along on it."""
    raw = client().chat.completions.with_raw_response.create(
        model=model(), messages=ask("What is 2+2?")
    )
    headers = raw.headers
    completion = raw.parse()
    check(
        completion.object == "chat.completion",
        f"object is {completion.object!r}, not 'chat.completion'",
    )
    check(completion.choices, "no choices")
    choice = completion.choices[0]
    content = choice.message.content
    check(
        isinstance(content, str) and content,
        f"content is not a non-empty string: {content!r}",
    )
    check(
        choice.finish_reason == "stop",
        f"finish_reason is {choice.finish_reason!r}, not 'stop'",
    )
    check(
        completion.usage is not None and completion.usage.total_tokens > 0,
        f"usage.total_tokens is not > 0: {completion.usage!r}",
    )
    check(headers.get("x-request-id"), "x-request-id is missing or empty")
    provider = headers.get("x-failover-provider")
    check(
        provider in PROVIDERS,
        f"x-failover-provider is {provider!r}, not one of {sorted(PROVIDERS)}",
    )
    check_header(headers, "x-failover-cached", "false")
    for name in ("x-failover-cost-usd", "x-failover-attempts"):
        check(headers.get(name), f"{name} is missing or empty")


def case_plain_cached():
    """The same request twice: the second is answered from the cache (x-failover-cached:
    true) with the same content."""
    completions = client().chat.completions.with_raw_response
    first = completions.create(model=model(), messages=ask("What is 2+2?"))
    second = completions.create(model=model(), messages=ask("What is 2+2?"))
    check_header(first.headers, "x-failover-cached", "false", "first answer: ")
    check_header(second.headers, "x-failover-cached", "true", "second answer: ")
    a = first.parse().choices[0].message.content
    b = second.parse().choices[0].message.content
    check(a == b, f"the cached content {b!r} differs from the first {a!r}")
    check(
        first.headers.get("x-request-id") != second.headers.get("x-request-id"),
        "both answers carry the same x-request-id",
    )


def case_stream():
    """A stream with include_usage: SSE chunks the SDK parses, one id, text, a stop, and
    a last usage chunk with no choices."""
    stream = client().chat.completions.create(
        model=model(),
        messages=ask("What is 2+2?"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    check(chunks, "the stream had no chunk")
    for chunk in chunks:
        check(
            chunk.object == "chat.completion.chunk",
            f"a chunk's object is {chunk.object!r}: {chunk!r}",
        )
    ids = {chunk.id for chunk in chunks}
    check(len(ids) == 1, f"the chunks carry {len(ids)} ids: {sorted(ids)}")
    text = "".join(choice.delta.content or "" for chunk in chunks for choice in chunk.choices)
    check(text, "the deltas carry no content")
    reasons = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    check(reasons == ["stop"], f"finish reasons are {reasons!r}, not ['stop']")
    last = chunks[-1]
    check(last.choices == [], f"the last chunk has choices: {last!r}")
    check(
        last.usage is not None and last.usage.total_tokens > 0,
        f"the last chunk's usage.total_tokens is not > 0: {last.usage!r}",
    )
    for chunk in chunks[:-1]:
        check(chunk.usage is None, f"usage before the last chunk: {chunk!r}")


def case_json_mode():
    """response_format json_object: the content is the JSON the upstream answered."""
    completion = client().chat.completions.create(
        model=model(),
        messages=ask("What is 2+2? Answer in JSON."),
        response_format={"type": "json_object"},
    )
    content = completion.choices[0].message.content
    try:
        parsed = json.loads(content)
    except (TypeError, ValueError):
        raise CheckFailed(f"the content is not JSON: {content!r}") from None
    check(parsed == {"answer": 4}, f"the content is {parsed!r}, not {{'answer': 4}}")


def case_tools():
    """A tool round trip: turn 1 is a tool call; turn 2 sends the assistant message back
    as SDK users do (the returned message object itself, serialized by the SDK) with the
    tool's result, and gets the final text."""
    api = client().chat.completions
    messages = ask("What is the weather in Paris?")
    first = api.create(model=model(), messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    check(
        choice.finish_reason == "tool_calls",
        f"turn 1 finish_reason is {choice.finish_reason!r}, not 'tool_calls'",
    )
    calls = choice.message.tool_calls
    check(calls and len(calls) == 1, f"turn 1 has not one tool call: {calls!r}")
    call = calls[0]
    check(call.id == "call_1", f"tool call id is {call.id!r}, not 'call_1'")
    check(call.type == "function", f"tool call type is {call.type!r}")
    check(
        call.function.name == "get_weather",
        f"tool name is {call.function.name!r}, not 'get_weather'",
    )
    arguments = call.function.arguments
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError):
        raise CheckFailed(f"tool arguments are not JSON: {arguments!r}") from None
    check(parsed == {"city": "Paris"}, f"tool arguments are {parsed!r}")

    messages = messages + [
        choice.message,
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    second = api.create(model=model(), messages=messages, tools=[WEATHER_TOOL])
    content = second.choices[0].message.content
    check(
        content == "It is sunny in Paris.",
        f"turn 2 content is {content!r}, not 'It is sunny in Paris.'",
    )
    check(
        second.choices[0].finish_reason == "stop",
        f"turn 2 finish_reason is {second.choices[0].finish_reason!r}, not 'stop'",
    )


def case_tools_stream():
    """A streamed tool call assembled from its deltas by index, the way SDK users do:
    id and name from the first delta of an index, arguments concatenated."""
    stream = client().chat.completions.create(
        model=model(),
        messages=ask("What is the weather in Paris?"),
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls = {}
    reasons = []
    for chunk in stream:
        for choice in chunk.choices:
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                if delta.id:
                    check(
                        call["id"] is None,
                        f"tool call {delta.index}: a second id {delta.id!r}",
                    )
                    call["id"] = delta.id
                if delta.function is not None:
                    if delta.function.name:
                        check(
                            call["name"] is None,
                            f"tool call {delta.index}: a second name {delta.function.name!r}",
                        )
                        call["name"] = delta.function.name
                    call["arguments"] += delta.function.arguments or ""
    check(list(calls) == [0], f"tool call indexes are {sorted(calls)}, not [0]")
    call = calls[0]
    check(call["id"] == "call_1", f"tool call id is {call['id']!r}, not 'call_1'")
    check(
        call["name"] == "get_weather",
        f"tool name is {call['name']!r}, not 'get_weather'",
    )
    try:
        parsed = json.loads(call["arguments"])
    except ValueError:
        raise CheckFailed(f"assembled arguments are not JSON: {call['arguments']!r}") from None
    check(parsed == {"city": "Paris"}, f"assembled arguments are {parsed!r}")
    check(reasons == ["tool_calls"], f"finish reasons are {reasons!r}, not ['tool_calls']")


def case_error_400():
    """An invalid request (temperature 5) is a 400: BadRequestError with the error body."""
    expect_status_error(
        lambda: client().chat.completions.create(
            model=model(), messages=ask("What is 2+2?"), temperature=5.0
        ),
        openai.BadRequestError,
        400,
    )


def case_error_401():
    """An unknown key is a 401: AuthenticationError."""
    expect_status_error(
        lambda: client(api_key="sk-wrong").chat.completions.create(
            model=model(), messages=ask("What is 2+2?")
        ),
        openai.AuthenticationError,
        401,
    )


def case_error_403():
    """A key asking for a model its tenant is not allowed is a 403: PermissionDeniedError."""
    expect_status_error(
        lambda: client(api_key=env("FAILOVER_LIMITED_KEY")).chat.completions.create(
            model=model(), messages=ask("What is 2+2?")
        ),
        openai.PermissionDeniedError,
        403,
    )


def case_error_404():
    """An unknown model is a 404: NotFoundError."""
    expect_status_error(
        lambda: client().chat.completions.create(
            model="no-such-model", messages=ask("What is 2+2?")
        ),
        openai.NotFoundError,
        404,
    )


def case_error_413():
    """A 3 MiB body is a 413 the SDK reads as a response (APIStatusError: it has no class
    of its own), not a broken connection."""
    expect_status_error(
        lambda: client().chat.completions.create(
            model=model(), messages=ask("a" * (3 * 1024 * 1024))
        ),
        openai.APIStatusError,
        413,
    )


def case_error_502():
    """Every provider failed: a 502, InternalServerError (no retries)."""
    expect_status_error(
        lambda: client().chat.completions.create(model=model(), messages=ask("What is 2+2?")),
        openai.InternalServerError,
        502,
    )


def case_error_503():
    """Every breaker is open: a 503 (InternalServerError, an APIStatusError) with a
    Retry-After in seconds."""
    e = expect_status_error(
        lambda: client().chat.completions.create(model=model(), messages=ask("What is 2+2?")),
        openai.APIStatusError,
        503,
    )
    retry_after = e.response.headers.get("retry-after")
    check(
        retry_after is not None and retry_after.strip().isdigit(),
        f"the 503 has no Retry-After in whole seconds: {retry_after!r}",
    )


def wait_for_driver():
    """Tells the driver this process is ready (its imports done) and waits for its go:
    the driver then opens the breakers, so their short open period starts now rather than
    before the interpreter had started."""
    print("ready", flush=True)
    sys.stdin.readline()


def case_retry_503():
    """The SDK's own retries get through a short outage: with max_retries=3 it retries
    the 503 (waiting its Retry-After) until the breakers let a call through, and
    create() succeeds."""
    seen = []

    def record(response):
        seen.append((response.status_code, response.headers.get("retry-after")))

    http_client = openai.DefaultHttpxClient(event_hooks={"response": [record]})
    sdk = client(max_retries=3, http_client=http_client)
    wait_for_driver()
    completion = sdk.chat.completions.create(
        model=model(), messages=ask("What is 2+2?")
    )
    statuses = [status for status, _ in seen]
    check(completion.choices[0].message.content, "the completion has no content")
    check(len(seen) >= 2, f"no retry happened: statuses {statuses}")
    check(statuses[0] == 503, f"the first status is not 503: {statuses}")
    check(statuses[-1] == 200, f"the last status is not 200: {statuses}")
    check(seen[0][1], f"the first 503 had no retry-after header: {seen!r}")


def case_midstream_error():
    """A stream cut after the gateway committed: content arrives, then the gateway's
    `data: {"error": ...}` frame makes the SDK raise APIError inside the iteration (a
    clean end would look like a complete answer)."""
    stream = client().chat.completions.create(
        model=model(), messages=ask("What is 2+2?"), stream=True
    )
    text = []
    try:
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    text.append(choice.delta.content)
    except openai.APIConnectionError as e:
        # Also an APIError, but the transport failing is not the gateway saying so.
        raise CheckFailed(
            f"the stream broke ({type(e).__name__}: {e}; cause {e.__cause__!r}) "
            "instead of ending with an error frame"
        ) from e
    except openai.APIError as e:
        check(text, f"the error came before any content: {e}")
        check(
            isinstance(e.body, dict)
            and isinstance(e.body.get("message"), str)
            and e.body["message"],
            f"the error frame has no error.message: {e.body!r}",
        )
        check(e.message == e.body["message"], f"the SDK's message {e.message!r} is not the frame's")
        return
    raise CheckFailed(f"the stream ended cleanly after {''.join(text)!r}; expected an APIError")


CASES = {
    "plain": case_plain,
    "plain_cached": case_plain_cached,
    "stream": case_stream,
    "json_mode": case_json_mode,
    "tools": case_tools,
    "tools_stream": case_tools_stream,
    "error_400": case_error_400,
    "error_401": case_error_401,
    "error_403": case_error_403,
    "error_404": case_error_404,
    "error_413": case_error_413,
    "error_502": case_error_502,
    "error_503": case_error_503,
    "retry_503": case_retry_503,
    "midstream_error": case_midstream_error,
}


def main(argv):
    if len(argv) != 2 or argv[1] not in CASES:
        print(f"usage: {argv[0]} CASE, one of: {', '.join(CASES)}", file=sys.stderr)
        return 2
    name = argv[1]
    try:
        CASES[name]()
    except CheckFailed as failed:
        print(f"sdk case {name} failed (openai {openai.__version__}): {failed}", file=sys.stderr)
        return 1
    except Exception:
        print(
            f"sdk case {name}: unexpected exception (openai {openai.__version__}):",
            file=sys.stderr,
        )
        traceback.print_exc()
        return 1
    print(f"sdk case {name} passed (openai {openai.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
