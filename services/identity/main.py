"""Identity's entry point: a projector from events.raw to events.resolved."""
from services.identity.handler import IdentityHandler
from services.runtime.bootstrap import Runtime, Service


def bootstrap(runtime: Runtime) -> Service:
    return Service("identity", projector=runtime.projector(IdentityHandler()))
