"""Frontends: espnet's S3PRL frontend made offline-safe (``frontend: s3prl``)."""
