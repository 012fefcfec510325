"""Intake: the HTTP API behind the agency's web forms."""
