"""I/O of the worker: the ingest, the followers of compacted topics, topic creation, lag."""
