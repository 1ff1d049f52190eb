"""miaudit's benchmark suite: one runner, one result schema (see README.md here)."""
