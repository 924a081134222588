"""Drives an asynchronous service's queues with the official EAS Python SDK's QueueClient, as a user's program would.

    python eas_queue_client.py ENDPOINT TOKEN OPERATIONS_JSON

OPERATIONS_JSON is a list of {"op", "queue", ...}: queue is the service's name (the input queue) or
"<service>/sink"; op is put (data, tags, count), get (index, length, timeout, auto_delete, request_id, tags),
watch (index, window, count, auto_commit, commit: commit each frame read), attributes, search (index), commit
(indexes), delete (indexes) or truncate (index). Prints one JSON list: each operation's result, or
{"error": [status, message]} when the SDK raised. Runs in the venv conftest.eas_python makes.
"""

import json
import sys

from eas_prediction import PredictException, QueueClient


def frame(df) -> dict:
    return {"index": int(df.index), "data": df.data.decode("utf-8", "replace"), "tags": dict(df.tags)}


def run(client: QueueClient, op: dict):
    kind = op["op"]
    if kind == "put":
        return [list(client.put(op.get("data", "x").replace("{i}", str(i)), op.get("tags", {})))
                for i in range(op.get("count", 1))]
    if kind == "get":
        return [frame(df) for df in client.get(request_id=op.get("request_id"), index=op.get("index", 0),
                                               length=op.get("length", 1), timeout=op.get("timeout", "1s"),
                                               auto_delete=op.get("auto_delete", True), tags=op.get("tags", {}))]
    if kind == "watch":
        watcher = client.watch(op.get("index", 0), op.get("window", 5), auto_commit=op.get("auto_commit", False),
                               tags=op.get("tags"))
        seen = []
        for df in watcher.run():
            seen.append(frame(df))
            if op.get("commit"):
                client.commit(df.index)
            if len(seen) == op["count"]:
                break
        watcher.close()
        return seen
    if kind == "attributes":
        return client.attributes()
    if kind == "search":
        return client.search(op["index"])
    if kind == "commit":
        return client.commit(op["indexes"]).decode()
    if kind == "delete":
        return client.delete(op["indexes"])
    if kind == "truncate":
        return client.truncate(op["index"]).decode()
    raise SystemExit(f"unknown op {kind}")


def main(endpoint: str, token: str, operations: str) -> None:
    clients: dict[str, QueueClient] = {}
    results = []
    for op in json.loads(operations):
        client = clients.get(op["queue"])
        if client is None:
            client = clients[op["queue"]] = QueueClient(endpoint, op["queue"])
            client.set_token(token)
            client.set_retry_count(op.get("retries", 1))
            client.init()
        try:
            results.append(run(client, op))
        except PredictException as error:
            message = error.message.decode() if isinstance(error.message, bytes) else str(error.message)
            results.append({"error": [error.code, message]})
    for client in clients.values():
        client.destroy()
    print(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
