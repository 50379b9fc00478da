"""Code both processes use: settings, the config store, data sources, the HTTP client."""
