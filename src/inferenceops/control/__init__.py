"""A process's link to the store, off the hot path.

    bootstrap      prepare the store before workers start: migrate, first-start bootstrap, catalog
    policy         the admission policy a snapshot serves (platform file + store rules)
    snapshot_feed  each worker's snapshot, built from the store and kept fresh (a service)
"""
