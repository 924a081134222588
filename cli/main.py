"""The `ferry` command: global options, the verbs by area, and exit codes.

Exit codes: 0 done; 1 the server said no, a service Failed, or the server could not be reached; 2 usage or
configuration error; 3 timed out waiting; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import sys

import click
from rich.text import Text

from . import __version__, output
from .client import ApiError
from .commands import access, bench, mesh, observe, scaling, services, traffic
from .common import State
from .config import ConfigError

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

SECTIONS = [
    ("Services", ["create", "modify", "desc", "list", "delete", "start", "stop", "restart"]),
    ("Scaling", ["scale", "autoscale", "cronscale"]),
    ("Versions and traffic", [
        "versions", "canary", "promote", "rollback", "switch", "finish", "pause", "resume", "release", "mirror",
    ]),
    ("Observe and call", ["instances", "events", "logs", "placements", "predict", "bench"]),
    ("Platform and access", ["clusters", "config", "whoami", "keys", "tokens"]),
]


class SectionedGroup(click.Group):
    """Lists the verbs by area, in workflow order, instead of one alphabetical list."""

    def list_commands(self, ctx):
        ordered = [name for _, names in SECTIONS for name in names]
        return ordered + sorted(set(self.commands) - set(ordered))

    def format_commands(self, ctx, formatter):
        width = max(len(name) for name in self.commands)
        limit = formatter.width - 6 - width
        placed = set()
        for title, names in SECTIONS:
            # Padded names align the descriptions across sections.
            rows = [(name.ljust(width), self.commands[name].get_short_help_str(limit))
                    for name in names if name in self.commands]
            placed.update(names)
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        rest = [(name, self.commands[name].get_short_help_str(limit)) for name in sorted(set(self.commands) - placed)]
        if rest:
            with formatter.section("Other"):
                formatter.write_dl(rest)


@click.group(cls=SectionedGroup, invoke_without_command=True, subcommand_metavar="COMMAND [ARGS]...",
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--profile", envvar="FERRY_PROFILE", metavar="NAME", help="Profile of the config file to use.")
@click.option("--endpoint", metavar="URL", help="Ferry's API endpoint (overrides FERRY_ENDPOINT and the profile).")
@click.option("--cluster", metavar="CLUSTER", help="Cluster of the services named (default: looked up by name).")
@click.option("--debug", is_flag=True, help="Print each HTTP request and its status on stderr.")
@click.version_option(__version__, "-V", "--version", prog_name="ferry")
@click.pass_context
def cli(ctx, profile, endpoint, cluster, debug):
    """Ferry: deploy and operate model-inference services from the terminal.

    A client of Ferry's EAS-compatible REST API. Set it up once with `ferry config set`, or with
    FERRY_ENDPOINT and FERRY_TOKEN (or FERRY_ACCESS_KEY_ID / FERRY_ACCESS_KEY_SECRET).

    \b
      ferry create iris.json          create, then watch it come up
      ferry list -o json              scripts read the API's own JSON
      ferry predict demo_iris -d @request.json

    Service names may be written CLUSTER/NAME. Exit codes: 0 ok, 1 refused or failed, 2 usage,
    3 timed out waiting, 130 interrupted. `ferry VERB -h` explains each verb.
    """
    ctx.obj = State(profile, endpoint, cluster, debug)
    if ctx.invoked_subcommand is None:  # a bare `ferry`: the overview, on stdout, and no error
        click.echo(ctx.get_help())
        ctx.exit(0)


for module, names in [
    (services, ["create", "modify", "desc", "list_", "delete", "start", "stop", "restart"]),
    (scaling, ["scale", "autoscale", "cronscale"]),
    (traffic, [
        "versions", "canary", "promote", "rollback", "switch", "finish", "pause", "resume", "release", "mirror",
    ]),
    (observe, ["instances", "events", "logs", "predict"]),
    (mesh, ["placements"]),
    (bench, ["bench"]),
    (access, ["clusters", "config", "whoami", "keys", "tokens"]),
]:
    for attribute in names:
        cli.add_command(getattr(module, attribute))


def main(argv: list[str] | None = None) -> None:
    """The console script: runs `cli` and turns every outcome into an exit code."""
    try:
        code = cli.main(args=argv, prog_name="ferry", standalone_mode=False)
    except click.exceptions.Abort:
        # Click turns Ctrl-C (and EOF at a prompt) into Abort.
        output.note("Interrupted.", "yellow")
        code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except ApiError as exc:
        output.error(exc)
        code = EXIT_FAILED
    except ConfigError as exc:
        output.warn(Text("Error: ", style="bold red").append(str(exc), style=""))
        code = EXIT_USAGE
    except BrokenPipeError:
        # `ferry logs ... | head`: the reader left. Point stdout at /dev/null so the flush at exit is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
