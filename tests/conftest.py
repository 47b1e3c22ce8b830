"""Fixtures are plugins (as in psycopg's tests): each concern lives in its own module under tests/fixtures/."""

pytest_plugins = ("tests.fixtures.databases", "tests.fixtures.redis_cluster", "tests.fixtures.proxy")
