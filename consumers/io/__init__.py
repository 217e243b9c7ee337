"""I/O processes and clients: the publisher, the ClickHouse client and sink, alert delivery."""
