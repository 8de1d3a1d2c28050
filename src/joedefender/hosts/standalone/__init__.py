"""The standalone service: one process, SQLite for state and queue, worker threads, webhook, poller."""
