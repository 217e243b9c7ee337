"""Tools: replay, the simulator, the evaluations and their baselines, priors load, dead letters, the test harness."""
