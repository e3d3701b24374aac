"""Metering: what requests used (tokens, cost), read off the hot path's bytes."""
