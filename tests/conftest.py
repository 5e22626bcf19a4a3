"""Shared pytest configuration: fixtures live in tests/fixtures/ as plugin modules."""

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.cluster", "tests.fixtures.realnode"]
