"""clients/joe."""
