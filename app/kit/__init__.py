"""Domain-free helpers: nothing in here imports from an ``app.<domain>`` package."""
