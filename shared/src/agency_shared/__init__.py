"""Contracts any service or outside client may import: events, forms, topology, agreement documents, receipts."""
