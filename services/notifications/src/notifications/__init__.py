"""Notifications: emails staff and clients about applications and enquiries."""
