"""`ferry`: the command-line client of Ferry's REST API (EAS OpenAPI 2021-07-01 and Ferry's extensions).

A thin client: it speaks HTTP to a Ferry server and never imports Django or the server's code.
See docs/cli.md.
"""

__version__ = "0.1.0"
