"""Command-line tools (console scripts in pyproject.toml)."""
