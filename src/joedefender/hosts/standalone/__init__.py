"""hosts/standalone."""
