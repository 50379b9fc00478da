"""wordslab-dashboard Prometheus exporter: machine, dev-environment and AI-services metrics."""
