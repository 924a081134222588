"""The invoke tab's chat playground: the browser posts the conversation here, and the console's server sends it
to the service through the gateway as an OpenAI chat completion with "stream": true, relaying the server-sent
events back as they arrive.

Why through the server: the request carries the service token, which must never reach the browser (a
developer of one project could read it from the page and keep it). The browser talks to the console with its
session and CSRF token only; the relay adds the token on the server side. Nothing is buffered: each chunk the
gateway sends is passed on as it comes (`iter_content` without a size), and when the browser goes away Django
closes the generator, which closes the connection to the gateway, which closes the engine's request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import requests
from django.conf import settings

from processors.codes import LLM_PROCESSORS
from services import selectors
from services.errors import InvalidRequest
from services.models import Service

CONNECT_SECONDS = 5
# Between two parts of the answer. A service at zero answers its first token only once an engine has started
# (the gateway's activator holds the request meanwhile), which for an LLM takes minutes.
READ_SECONDS = 600
ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 100


@dataclass
class Relay:
    """An answer to pass on: its status, content type and the chunks as they arrive."""

    status: int
    content_type: str
    chunks: Iterator[bytes]


def offers_chat(service: Service) -> bool:
    """LLM engines speak the OpenAI API; a custom server may too (EAS's LLM images are custom containers)."""
    return (service.spec or {}).get("processor", "custom") in (*LLM_PROCESSORS, "custom")


def chat_body(service: Service, raw: bytes) -> bytes:
    """The browser's {"messages": [...], "max_tokens"?: n} as the OpenAI request the gateway routes by model."""
    try:
        request = json.loads(raw or b"{}")
    except ValueError:
        raise InvalidRequest.at("messages", "the body must be JSON: {\"messages\": [{\"role\", \"content\"}]}")
    messages = request.get("messages") if isinstance(request, dict) else None
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise InvalidRequest.at("messages", f"give 1 to {MAX_MESSAGES} messages")
    for index, message in enumerate(messages):
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise InvalidRequest.at(f"messages[{index}]", f"needs a role ({', '.join(ROLES)}) and a text content")
    body = {"model": service.name, "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": True}
    max_tokens = request.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= 32768:
            raise InvalidRequest.at("max_tokens", "must be an integer from 1 to 32768")
        body["max_tokens"] = max_tokens
    return json.dumps(body).encode()


def chat_url(service: Service) -> str:
    return f"{settings.FERRY_GATEWAY_URL.rstrip('/')}/api/predict/{service.name}/v1/chat/completions"


def relay(service: Service, body: bytes) -> Relay:
    """Sends the chat to the gateway; the answer's chunks are read only as the caller iterates them."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream",
               "Authorization": selectors.service_token(service)}
    try:
        answer = requests.post(chat_url(service), data=body, headers=headers, stream=True,
                               timeout=(CONNECT_SECONDS, READ_SECONDS))
    except requests.RequestException as exc:
        return Relay(502, "application/json", iter([_error(f"The gateway could not be reached: "
                                                           f"{type(exc).__name__}.")]))
    if answer.status_code >= 400:
        text = " ".join(answer.text.split())[:500]
        answer.close()
        return Relay(answer.status_code, "application/json",
                     iter([_error(f"The service answered {answer.status_code}: {text}")]))
    return Relay(answer.status_code, answer.headers.get("Content-Type", "text/event-stream"), _chunks(answer))


def _chunks(answer: requests.Response) -> Iterator[bytes]:
    try:
        yield from answer.iter_content(chunk_size=None)
    except requests.RequestException as exc:
        yield b"event: error\ndata: " + json.dumps({"message": f"The answer stopped: {type(exc).__name__}."}
                                                  ).encode() + b"\n\n"
    finally:
        answer.close()  # also when the browser went away: the gateway and the engine stop too


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message}}).encode()
