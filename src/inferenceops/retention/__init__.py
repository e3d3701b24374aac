"""Body retention: what a team that opted in keeps of its requests, redacted, and for how long.

``capture`` collects a streamed answer as it goes out (bounded); ``redact`` turns what was
kept into what is stored (every built-in entity replaced); ``sweeper`` deletes what has
expired. The rules are ``platform.retention``; docs/retention.md is the operator's guide.
"""
