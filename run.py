"""Start a LiveHub node.

    python run.py [--host 127.0.0.1] [--port 8080] [--demo] [--workers N]
    python run.py create-admin EMAIL            (password from LIVEHUB_ADMIN_PASSWORD or a prompt)

The same as the installed `livehub` command (livehub/cli.py), with `serve` as the default subcommand:
`python run.py --demo` is `livehub serve --demo`. With no DATABASE_URL an embedded PostgreSQL runs from
./var/pgdata (LIVEHUB_DATA_DIR) for as long as the node does. `--workers N` starts N server processes on
one port (the kernel spreads connections over them with SO_REUSEPORT); they share rooms through Redis,
so it needs REDIS_URL.
"""

import sys

from livehub.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="run.py", default="serve"))
