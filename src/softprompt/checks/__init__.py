"""Self-checks users can run on their own installation (the architecture matrix)."""
