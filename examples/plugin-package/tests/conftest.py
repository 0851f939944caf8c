# The fixtures fastgw's own tests use: a gateway factory and an echo upstream, on free loopback ports; and the hook
# that runs the tests on uvloop, the loop the gateway serves on.
from fastgw.pytest_plugin import echo_upstream, fastgw_gateway, pytest_asyncio_loop_factories  # noqa: F401
