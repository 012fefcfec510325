"""Agreements: records each application and its agreement acceptance."""
