"""Signed outbound webhooks to the agency's CRM (Standard Webhooks 1.0): endpoints, deliveries, the sender."""
