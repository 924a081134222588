"""The CLI's reading of server-sent events (cli/streaming.py), chunk boundaries anywhere."""

import json

from cli.streaming import delta_text, sse_data, with_stream_flag


def chunked(text: str, size: int) -> list[bytes]:
    data = text.encode()
    return [data[i:i + size] for i in range(0, len(data), size)]


STREAM = ('data: {"choices": [{"delta": {"role": "assistant"}}]}\n\n'
          'data: {"choices": [{"delta": {"content": "Hel"}}]}\r\n\r\n'
          ': a comment\n'
          'event: message\ndata: {"choices": [{"delta": {"content": "lo"}}]}\n\n'
          'data: line one\ndata: line two\n\n'
          'data: [DONE]\n\n')


def test_events_come_out_whatever_the_chunk_boundaries():
    expected = ['{"choices": [{"delta": {"role": "assistant"}}]}', '{"choices": [{"delta": {"content": "Hel"}}]}',
                '{"choices": [{"delta": {"content": "lo"}}]}', "line one\nline two", "[DONE]"]
    for size in (1, 2, 7, 1000):
        assert list(sse_data(chunked(STREAM, size))) == expected


def test_an_event_is_yielded_as_soon_as_its_blank_line_arrives():
    events = sse_data(iter([b'data: {"choices": [{"text": "a"}]}\n', b"\n", b"data: never ended"]))
    assert next(events) == '{"choices": [{"text": "a"}]}'


def test_the_text_of_chat_and_completion_chunks():
    assert delta_text('{"choices": [{"delta": {"content": "Hi"}}]}') == "Hi"
    assert delta_text('{"choices": [{"delta": {"role": "assistant"}}]}') == ""
    assert delta_text('{"choices": [{"text": " there"}]}') == " there"
    assert delta_text('{"object": "error"}') is None and delta_text("not json") is None


def test_openai_bodies_ask_for_a_stream_and_others_are_left_alone():
    assert json.loads(with_stream_flag(b'{"messages": []}')) == {"messages": [], "stream": True}
    assert with_stream_flag(b'{"prompt": "a", "stream": false}') == b'{"prompt": "a", "stream": false}'
    assert with_stream_flag(b'{"instances": [[1]]}') == b'{"instances": [[1]]}'
    assert with_stream_flag(b"\x00binary") == b"\x00binary"
