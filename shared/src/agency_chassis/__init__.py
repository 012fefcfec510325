"""The service chassis: logging, metrics, health, correlation, start-up checks, settings, publishing, retries."""
