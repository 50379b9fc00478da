"""Helpers shared by the test suite: ports, environments, processes."""
