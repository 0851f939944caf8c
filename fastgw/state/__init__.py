"""State shared across worker processes and gateways: the one Redis client (`fastgw.state.redis`)."""
