"""The documents a case needs from its client: checklists by jurisdiction, the uploads' checks, their storage."""
