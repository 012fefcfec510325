"""The service chassis: logging, metrics, health, correlation, start-up, settings, publishing, the consumer runner."""
