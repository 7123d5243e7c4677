"""Channel connectors: one sub-package per channel kind, all on the contract in `base`."""
