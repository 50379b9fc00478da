"""wordslab-dashboard Prometheus exporter: machine, dev-environment and AI-services metrics."""

__version__ = "0.1.0"
