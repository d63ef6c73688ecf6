"""Developer tools (not installed): run from the repository root as ``python -m tools.NAME``."""
