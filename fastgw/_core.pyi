# The compiled core has exactly the API of its pure twins, name for name (their __all__ lists are the one export
# list; the property tests in tests/property/ hold the answers equal).
from fastgw._pycore import *  # noqa: F403
from fastgw._pylimit import *  # noqa: F403
from fastgw._pyobserve import *  # noqa: F403
from fastgw._pyplugins import *  # noqa: F403
