"""Printing a streamed answer as it arrives (`ferry predict --stream`).

A server-sent-events answer (an OpenAI-style completion with "stream": true, as vLLM and SGLang send it) is read
event by event: for a chat or completion chunk the text it adds (`choices[0].delta.content`, or
`choices[0].text`) is printed as it comes, so the tokens appear one after the other; any other event's data is
printed on its own line; `data: [DONE]` ends it. Any other answer is copied to stdout chunk by chunk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

DONE = "[DONE]"


def sse_data(chunks: Iterable[bytes]) -> Iterator[str]:
    """The `data` of each event, in order, as the chunks arrive (an event may span chunks, and a chunk hold
    several events). Lines of one event's data are joined with newlines, as the EventSource standard says."""
    buffer = b""
    data: list[str] = []
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
    if buffer.strip().startswith(b"data:"):
        data.append(buffer.strip()[5:].decode("utf-8", errors="replace").removeprefix(" "))
    if data:
        yield "\n".join(data)


def delta_text(data: str) -> str | None:
    """The text a completion chunk adds; None for an event that is not one."""
    try:
        event = json.loads(data)
    except ValueError:
        return None
    choices = event.get("choices") if isinstance(event, dict) else None
    if not choices or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    delta = choice.get("delta")
    if isinstance(delta, dict):
        content = delta.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")
    return text if isinstance(text, str) else None


def with_stream_flag(body: bytes) -> bytes:
    """An OpenAI-style request body asks for a stream: a JSON object with `messages` or `prompt` and no `stream`
    gets "stream": true. Any other body is sent as it is."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if isinstance(document, dict) and ("messages" in document or "prompt" in document) and "stream" not in document:
        return json.dumps({**document, "stream": True}).encode()
    return body
