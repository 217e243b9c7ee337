"""Domain: velocity, forecasts, preferences, alerts, the catalogue, the live board and the buyer desk.

Pure logic: no Kafka, no Faust (an import-linter contract)."""
