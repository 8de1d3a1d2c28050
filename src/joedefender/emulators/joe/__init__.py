"""emulators/joe."""
