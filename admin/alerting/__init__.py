"""Alert delivery: Alertmanager's config rendered from the receivers, its API, the relay."""
