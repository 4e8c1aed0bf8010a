"""Profile's entry point: a projector from events.resolved, and the profile API."""
from services.profile import segment_api, subject_access
from services.profile.computation import Computation
from services.profile.handler import ProfileHandler
from services.profile.ticker import ProfileTicker
from services.profile.routes import router
from services.runtime.bootstrap import Runtime, Service


def bootstrap(runtime: Runtime) -> Service:
    handler = ProfileHandler(Computation.from_settings(runtime.settings))
    return Service("profile", routers=[router, segment_api.router, subject_access.router], projector=runtime.projector(handler),
                   workers=[ProfileTicker(handler, runtime)])
