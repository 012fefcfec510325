"""The client portal: a client's own case through the personal link in their emails."""
