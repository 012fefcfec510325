"""Contracts shared by the WeChat agency services: events, forms, topology, settings."""
