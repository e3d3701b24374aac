"""The ASGI data plane. Reads one immutable snapshot per request; never the store."""
