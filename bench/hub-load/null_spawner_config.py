"""A stock JupyterHub 3.0 holding thousands of running named servers that cost no process, for
`npm run bench:hub-load` (bench/hub-load.ts).

Run as ``/usr/bin/jupyterhub -f bench/hub-load/null_spawner_config.py`` after seed.py has put the
users and their running servers into the database. Everything comes from the environment:

  BENCH_RUN_DIR          db, cookie secret, pid file (required)
  BENCH_HUB_PORT         hub API port on 127.0.0.1 (required)
  BENCH_PUBLIC_PORT      the proxy's public port the hub believes in (nothing listens there)
  BENCH_PROXY_API_URL    the proxy's REST API: the benchmark's route table (required)
  BENCH_PROXY_TOKEN      its token (required)
  BENCH_NULL_SERVER_URL  the one tiny HTTP server every "server" is (required)
  NOTEBOOKS_API_TOKEN    the notebooks service's token (required)
  BENCH_ADMIN_TOKEN      token of the `bench` service the harness lists and probes with (required)
  BENCH_USER_TOKENS      JSON file {token: username}: the polling clients' tokens (optional)

What is not stock is only the spawner (no process) and the proxy being an external one: the
hub's own code, its request handlers, database and periodic work are those of a real hub.
"""

import json
import os

from jupyterhub.spawner import Spawner

c = get_config()  # noqa: F821 (provided by the config loader)


def required(name):
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"null_spawner_config.py: {name} must be set")
    return value


RUN_DIR = os.path.abspath(required("BENCH_RUN_DIR"))
NULL_SERVER_URL = required("BENCH_NULL_SERVER_URL")
os.chdir(RUN_DIR)

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("BENCH_PUBLIC_PORT") or 18999)
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(required("BENCH_HUB_PORT"))
c.JupyterHub.db_url = f"sqlite:///{os.path.join(RUN_DIR, 'jupyterhub.sqlite')}"
c.JupyterHub.cookie_secret_file = os.path.join(RUN_DIR, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(RUN_DIR, "jupyterhub.pid")
c.JupyterHub.log_level = "INFO"
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.active_server_limit = 0
c.JupyterHub.concurrent_spawn_limit = 0
# Stopping 5,000 servers at the end would only slow the benchmark down; the run dir goes anyway.
c.JupyterHub.cleanup_servers = False

# The proxy: an external one (the harness's route table answering the REST API of
# configurable-http-proxy), so that 5,000 routes cost no node process beside the hub. The hub
# talks to it exactly as to CHP.
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = required("BENCH_PROXY_API_URL")
c.ConfigurableHTTPProxy.auth_token = required("BENCH_PROXY_TOKEN")

c.JupyterHub.authenticator_class = "jupyterhub.auth.DummyAuthenticator"

# The same service and scopes as hub/local_config.py gives the notebooks service.
services = [
    {"name": "notebooks", "api_token": required("NOTEBOOKS_API_TOKEN")},
    {"name": "bench", "api_token": required("BENCH_ADMIN_TOKEN")},
]
c.JupyterHub.services = services
c.JupyterHub.load_roles = [
    {
        "name": "notebooks-service",
        "scopes": [
            "admin:users",
            "admin:servers",
            "admin:auth_state",
            "read:users",
            "users",
            "servers",
            "access:servers",
            "tokens",
        ],
        "services": ["notebooks"],
    },
    {"name": "bench-service", "scopes": ["admin:users", "admin:servers", "read:users", "tokens"], "services": ["bench"]},
    {"name": "user", "scopes": ["self", "access:services!service=notebooks"]},
]

if os.environ.get("BENCH_USER_TOKENS"):
    with open(os.environ["BENCH_USER_TOKENS"]) as f:
        c.JupyterHub.api_tokens = json.load(f)


class NullSpawner(Spawner):
    """A server that is only a URL: every one is the same tiny HTTP server, which answers
    anything (the hub's checks that a server is up). No process, no state."""

    async def start(self):
        return NULL_SERVER_URL

    async def poll(self):
        return None

    async def stop(self, now=False):
        pass


c.JupyterHub.spawner_class = NullSpawner
# A start would be answered at once; generous limits in case the harness ever starts many.
c.Spawner.http_timeout = 60
c.Spawner.start_timeout = 60
