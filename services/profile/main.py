"""Profile's entry point: a projector from events.resolved, and the profile API."""
from services.profile.handler import ProfileHandler
from services.profile.routes import router
from services.runtime.bootstrap import Runtime, Service


def bootstrap(runtime: Runtime) -> Service:
    return Service("profile", routers=[router], projector=runtime.projector(ProfileHandler()))
