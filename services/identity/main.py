"""Identity's entry point: a projector from events.raw to events.resolved, and its routes."""
from services.identity.domain.rules import load_rules
from services.identity.handler import IdentityHandler
from services.identity.routes import router_for
from services.runtime.bootstrap import Runtime, Service


def bootstrap(runtime: Runtime) -> Service:
    rules = load_rules(runtime.settings.identity_rules_path)
    handler = IdentityHandler(rules, runtime.log)
    return Service("identity", routers=[router_for(rules)], projector=runtime.projector(handler))
