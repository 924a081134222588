"""HTTP/1.1 as clients send it to the gateway's own server: keep-alive and pipelining, chunked bodies,
Expect: 100-continue, HEAD, HTTP/1.0, malformed requests; and the same gateway as an ASGI app under uvicorn."""

import json
import socket

from .conftest import Routes, call, start_gateway

BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


def exchange(port: int, data: bytes, wait: float = 1.0) -> bytes:
    """Everything the gateway sends back within `wait` seconds of the last byte (or until it closes)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(wait)
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except socket.timeout:
            pass
    return received


def post(name: str, body: bytes = BODY, extra: bytes = b"") -> bytes:
    return (b"POST /api/predict/%s HTTP/1.1\r\nHost: gw\r\nAuthorization: token-of-%s\r\n%sContent-Length: %d\r\n\r\n%s"
            % (name.encode(), name.encode(), extra, len(body), body))


def test_it_speaks_http_1_1_as_clients_do(gateway, routes, echo):
    backends = echo("h")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("h")])])

    pipelined = exchange(gateway.port, post(name) * 3 + post(name, b"x" * 70000))
    assert pipelined.count(b"HTTP/1.1 200 OK") == 4 and pipelined.count(b'"body_length": 70000') == 1

    chunked = (b"POST /api/predict/%s HTTP/1.1\r\nHost: gw\r\nAuthorization: token-of-%s\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
               % (name.encode(), name.encode()))
    assert b'"body_length": 11' in exchange(gateway.port, chunked)

    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.settimeout(5)
        head = post(name).split(b"\r\n\r\n")[0] + b"\r\nExpect: 100-continue\r\n\r\n"
        sock.sendall(head)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(BODY)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")

    status, headers, body = call(gateway, f"/api/predict/{name}", method="HEAD",
                                 headers={"Authorization": f"token-of-{name}"})
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0

    old = exchange(gateway.port, post(name).replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert old.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in old

    assert exchange(gateway.port, b"NOT HTTP\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request")
    assert call(gateway, "/nowhere", method="GET")[0] == 404


def test_it_serves_the_same_gateway_as_an_asgi_app_under_uvicorn(tmp_path, echo):
    asgi = start_gateway(tmp_path, args=("--server", "uvicorn"))
    routes = Routes(asgi)
    try:
        backends = echo("u")
        name = routes.unique()
        routes.put(name, [(1, 100, [backends.instance("u")])])
        status, headers, body = call(asgi, f"/api/predict/{name}?x=1", body=BODY,
                                     headers={"Authorization": f"token-of-{name}"})
        answer = json.loads(body)
        assert status == 200 and headers["ferry-version"] == "1"
        assert (answer["instance"], answer["path"], answer["query"]) == ("u", "/", "x=1")
        assert call(asgi, f"/api/predict/{name}", body=BODY)[0] == 401
        assert f'ferry_gateway_requests_total{{code="200",service="{name}",version="1"}} 1.0' in asgi.metrics()
    finally:
        routes.remove_all()
        asgi.stop()
    assert asgi.popen.returncode in (0, -15), asgi.output()  # uvicorn re-raises SIGTERM after its clean stop
