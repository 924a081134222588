"""`python manage.py runautoscaler`: the autoscaler loop, every 2 s, until SIGTERM or Ctrl-C."""

import logging
import signal
import time

import redis
from django import db
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from deployer.autoscaling import TICK_SECONDS, AutoscalerLoop

logger = logging.getLogger("ferry.autoscaler")


class Command(BaseCommand):
    help = "Runs the autoscaler: every 2 s, scaling decisions for services with an autoscaler or cron scaler."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, *args, once: bool, **options):
        if not settings.REDIS_URL:
            raise CommandError("The autoscaler reads the gateway's metrics from Redis: set REDIS_URL.")
        loop = AutoscalerLoop(redis.Redis.from_url(settings.REDIS_URL))
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        logger.info("Started the autoscaler (a decision every %s s)", TICK_SECONDS)
        database_down = False
        while not stopping:
            started = time.monotonic()
            # Django drops a connection that failed or outlived CONN_MAX_AGE only when told to (the web does it
            # per request, Celery per task): without this a loop keeps its dead connection after a database
            # restart and every tick fails with "the connection is closed".
            db.close_old_connections()
            try:
                for change in loop.tick():
                    logger.info("%s", change)
            except (db.OperationalError, db.InterfaceError) as exc:
                # The database is away: one line per outage, not a traceback every tick; the tick is the backoff.
                if not database_down:
                    logger.warning("Cannot reach the database (%s); trying again every %g s",
                                   str(exc).strip().splitlines()[0], TICK_SECONDS)
                database_down = True
            except Exception:  # noqa: BLE001 -- one bad tick must not stop scaling
                logger.exception("An autoscaler tick failed; trying again at the next one")
            else:
                if database_down:
                    logger.info("Reached the database again")
                database_down = False
            if once:
                return
            time.sleep(max(0.0, TICK_SECONDS - (time.monotonic() - started)))
        logger.info("Stopped the autoscaler")
