"""API keys: issued to users, shown once, stored as HMAC digests, revocable within seconds."""
