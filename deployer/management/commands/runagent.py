"""`python manage.py runagent`: the node agent of the local cluster (see docs/node-agent.md)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from deployer.agent.supervisor import AgentAlreadyRunning, Supervisor


class Command(BaseCommand):
    help = (
        "Runs the node agent of the local cluster: starts the instances the local driver asks for, probes, "
        "restarts and stops them, and reports their state. Stops every instance on SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Do one pass and exit; instances keep running.")
        parser.add_argument("--var-dir", type=Path, default=None,
                            help="Where instances/<name>/ (logs and state files) live. Default: settings.VAR_DIR.")
        parser.add_argument("--poll-interval", type=float, default=0.5, metavar="S",
                            help="Seconds between passes when nothing wakes the agent earlier. Default: 0.5.")
        parser.add_argument("--shutdown-grace", type=float, default=None, metavar="S",
                            help="On SIGTERM/SIGINT, wait at most S seconds (instead of each instance's grace "
                            "period) before SIGKILL; for supervisors that kill the agent after a few seconds.")

    def handle(self, *args, **options):
        if options["poll_interval"] <= 0:
            raise CommandError("--poll-interval must be positive")
        supervisor = Supervisor(
            var_dir=options["var_dir"] or Path(settings.VAR_DIR),
            poll_interval=options["poll_interval"],
            shutdown_grace=options["shutdown_grace"],
        )
        try:
            supervisor.run(once=options["once"])
        except AgentAlreadyRunning as exc:
            raise CommandError(str(exc)) from None
