"""The casework service: the registration workflow, the staff console, staff accounts and the audit log."""
