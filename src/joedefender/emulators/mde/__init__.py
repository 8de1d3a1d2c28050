"""emulators/mde."""
