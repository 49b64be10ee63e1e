"""The OpenAI-compatible metered routes: chat completions, embeddings, models."""
