"""The Ray engine's cluster: joining (or starting) Ray, and its pool of scoring actors.

`join` starts a private Ray for one scan or joins the cluster at an address, keeping the
caller's SIGTERM handler; `scoring_actors` places one actor per GPU, else one per node (on CPUs
the model costs more per face than decoding and detection per frame: README "Running on a Ray
cluster"), each loading the model file once; `leave` kills them and shuts a private Ray down.
"""
from __future__ import annotations

import logging
import os
import signal
import threading

import ray

from ..errors import EngineUnavailable, ModelError
from .ray_tasks import check_reachable

log = logging.getLogger(__name__)


def join(address: str | None) -> bool:
    """Join the cluster at `address` (else RAY_ADDRESS, else start a local Ray), unless Ray is
    already initialised in this process. True when this call started or joined it (so
    `leave` shuts it down)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    # A private Ray for one scan: its advice on securing a shared cluster is noise.
    auth = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if address:
        check_reachable(address)
    level = auth.level
    if address is None:
        auth.setLevel(logging.ERROR)
    # ray.init makes SIGTERM exit at once; the caller's handler (the CLI turns SIGTERM
    # into Ctrl-C so state and report are left consistent) is put back below.
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        # Worker logs stay in the session's log folder: the report may be on stdout.
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"join the Ray cluster at {address}" if address else "start Ray"
        raise EngineUnavailable(f"cannot {where}: {str(e).splitlines()[0]}") from e
    finally:
        auth.setLevel(level)
        if sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)
    return True


def scoring_actors(actor_class, card, runtime: str, batch_size: int, actors: int | None,
                   actor_cpus: float) -> tuple[list, int]:
    """The scoring actors (each loads `card`'s model file once and checks its SHA-256) and the
    GPUs each has (0 or 1). A model that cannot load raises ModelError, before any video."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cls = ray.remote(actor_class)
    common = dict(max_restarts=3, max_task_retries=3, num_cpus=actor_cpus,
                  num_gpus=1 if gpus else 0)
    if gpus:
        placements = [{}] * (actors or gpus)
    else:
        # One actor per node, so scoring grows with the cluster. Soft affinity: a restarted
        # actor may land on another node.
        alive = [n["NodeID"] for n in ray.nodes()
                 if n["Alive"] and n["Resources"].get("CPU", 0) > 0] or [None]
        nodes = [alive[i % len(alive)] for i in range(actors or len(alive))]
        placements = [{} if node is None else dict(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True))
            for node in nodes]
    args = (card.path, card.threshold, card.sha256, batch_size, runtime)
    pool = [cls.options(**common, **where).remote(*args) for where in placements]
    try:  # a bad model file fails here, before any video is read
        ray.get([a.node.remote() for a in pool])
    except ray.exceptions.RayActorError as e:
        raise ModelError(f"the scoring actors could not load the model: {e}") from e
    return pool, 1 if gpus else 0


def leave(actors: list, started: bool) -> None:
    """Kill `actors`; shut Ray down when `join` started or joined it here."""
    for actor in actors:
        try:
            ray.kill(actor)
        except Exception:  # Ray already shut down: the actor is gone with it
            pass
    if started:
        ray.shutdown()
