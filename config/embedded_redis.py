"""The REDIS_URL of `make run`'s embedded Redis, for tools run beside it (benches): its port and the password
scripts/redis-server keeps in the var dir. No Django here: callers set REDIS_URL before settings load."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def embedded_redis_url(environ=os.environ) -> str:
    var_dir = Path(environ.get("FERRY_VAR_DIR") or BASE_DIR / "var")
    port = environ.get("FERRY_REDIS_PORT", "6390")
    try:
        password = (var_dir / "redis-password").read_text().strip()
    except FileNotFoundError:
        password = ""  # a Redis from before passwords, or none yet: the first command will say so
    return f"redis://:{password}@127.0.0.1:{port}/0" if password else f"redis://127.0.0.1:{port}/0"
