"""Native runner for the whole wordslab-dashboard stack (no Docker needed)."""
