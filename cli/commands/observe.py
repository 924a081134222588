"""instances, events, logs, predict: ListServiceInstances, DescribeServiceEvent, DescribeServiceLog, and a
prediction request through the gateway (or straight to an instance) signed as the EAS SDK signs it."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import click
import requests
from rich.text import Text

from .. import output
from ..client import ApiError, ServiceRef
from ..common import State, output_option, pass_state
from ..signing import eas_predict_headers
from ..streaming import DONE, delta_text, sse_data, with_stream_flag
from ..waiting import EventFeed

LOG_PAGE = 1000
FOLLOW_SECONDS = 0.5
DURATION = re.compile(r"(\d+)([smhd])")


def since_time(text: str | None) -> str | None:
    """`10m`, `2h`, `1d`, `30s` ago, or a time (`2026-11-21 10:00:00`, ISO 8601; UTC), in EAS's format."""
    if not text:
        return None
    match = DURATION.fullmatch(text.strip())
    if match:
        amount, unit = int(match[1]), match[2]
        delta = timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: amount})
        moment = datetime.now(UTC) - delta
    else:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(f"{text!r} is neither a duration like 10m / 2h nor a time like "
                                     "2026-11-21T10:00:00Z", param_hint="--since") from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@click.command()
@click.argument("name")
@output_option()
@pass_state
def instances(state: State, name, fmt):
    """List instances: state, readiness, restarts, address."""
    ref = state.ref(name)
    body = state.client.get(state.client.service_path(ref, "/instances"), PageSize=1000)

    def human(body):
        columns = ["INSTANCE", "STATUS", "READY", "RESTARTS", "VERSION", "ADDRESS", "STARTED"]
        if fmt == "wide":
            columns.append("LAST EXIT")
        rows = []
        for i in body.get("Instances") or []:
            port = i.get("InstancePort")
            row = [i.get("InstanceName"), output.status_text(i.get("Status", "")),
                   f"{i.get('ReadyProcesses', 0)}/{i.get('TotalProcesses', 0)}", i.get("RestartCount"),
                   i.get("Version"), f"{i.get('InstanceIP')}:{port}" if port else i.get("InstanceIP"),
                   i.get("StartTime")]
            rows.append(row + ([i.get("Reason")] if fmt == "wide" else []))
        if rows:
            output.table(columns, rows)
        else:
            output.note(f"{ref.name} has no instances.")

    output.emit(body, fmt, human)


@click.command()
@click.argument("name")
@click.option("--type", "event_type", type=click.Choice(["Normal", "Warning"]), help="Only this type.")
@click.option("-i", "--instance", metavar="INSTANCE", help="Only events of this instance.")
@click.option("--since", metavar="WHEN", help="Only since then: 10m, 2h, 1d or a UTC time.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Most recent N.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until Ctrl-C.")
@output_option("table", "json", "yaml")
@pass_state
@click.pass_context
def events(ctx, state: State, name, event_type, instance, since, limit, follow, fmt):
    """Show a service's events, oldest first.

    \b
      ferry events demo_iris --type Warning --since 1h
    """
    ref = state.ref(name)
    body = state.client.get(state.client.service_path(ref, "/events"), EventType=event_type, InstanceName=instance,
                            StartTime=since_time(since), PageSize=limit)

    def human(body):
        rows = [(e.get("Time"), Text(e.get("Type", ""), style="yellow" if e.get("Type") == "Warning" else ""),
                 e.get("Reason"), e.get("InstanceName"), e.get("Actor", ""), e.get("Message"))
                for e in reversed(body.get("Events") or [])]
        if rows:
            # ACTOR: who acted (a username); blank when Ferry itself did (the reconciler, the autoscaler, ...).
            output.table(["TIME", "TYPE", "REASON", "INSTANCE", "ACTOR", "MESSAGE"], rows)
        elif not follow:
            output.note(f"No events for {ref.name}.")

    output.emit(body, fmt, human)
    if follow:
        feed = EventFeed(state.client, ref, since_time(since) or "")
        feed.new()  # what was just shown
        try:
            while True:
                time.sleep(FOLLOW_SECONDS)
                for event in feed.new():
                    if (not event_type or event.get("Type") == event_type) and (
                            not instance or event.get("InstanceName") == instance):
                        if output.machine(fmt):
                            print(json.dumps(event), flush=True)
                        else:
                            output.line_out(output.event_line(event))
        except KeyboardInterrupt:
            ctx.exit(130)


class LogReader:
    """Lines of one service's logs by index: DescribeServiceLog pages are fixed slices of the matching lines,
    oldest first, so "lines from index N on" is a page number and an offset."""

    def __init__(self, state: State, ref: ServiceRef, *, keyword: str | None, start: str | None):
        self.client, self.path = state.client, state.client.service_path(ref, "/logs")
        self.keyword, self.start = keyword, start

    def _page(self, instance: str | None, number: int, size: int) -> dict:
        return self.client.get(self.path, InstanceName=instance, Keyword=self.keyword, StartTime=self.start,
                               PageNum=number, PageSize=size)

    def total(self, instance: str | None) -> int:
        return int(self._page(instance, 1, 1).get("TotalCount") or 0)

    def lines_from(self, instance: str | None, index: int) -> tuple[list[str], int]:
        """Lines from `index` on, and the total count seen (less than `index`: the log was rotated)."""
        lines, total = [], 0
        while True:
            number, skip = divmod(index + len(lines), LOG_PAGE)
            body = self._page(instance, number + 1, LOG_PAGE)
            total = int(body.get("TotalCount") or 0)
            page = body.get("Logs") or []
            lines.extend(page[skip:])
            if len(page) < LOG_PAGE or index + len(lines) >= total:
                return lines, total


def _last(lines: list[str], tail: int | None) -> list[str]:
    """At most `tail` lines: an instance can write more between counting its lines and reading them."""
    return lines if tail is None else lines[len(lines) - tail:]


def _instance_names(state: State, ref: ServiceRef) -> list[str]:
    listed = state.client.get(state.client.service_path(ref, "/instances"), PageSize=1000).get("Instances") or []
    return [i["InstanceName"] for i in listed]


def _emit_lines(lines: list[str], prefix: str = "") -> None:
    for line in lines:
        sys.stdout.write(f"{prefix}{line}\n")
    sys.stdout.flush()


@click.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("-i", "--instance", metavar="INSTANCE",
              help="Only this instance (lines then come without the instance prefix).")
@click.option("--since", metavar="WHEN", help="Only lines since then: 10m, 2h, 1d or a UTC time.")
@click.option("--grep", "keyword", metavar="TEXT", help="Only lines containing TEXT (server-side).")
@click.option("--tail", type=click.IntRange(min=0), metavar="N", help="Start with the last N lines of each instance.")
@pass_state
@click.pass_context
def logs(ctx, state: State, name, follow, instance, since, keyword, tail):
    """Print instance logs; -f follows them.

    Without -i every instance's lines come, each prefixed with its instance's name.

    \b
      ferry logs demo_iris --tail 50
      ferry logs demo_iris -f --grep predict
    """
    ref = state.ref(name)
    reader = LogReader(state, ref, keyword=keyword, start=since_time(since))
    if not follow:
        if tail is None or instance:  # one request: the server prefixes each instance's lines
            start = max(reader.total(instance) - tail, 0) if tail is not None else 0
            _emit_lines(_last(reader.lines_from(instance, start)[0], tail))
            return
        for each in _instance_names(state, ref):  # the last N of each instance, not of the last one only
            _emit_lines(_last(reader.lines_from(each, max(reader.total(each) - tail, 0))[0], tail), f"{each}: ")
        return
    # Follow instance by instance: each instance's lines only grow, so an index per instance says what is new.
    seen: dict[str, int] = {}
    names = [instance] if instance else _instance_names(state, ref)
    for each in names:
        total = reader.total(each)
        seen[each] = max(total - tail, 0) if tail is not None else 0
    listed_at = time.monotonic()
    try:
        while True:
            for each in names:
                lines, total = reader.lines_from(each, seen.get(each, 0))
                if total < seen.get(each, 0):  # rotated: start over on the new file
                    lines, total = reader.lines_from(each, 0)
                    seen[each] = 0
                _emit_lines(lines, "" if instance else f"{each}: ")
                seen[each] = seen.get(each, 0) + len(lines)
            time.sleep(FOLLOW_SECONDS)
            if not instance and time.monotonic() - listed_at > 2:
                names, listed_at = _instance_names(state, ref), time.monotonic()  # instances come and go
    except KeyboardInterrupt:
        ctx.exit(130)


def _print_stream(answer: requests.Response, url: str, *, as_json: bool) -> None:
    """Each part of the answer as soon as it arrives (iter_content without a size yields what the socket has)."""
    chunks = answer.iter_content(chunk_size=None)
    ended_with_newline = True
    try:
        if not answer.headers.get("Content-Type", "").startswith("text/event-stream"):
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                ended_with_newline = chunk.endswith(b"\n")
        else:
            for data in sse_data(chunks):
                if data == DONE:
                    break
                text = None if as_json else delta_text(data)
                shown = data + "\n" if text is None else text
                sys.stdout.write(shown)
                sys.stdout.flush()
                ended_with_newline = shown.endswith("\n") if shown else ended_with_newline
    except requests.RequestException as exc:
        raise ApiError("StreamBroken", f"The answer from {url} stopped: {type(exc).__name__}.") from None
    finally:
        answer.close()
    if not ended_with_newline:
        sys.stdout.write("\n")
        sys.stdout.flush()


def _body(data: str | None) -> bytes:
    if data is None:
        raise click.UsageError("Give the request body with -d '<json>', -d @FILE or -d @- (stdin).")
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            with open(data[1:], "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {data[1:]}: {exc.strerror}", param_hint="-d") from None
    return data.encode()


def _looks_json(body: bytes) -> bool:
    try:
        json.loads(body)
        return True
    except ValueError:
        return False


@click.command()
@click.argument("name")
@click.option("-d", "--data", metavar="BODY|@FILE|@-", help="The request body, or @file, or @- for stdin.")
@click.option("--endpoint", metavar="URL",
              help="Gateway base URL (default: the service's endpoint from the API, or FERRY_GATEWAY).")
@click.option("-i", "--instance", metavar="INSTANCE",
              help="Bypass the gateway: send to this instance's own address (this host must reach it).")
@click.option("--token", metavar="TOKEN", help="Service token (default: the service's, from the API).")
@click.option("--auth", type=click.Choice(["signed", "token", "none"]), default="signed", show_default=True,
              help="signed: EAS HMAC signature, as the EAS SDK; token: the token as Authorization; none.")
@click.option("--content-type", metavar="TYPE", help="Default: application/json for JSON bodies, else "
                                                      "application/octet-stream.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True, metavar="SECONDS",
              help="Seconds to wait for the answer (with --stream: for each next part of it).")
@click.option("--path", "sub_path", metavar="PATH",
              help="A path under the service, e.g. v1/chat/completions (POST /api/predict/NAME/PATH).")
@click.option("--stream", is_flag=True,
              help="Print the answer as it arrives. Server-sent events of a chat or completion: the text of "
                   "each chunk as it comes (-o json: each event's data, a line each). A JSON body with "
                   "messages or prompt gets \"stream\": true.")
@output_option("table", "json")
@pass_state
def predict(state: State, name, data, endpoint, instance, token, auth, content_type, timeout, sub_path, stream,
            fmt):
    """Send a prediction request, signed like the EAS SDK.

    POST /api/predict/NAME through the gateway, signed with the service token.

    \b
      ferry predict demo_iris -d '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
      ferry predict demo_iris -d @request.json -o json
      ferry predict chat --path v1/chat/completions --stream \\
          -d '{"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}'
    """
    body = with_stream_flag(_body(data)) if stream else _body(data)
    content_type = content_type or ("application/json" if _looks_json(body) else "application/octet-stream")
    service = name.rpartition("/")[2]
    base = endpoint or state.settings.gateway
    wants_token = auth != "none" and not token
    ref = state.ref(name) if instance or not base or wants_token else None
    endpoints = {}
    if ref is not None and ((not base and not instance) or wants_token):
        endpoints = state.client.get(state.client.service_path(ref, "/endpoints"))
    if wants_token:
        token = endpoints.get("AccessToken") or ""
    if instance:
        listed = state.client.get(state.client.service_path(ref, "/instances"), InstanceName=instance).get("Instances")
        found = next((i for i in listed or [] if i.get("InstanceName") == instance), None)
        if not found or not found.get("InstancePort"):
            raise ApiError("InstanceNotFound", f"{ref.name} has no instance {instance} with an address.", status=404)
        url = f"http://{found.get('InstanceIP') or '127.0.0.1'}:{found['InstancePort']}/api/predict/{service}"
    elif base:
        url = f"{base.rstrip('/')}/api/predict/{service}"
    else:
        listed = ((endpoints.get("Endpoints") or [{}])[0]).get("InternetEndpoints") or []
        if not listed:
            raise ApiError("NoEndpoint", f"{ref.name} has no endpoint; give --endpoint URL.")
        url = listed[0]
    if sub_path:
        url = f"{url.rstrip('/')}/{sub_path.lstrip('/')}"
    headers = {"Content-Type": content_type}
    if auth == "signed" and token:
        headers.update(eas_predict_headers(token=token, path=urlsplit(url).path or "/", body=body,
                                           content_type=content_type))
    elif auth == "token" and token:
        headers["Authorization"] = token
    try:
        answer = requests.post(url, data=body, headers=headers, timeout=timeout, stream=stream)
    except requests.RequestException as exc:
        raise ApiError("PredictFailed", f"Cannot reach {url}: {type(exc).__name__}. Is the gateway running? "
                       "--instance sends straight to an instance.") from None
    if answer.status_code >= 400:
        raise ApiError(f"HTTP{answer.status_code}", f"{url} answered {answer.status_code}: "
                       f"{' '.join(answer.text.split())[:500]}", status=answer.status_code)
    if stream:
        _print_stream(answer, url, as_json=fmt == "json")
        return
    if fmt == "json":
        try:
            parsed = answer.json()
        except ValueError:
            raise ApiError("NotJson", f"The answer is not JSON: {answer.text[:200]!r}") from None
        print(json.dumps(parsed, indent=2, ensure_ascii=False), flush=True)
        return
    sys.stdout.write(answer.text if answer.text.endswith("\n") else answer.text + "\n")
    sys.stdout.flush()
