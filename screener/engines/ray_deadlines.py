"""The Ray engine's time limit per video: which running videos are past it.

Each task tells a small `Clock` actor (engines/ray_tasks.py) when it starts; the driver asks it
every second which running videos have run how long. The clock is the actor's own, so nodes'
clocks need not agree, and time waiting in Ray's queue does not count. The start times it told
are kept here, so a clock restarted with its node (which forgets) cannot lift the limit:
videos it had not reported yet are timed from the restart, until it does.
"""
from __future__ import annotations

import logging
import time

import ray

log = logging.getLogger(__name__)


class Deadlines:
    def __init__(self, clock, limit_s: float):
        self.clock, self.limit_s = clock, limit_s
        # Start times of running videos by the driver's clock, as the Clock reported them.
        # `_guessed`: videos running when the Clock restarted, timed from then until it reports
        # their start.
        self._started: dict[int, float] = {}
        self._guessed: set[int] = set()
        self._instance: str | None = None

    def overdue(self, running: list[int], every: bool = True) -> list[int]:
        """The tokens of `running` videos past the limit. `every`: `running` is every video in
        flight (else only some: forget nothing)."""
        try:
            instance, elapsed = ray.get(self.clock.elapsed.remote(list(running), every),
                                        timeout=10)
        except ray.exceptions.RayError as e:  # restarting (its node was lost): judge on what we have
            log.info("time-limit clock unavailable: %s", e)
            instance, elapsed = self._instance, {}
        now = time.monotonic()
        if self._instance not in (None, instance):  # restarted: it knows none of these
            log.warning("the time-limit clock was restarted; running videos are timed from now")
            for t in running:
                if t not in self._started:
                    self._started[t] = now
                    self._guessed.add(t)
        self._instance = instance
        for t, e in elapsed.items():
            if t not in self._started or t in self._guessed:
                self._started[t] = now - e
                self._guessed.discard(t)
        if every:
            self._started = {t: t0 for t, t0 in self._started.items() if t in running}
            self._guessed &= set(self._started)
        return [t for t in running
                if t in self._started and now - self._started[t] > self.limit_s]
