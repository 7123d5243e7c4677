"""The HTTP API: handlers, auth, the OpenAPI document."""
