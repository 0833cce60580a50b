"""Redis test servers (filled in by the Redis backend work)."""
