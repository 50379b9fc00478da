"""Code both processes use: settings, the config store, data sources, the HTTP client."""

__version__ = "0.1.0"
