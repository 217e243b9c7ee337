"""Tools: the CLI, the demo, the benchmarks and profiles. Nothing in the worker imports them."""
