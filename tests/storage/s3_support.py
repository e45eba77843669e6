"""Shared by the object storage tests: the credentials moto's S3 server is given."""

from __future__ import annotations

MODEL = "gpt-4o-mini-2024-07-18"
KEY_ID = "testing-key-id-0123"  # moto takes any credentials; long enough to be redacted
SECRET = "testing-secret-key-0123456789"
