"""Platform: settings, logs, metrics, the stream clock, bounded caches and the topology.

Imports nothing else of salepulse but `schemas`."""
