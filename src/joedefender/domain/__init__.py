"""The connector's vocabulary and its pure rules: no I/O, no clients, no storage."""
