"""The working-day calendar moved to services.common.workcalendar (consult and act need it too)."""

from services.common.workcalendar import *  # noqa: F401,F403
from services.common.workcalendar import __all__  # noqa: F401
