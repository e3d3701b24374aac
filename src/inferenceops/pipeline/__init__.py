"""The request pipeline: the stages every inference request runs through, whatever carried it.

Transport-neutral: the stages work on ``RequestFacts`` and write to a
``ResponseSink``; the HTTP edge (``gateway``) adapts ASGI to both, and a batch
worker or a test calls the same pipeline without a server.
"""
