"""Small helpers of the Python suite: raw Redis commands (to read the cache back) and
DynamoDB scans (to read the usage ledger back) without the adapter."""

from __future__ import annotations

import socket
from typing import Any, Union
from urllib.parse import urlparse

SEED = dict(agent_id="test_agent", model="gpt-4", temperature=0.3, max_tokens=20, response_format="text")
BEDROCK_REPLY = "Four, as computed by the Bedrock stand-in."
OPENAI_REPLY = "Four, as computed by the OpenAI stand-in."
BEDROCK_GPT4 = "anthropic.claude-3-5-sonnet-20240620-v1:0"
BEDROCK_GPT35 = "anthropic.claude-3-haiku-20240307-v1:0"


def _read_reply(f: Any) -> Union[bytes, int, list, None]:
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        return [_read_reply(f) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected Redis reply {line!r}")


def redis(url: str, *args: Union[str, bytes]) -> Any:
    """One Redis command over RESP."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port or 6379), timeout=5) as s:
        parts = [a.encode() if isinstance(a, str) else a for a in args]
        s.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        return _read_reply(s.makefile("rb"))


def redis_entries(url: str) -> dict[bytes, bytes]:
    """Every string key in the Redis and its value."""
    keys = redis(url, "KEYS", "*") or []
    out = {}
    for key in keys:
        if redis(url, "TYPE", key) == b"string":
            out[key] = redis(url, "GET", key)
    return out


def usage_items(endpoint: str, table: str, tenant_id: str) -> list[dict[str, Any]]:
    """The raw usage items of `tenant_id` in the DynamoDB table (boto3, a moto dependency)."""
    import boto3

    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDSTANDINTEST00000",
        aws_secret_access_key="stand-in-secret-not-real",
    )
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = dict(
        TableName=table,
        FilterExpression="tenant_id = :t",
        ExpressionAttributeValues={":t": {"S": tenant_id}},
    )
    while True:
        page = client.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
