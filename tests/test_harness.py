"""The test harness really gives the suite PostgreSQL and Redis: fails if anything falls back to SQLite or
to the in-process cache."""

import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection


@pytest.mark.django_db
def test_it_runs_on_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        assert cursor.fetchone()[0].startswith("PostgreSQL ")


def test_it_caches_in_redis():
    assert settings.REDIS_URL
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert cache._cache.get_client(write=True).ping() is True

    key, value = f"harness-{uuid.uuid4().hex}", uuid.uuid4().hex
    cache.set(key, value, timeout=30)
    # The value is in the Redis server itself, not in this process.
    assert redis.Redis.from_url(settings.REDIS_URL).exists(cache.make_and_validate_key(key)) == 1
    assert cache.get(key) == value


def test_it_runs_tasks_inline_and_keeps_out_of_the_repository_var_dir():
    assert settings.CELERY_TASK_ALWAYS_EAGER is True
    assert Path(settings.VAR_DIR).resolve() != (Path(settings.BASE_DIR) / "var").resolve()


def test_its_postgresql_asks_for_the_password():
    """The throwaway server requires a password, as a deployment's does: without it the connection is refused."""
    import psycopg

    from tests.harness import harness

    if harness.postgres is None:
        pytest.skip("DATABASE_URL from the environment: not the harness's server")
    server = harness.postgres
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", connect_timeout=5)
    with psycopg.connect(server.url, connect_timeout=5) as db:
        assert db.execute("select current_user").fetchone() == ("postgres",)


def test_the_report_header_hides_both_passwords():
    from tests.harness import _redact

    assert _redact("postgres://postgres:s3cret@127.0.0.1:5/postgres") == "postgres://postgres:***@127.0.0.1:5/postgres"
    assert _redact("redis://:s3cret@127.0.0.1:6/0") == "redis://:***@127.0.0.1:6/0"
