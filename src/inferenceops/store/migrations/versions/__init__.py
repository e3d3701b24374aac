"""Migration revisions, oldest first (``0001_identity`` …); each file is one revision."""
