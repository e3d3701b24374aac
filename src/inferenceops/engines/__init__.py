"""Upstream engines: dialects, the simulator and local engines. Knows nothing of teams or keys."""
