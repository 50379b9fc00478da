"""Data sources the collectors read: clients and scanners, no Prometheus types here."""
