"""Fixtures shared by the whole suite.

The servers are not started here: the `tests.harness` plugin (loaded with `-p` in pyproject.toml, before
Django is set up) starts a throwaway PostgreSQL and Redis, or uses DATABASE_URL / REDIS_URL when set, and
sets CELERY_TASK_ALWAYS_EAGER=true and a temporary FERRY_VAR_DIR. See tests/harness/__init__.py.
"""
