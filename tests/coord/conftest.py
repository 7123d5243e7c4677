from tests.gateway.conftest import gateway_factory, receiver

__all__ = ["gateway_factory", "receiver"]
