"""Integration tier: the real server as a subprocess, driven by the official openai SDK."""
