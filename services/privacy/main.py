"""Privacy's entry point: deletion requests over HTTP, and the worker that carries them out."""
from services.identity.domain.rules import load_rules
from services.privacy.requests import ErasureWorker
from services.privacy.routes import router_for
from services.runtime.bootstrap import Runtime, Service


def bootstrap(runtime: Runtime) -> Service:
    rules = load_rules(runtime.settings.identity_rules_path)
    return Service("privacy", routers=[router_for(rules)],
                   workers=[ErasureWorker(runtime.engine, runtime.keys, runtime.log)])
