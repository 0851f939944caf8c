# The compiled core has exactly the API of its pure twins, name for name (their __all__ lists are the one export
# list; the property tests in tests/property/ hold the answers equal).
from fastgw.core.conn import *  # noqa: F403
from fastgw.core.http import *  # noqa: F403
from fastgw.core.limit import *  # noqa: F403
from fastgw.core.observe import *  # noqa: F403
from fastgw.core.phases import *  # noqa: F403
from fastgw.core.router import *  # noqa: F403
from fastgw.core.steps import *  # noqa: F403
from fastgw.core.upstream import *  # noqa: F403
