"""clients/mde."""
