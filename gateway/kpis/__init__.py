"""What support leaders measure: the event log folded into rollups (`fold`), and the
figures of `GET /v1/stats` with their definitions (`figures`, pure)."""
