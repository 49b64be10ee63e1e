"""Per-scope rate limits (requests and tokens per minute, requests in flight), in memory or shared via Redis."""
