"""Segments' entry point: a projector from profiles.changed, and the segments API."""
from services.runtime.bootstrap import Runtime, Service
from services.segments import lifecycle_routes
from services.segments.backfill import SegmentBackfill
from services.segments.domain.lifecycle import LifecycleRules
from services.segments.handler import SegmentsHandler
from services.segments.routes import router


def bootstrap(runtime: Runtime) -> Service:
    rules = LifecycleRules(**runtime.settings.lifecycle_rules)
    return Service("segments", routers=[router, lifecycle_routes.router],
                   projector=runtime.projector(SegmentsHandler(rules)),
                   workers=[SegmentBackfill(runtime)])
