"""Identity: passwords, signing keys and JWTs, refresh tokens, API keys, principals."""
