# The fixtures fastgw's own tests use: a gateway factory and an echo upstream, on free loopback ports.
from fastgw.pytest_plugin import echo_upstream, fastgw_gateway  # noqa: F401
