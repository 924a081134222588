"""The progress deadline of a rollout, read as Kubernetes reads a Deployment's progressDeadlineSeconds. Pure.

A rollout fails when the instances its plan asks for of the new version are not ready in time, not when it
lasts long: a canary held at 20 % for hours with its share ready is a rollout resting, not a stuck one. So the
deadline counts time without progress:

- The clock starts with the rollout and restarts whenever progress is made (one more instance of the new
  version became ready), and when the user acts on it (resume, promote, a new canary weight: the plan asks for
  something new; the record's transitions restart it then).
- While the plan's asks are met, there is no deadline. When a met set loses a ready instance, the clock for
  getting it back starts at that moment, not at the last progress hours earlier.
- A paused rollout has no deadline (its clock restarts at resume), nor has one resting until the user acts
  (a green awaiting its switch, a switched blue-green).

The rollout record carries the clock: `progress_at` and `ready_seen` (the new version's ready instances when
last looked at); its moves are `Rollout.clock_moved` and `Rollout.timed_out` (services/rollouts.py, the
record's owner). Records written before these fields existed count from `started_at`.
"""

from datetime import datetime, timedelta

from services.rollouts import Rollout

def progress_since(stored: dict) -> datetime:
    """When the clock of a stored rollout record last restarted (`Rollout.progress_since`)."""
    return Rollout.from_json(stored).progress_since()


def status_timed_out(*, rollout: Rollout | None, progressing_since: datetime | None, now: datetime,
                     deadline: timedelta) -> bool:
    """Whether a service that is not in a rollout has been progressing (scaling, starting) for too long.

    A rollout in progress keeps its own clock above and fails by itself when it stops progressing, so its
    Progressing time does not count here: a rolling update of many instances may take hours, and a paused
    rollout has no deadline."""
    if progressing_since is None or (rollout is not None and rollout.in_progress):
        return False
    return now - progressing_since > deadline
