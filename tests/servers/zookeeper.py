"""ZooKeeper test servers (filled in by the ZooKeeper backend work)."""
