"""Segments' entry point: a projector from profiles.changed, and the segments API."""
from services.runtime.bootstrap import Runtime, Service
from services.segments.handler import SegmentsHandler
from services.segments.routes import router


def bootstrap(runtime: Runtime) -> Service:
    return Service("segments", routers=[router], projector=runtime.projector(SegmentsHandler()))
