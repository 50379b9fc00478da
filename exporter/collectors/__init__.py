"""One collector per file, each yielding its own metric families (node_exporter style)."""
