"""Mailchimp side: the HTTP client, the snapshot reader and the batch writer."""
