"""Function backends: handlers run by pools of worker processes and invoked with API Gateway events."""
