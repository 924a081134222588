"""Gunicorn settings for Ferry's web server: `gunicorn -c config/gunicorn.conf.py config.wsgi` (the Procfile,
the Dockerfile, the Kubernetes manifests). Command-line options and GUNICORN_CMD_ARGS override these."""

import json
import os
import uuid

from gunicorn import util

bind = os.environ.get("FERRY_WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("FERRY_WEB_THREADS", "4"))
# An idle keep-alive connection must outlive any pause a client makes between two calls: a server that
# closes first races the client's reuse of the connection, and the client sees RemoteDisconnected (gunicorn's
# default is 2 s; an SDK polling DescribeService every 2 s hit it every few polls). Load balancers keep idle
# connections 60 s (Alibaba Cloud's ALB, AWS's ALB) and expect the server behind them to keep them longer;
# 75 s is nginx's default and outlasts them.
keepalive = int(os.environ.get("FERRY_WEB_KEEPALIVE_SECONDS", "75"))
graceful_timeout = 4
accesslog = "-"
control_socket_disable = True


def _write_json_error(sock, status_int, reason, mesg):
    """Gunicorn answers requests it cannot parse (bad request line, URI or headers too long) itself, with an
    HTML page; EAS's clients parse every answer as JSON, so these answer in EAS's shape too."""
    body = json.dumps({"Code": "".join(word.capitalize() for word in reason.split()) or "Error",
                       "Message": mesg or reason, "RequestId": str(uuid.uuid4()).upper()})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, (head + body).encode("latin-1"))


util.write_error = _write_json_error
