"""``zoo serve --ray``: the same app as a Ray Serve deployment, one model copy per replica.

Each replica builds the app of :func:`zoo.apps.serve.app.create_app` itself (Ray Serve's ingress builder runs on
the replica), so it has its own models and batchers and batches its own requests as the single-process server
does; Ray Serve's proxy spreads requests over the replicas. ``replicas`` fixes their number, or ``autoscaling``
passes Ray Serve's autoscaling settings through (``{"min_replicas": 1, "max_replicas": 4, ...}``). Ray runs
locally unless ``address`` names an existing cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zoo.apps.serve.settings import DEFAULT_HOST, DEFAULT_PORT, ServeSettings
from zoo.errors import require

APP_NAME = "zoo-serve"


def deployment(models: Sequence[str], settings: ServeSettings, *, replicas: int = 1,
               autoscaling: Mapping[str, Any] | None = None, cpus_per_replica: float = 1.0, preload: bool = True):
    """The bound Ray Serve application (``serve.run`` it)."""
    serve = require("ray.serve", extra="serve-ray", purpose="zoo serve --ray")
    models = tuple(models)

    def build():
        from zoo.apps.serve.app import create_app

        return create_app(models, settings, preload=preload)

    class ZooServe:
        """One replica: the zoo's app with its own models."""

    scaling: dict[str, Any] = {"autoscaling_config": dict(autoscaling)} if autoscaling else {"num_replicas": replicas}
    ingress = serve.ingress(build)(ZooServe)
    return serve.deployment(ingress, name="ZooServe", ray_actor_options={"num_cpus": cpus_per_replica},
                            **scaling).bind()


def run(models: Sequence[str], settings: ServeSettings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
        replicas: int = 1, autoscaling: Mapping[str, Any] | None = None, address: str | None = None,
        cpus_per_replica: float = 1.0, preload: bool = True, blocking: bool = True) -> None:
    """Deploy on Ray Serve (a local Ray, or the cluster at ``address``) and serve on ``host:port``."""
    ray = require("ray", extra="serve-ray", purpose="zoo serve --ray")
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    app = deployment(models, settings, replicas=replicas, autoscaling=autoscaling,
                     cpus_per_replica=cpus_per_replica, preload=preload)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=blocking)


def shutdown() -> None:
    from ray import serve

    serve.shutdown()
