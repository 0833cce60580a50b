"""Security and limits: hostile records, oversized values, open ACLs, leaked secrets (docs/security.md)."""
