"""The admin API on its own listener (docs/admin-api.md)."""
