"""JupyterHub configuration for the local stack and the integration tests.

Run as ``/usr/bin/jupyterhub -f hub/local_config.py`` with the current directory set to
``$JHUB_RUN_DIR``. Everything comes from the environment:

  JHUB_RUN_DIR                  db, cookie secret, pid files, homes, work trees (required)
  JHUB_PORT                     public (proxy) port on 127.0.0.1 (default 8000)
  JHUB_HUB_PORT                 hub API port on 127.0.0.1 (default 8081)
  JHUB_PROXY_API_PORT           proxy API port on 127.0.0.1 (default 8001)
  NOTEBOOKS_SERVICE_URL         URL the hub proxies /services/notebooks/ to (optional)
  NOTEBOOKS_API_TOKEN           the notebooks service's API token (required)
  NOTEBOOKS_OAUTH_REDIRECT_URI  exact OAuth redirect URI of the service
                                (default http://127.0.0.1:$JHUB_PORT/services/notebooks/oauth_callback)
  JHUB_ADMIN_TOKEN              API token of the `admin` service used by harnesses (optional)
  JUPYTERHUB_CRYPT_KEY          key encrypting auth_state (required by the hub for auth_state)
  JHUB_LOGS_DIR                 per-server log files <user>--<server>.log (default $JHUB_RUN_DIR/logs)
  JHUB_GITLAB_TOKENS            JSON file {username: gitlabToken} read at login (optional)
  JHUB_PASSWORD                 the DummyAuthenticator password (default "password")
  JHUB_SLOW_SPAWN_TIMEOUT       seconds before a start answers 202 (hub default 10)
  JHUB_HTTP_TIMEOUT             seconds a server has to answer once started (default 30)
  JHUB_NAMED_SERVER_LIMIT       named servers per user, 0 = unlimited (default 0)
  JHUB_CONCURRENT_SPAWN_LIMIT   (default 100)
  JHUB_CLONE_TIMEOUT            seconds the clone may take (default 120)
  JHUB_GITLAB_URL               GitLab base URL, to check and refresh users' tokens when a server
                                stops (default: derived from the server's repository URL)
  JHUB_GITLAB_CLIENT_ID         the GitLab OAuth application users log in with; with the secret,
  JHUB_GITLAB_CLIENT_SECRET     lets the hub refresh an expired token (auth_state.refresh_token)
  JHUB_AUTOSAVE_TIMEOUT         seconds a save at stop time may take (default: the chart's,
                                renku_settings.DEFAULT_AUTOSAVE_TIMEOUT_SECONDS, 45)
  NOTEBOOKS_SERVER_OPTIONS_PATH the server options launches are checked against, the service's
                                own setting (default config/server-options.json)
  JHUB_POLL_INTERVAL            seconds between the hub's checks that servers still run (default 30)
  JHUB_LEGACY_ADMIN             "1": also give the notebooks service the legacy admin flag
  JHUB_LOG_LEVEL                hub log level (default INFO)
  JHUB_SESSION_VOLUMES          "1": keep each server's work directory (its "volume") under
                                $JHUB_RUN_DIR/volumes/<user>/<server>/ when it stops, with a
                                volume.json the service reads (NOTEBOOKS_VOLUMES_DIR), and resume on it
  JHUB_TOKEN_SYNC_SECONDS       seconds between checks (and refreshes) of a running server's GitLab
                                token for its git proxy (default 60)

Launches are checked as the chart's hub checks them, with chart/files/renku_options.py: options
it refuses fail the start with its reason. Harnesses may also start a bare server (no launch
options) and slow or fail a start with `jhub_test_delay` (seconds) and `jhub_test_fail`
("raise" or "exit"), which only this hub knows.

Git inside a server goes through the git credential proxy (git-proxy/; dist/git-proxy/main.js
when built and newer than its sources), one process per server
started beside it and stopped after the save at stop; the proxy reads the user's token from a file
in the hub's run dir (git-proxy/<user>--<server>.token), which the hub rewrites whenever the token
is refreshed. The notebook's process never gets the token.

Every process the hub starts carries JHUB_MARKER=<run dir> in its environment, so a harness
can find and kill leftovers of *this* hub by PID (never by name: other hubs may run).
"""

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

from jupyterhub.auth import DummyAuthenticator
from jupyterhub.spawner import SimpleLocalProcessSpawner
from tornado import web

c = get_config()  # noqa: F821 (provided by the config loader)


def env(name, default=None):
    value = os.environ.get(name, "")
    return value if value != "" else default


def required(name):
    value = env(name)
    if value is None:
        raise SystemExit(f"local_config.py: {name} must be set")
    return value


def env_int(name, default):
    value = env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"local_config.py: {name} must be an integer") from None


HERE = os.path.dirname(os.path.abspath(__file__))
CHART_FILES = os.path.normpath(os.path.join(HERE, "..", "chart", "files"))
CLONE_SCRIPT = os.path.join(CHART_FILES, "clone-repo.sh")
AUTOSAVE_SCRIPT = os.path.join(CHART_FILES, "autosave.sh")
# The same token refresh as the Kubernetes spawner config (the chart mounts it beside it).
sys.path.insert(0, CHART_FILES)
from gitlab_token import _request as gitlab_request  # noqa: E402
from gitlab_token import fresh_gitlab_token  # noqa: E402
from renku_options import SpawnRefused, load_server_options, parse_user_options, refuse_foreign_autosave  # noqa: E402
from renku_settings import DEFAULT_AUTOSAVE_TIMEOUT_SECONDS  # noqa: E402
from prometheus_client import Counter  # noqa: E402 (JupyterHub's own dependency)

# Saves happen here, in the hub, so they are counted in the hub's own /hub/metrics.
AUTOSAVES = Counter(
    "renku_notebooks_hub_autosaves",
    "Saves of a stopping server's work by outcome: pushed, nothing (no unsaved work), failed.",
    ["outcome"],
)

RUN_DIR = os.path.abspath(required("JHUB_RUN_DIR"))
LOGS_DIR = os.path.abspath(env("JHUB_LOGS_DIR", os.path.join(RUN_DIR, "logs")))
SPAWNED_DIR = os.path.join(RUN_DIR, "spawned")
WORK_DIR = os.path.join(RUN_DIR, "work")
SESSION_VOLUMES = env("JHUB_SESSION_VOLUMES") == "1"
VOLUMES_DIR = os.path.join(RUN_DIR, "volumes")
for d in (RUN_DIR, LOGS_DIR, SPAWNED_DIR, WORK_DIR):
    os.makedirs(d, exist_ok=True)
# Anything the hub still writes relative to the current directory lands in the run dir too.
os.chdir(RUN_DIR)

PORT = env_int("JHUB_PORT", 8000)
HUB_PORT = env_int("JHUB_HUB_PORT", 8081)
PROXY_API_PORT = env_int("JHUB_PROXY_API_PORT", 8001)
MARKER = RUN_DIR

# The proxy and the servers inherit this; see the module docstring.
os.environ["JHUB_MARKER"] = MARKER
# NodeSource's node does not search Debian's module directory (the proxy needs `commander`).
os.environ["NODE_PATH"] = ":".join(
    p for p in ["/usr/share/nodejs", "/usr/lib/nodejs", os.environ.get("NODE_PATH", "")] if p
)

# --- hub, proxy, files -----------------------------------------------------------------------

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = PORT
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = HUB_PORT
c.JupyterHub.db_url = f"sqlite:///{os.path.join(RUN_DIR, 'jupyterhub.sqlite')}"
c.JupyterHub.cookie_secret_file = os.path.join(RUN_DIR, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(RUN_DIR, "jupyterhub.pid")
c.JupyterHub.log_level = env("JHUB_LOG_LEVEL", "INFO")
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = env_int("JHUB_NAMED_SERVER_LIMIT", 0)
c.JupyterHub.concurrent_spawn_limit = env_int("JHUB_CONCURRENT_SPAWN_LIMIT", 100)
if env("JHUB_SLOW_SPAWN_TIMEOUT") is not None:
    # Not a JupyterHub trait in 3.0: the request handlers read it from the tornado settings.
    c.JupyterHub.tornado_settings = {"slow_spawn_timeout": env_int("JHUB_SLOW_SPAWN_TIMEOUT", 10)}


def _proxy_token():
    # Fixed per run dir: otherwise every start makes a new one and a proxy left running
    # from a previous start of the same run dir refuses the hub.
    path = os.path.join(RUN_DIR, "proxy_auth_token")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        token = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        return token


c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PROXY_API_PORT}"
c.ConfigurableHTTPProxy.auth_token = _proxy_token()
c.ConfigurableHTTPProxy.pid_file = os.path.join(RUN_DIR, "jupyterhub-proxy.pid")

# --- authentication --------------------------------------------------------------------------


def _gitlab_tokens():
    path = env("JHUB_GITLAB_TOKENS")
    if not path:
        return {}
    with open(path) as f:
        tokens = json.load(f)
    return tokens if isinstance(tokens, dict) else {}


class GitLabTokenAuthenticator(DummyAuthenticator):
    """Password login whose auth_state carries the user's GitLab token, as an OAuth login
    through GitLab would."""

    async def authenticate(self, handler, data):
        name = await super().authenticate(handler, data)
        if not name:
            return None
        token = _gitlab_tokens().get(name)
        if token:
            return {"name": name, "auth_state": {"access_token": token}}
        # A login without a token in the file must not wipe what an admin stored.
        existing = None
        user = handler.find_user(name) if handler is not None else None
        if user is not None:
            existing = await user.get_auth_state()
        return {"name": name, "auth_state": existing}


c.JupyterHub.authenticator_class = GitLabTokenAuthenticator
c.Authenticator.enable_auth_state = True
c.DummyAuthenticator.password = env("JHUB_PASSWORD", "password")

# --- services and roles ----------------------------------------------------------------------

NOTEBOOKS_TOKEN = required("NOTEBOOKS_API_TOKEN")
notebooks = {
    "name": "notebooks",
    "api_token": NOTEBOOKS_TOKEN,
    "oauth_client_id": "service-notebooks",
    "oauth_redirect_uri": env(
        "NOTEBOOKS_OAUTH_REDIRECT_URI",
        f"http://127.0.0.1:{PORT}/services/notebooks/oauth_callback",
    ),
    "oauth_no_confirm": True,
}
if env("NOTEBOOKS_SERVICE_URL"):
    notebooks["url"] = env("NOTEBOOKS_SERVICE_URL")
if env("JHUB_LEGACY_ADMIN") == "1":
    notebooks["admin"] = True
services = [notebooks]
roles = [
    {
        "name": "notebooks-service",
        "description": "What the notebooks service needs to manage users' servers",
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
    {
        # OAuth logins to the service need this (403 otherwise).
        "name": "user",
        "scopes": ["self", "access:services!service=notebooks"],
    },
]
if env("JHUB_ADMIN_TOKEN"):
    services.append({"name": "admin", "api_token": env("JHUB_ADMIN_TOKEN")})
    roles.append(
        {
            "name": "admin-service",
            "description": "Test harnesses: create users, set auth_state, make tokens",
            "scopes": [
                "admin:users",
                "admin:servers",
                "admin:auth_state",
                "tokens",
                "users",
                "servers",
                "read:users",
                "access:servers",
                "read:metrics",
            ],
            "services": ["admin"],
        }
    )
c.JupyterHub.services = services
c.JupyterHub.load_roles = roles

# --- spawner ---------------------------------------------------------------------------------

CLONE_TIMEOUT = env_int("JHUB_CLONE_TIMEOUT", 120)
AUTOSAVE_TIMEOUT = env_int("JHUB_AUTOSAVE_TIMEOUT", DEFAULT_AUTOSAVE_TIMEOUT_SECONDS)
# Checking (and refreshing) the token, in all; the save script has AUTOSAVE_TIMEOUT of its own,
# so a stop takes at most about TOKEN_TIMEOUT + AUTOSAVE_TIMEOUT + 5 s more when GitLab hangs.
TOKEN_TIMEOUT = 10
GITLAB_URL = env("JHUB_GITLAB_URL")
GITLAB_CLIENT_ID = env("JHUB_GITLAB_CLIENT_ID")
GITLAB_CLIENT_SECRET = env("JHUB_GITLAB_CLIENT_SECRET")
# The service's own server options: the hub checks launches against the same copy.
SERVER_OPTIONS = load_server_options(
    env("NOTEBOOKS_SERVER_OPTIONS_PATH", os.path.join(HERE, "..", "config", "server-options.json"))
)
# Options only the local hub knows, for harnesses (see the module docstring).
HARNESS_OPTIONS = ("jhub_test_delay", "jhub_test_fail")
SINGLEUSER = "/usr/bin/jupyterhub-singleuser"
# The git credential proxy, run from this checkout (see the module docstring).
REPO_ROOT = os.path.normpath(os.path.join(HERE, ".."))


def _git_proxy_command():
    """The built proxy when it is newer than its sources (it starts in 1 s with 64 MiB, tsx
    takes 2.5 s and 90 MiB), else the sources through tsx."""
    built = os.path.join(REPO_ROOT, "dist", "git-proxy", "main.js")
    sources = os.path.join(REPO_ROOT, "git-proxy")
    try:
        built_at = os.path.getmtime(built)
        if all(
            os.path.getmtime(os.path.join(sources, name)) <= built_at
            for name in os.listdir(sources)
            if name.endswith(".ts")
        ):
            return ["node", built]
    except OSError:
        pass
    return ["node", "--import", "tsx", os.path.join(sources, "main.ts")]

GIT_PROXY_TOKENS_DIR = os.path.join(RUN_DIR, "git-proxy")
os.makedirs(GIT_PROXY_TOKENS_DIR, mode=0o700, exist_ok=True)
TOKEN_SYNC_SECONDS = env_int("JHUB_TOKEN_SYNC_SECONDS", 60)
SINGLEUSER_CMD = [SINGLEUSER] if os.path.exists(SINGLEUSER) else ["jupyterhub-singleuser"]


def _safe(name):
    """A path component from a user-controlled name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", str(name or ""))
    return cleaned if cleaned not in ("", ".", "..") else "_"


def _escape_format(value):
    # notebook_dir and default_url go through str.format({username} etc.).
    return value.replace("{", "{{").replace("}", "}}")


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gitlab_url(launch):
    """GitLab's base URL: configured, else the repository URL without `/<namespace>/<project>.git`."""
    if GITLAB_URL:
        return GITLAB_URL
    repository = str(launch.get("repository") or "")
    suffix = f"/{launch.get('namespace')}/{launch.get('project')}.git"
    if repository.endswith(suffix):
        return repository[: -len(suffix)]
    parts = urlsplit(repository)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


class _ServerLog:
    """The hub's log, with warnings also in the server's log file (what `logs` shows the user)."""

    def __init__(self, spawner):
        self.spawner = spawner

    def info(self, message, *args):
        self.spawner.log.info(message, *args)

    def warning(self, message, *args):
        self.spawner.log.warning(message, *args)
        self.spawner._append_log(f"[{_now()}] " + (message % args if args else message))

    error = warning


class LocalRenkuSpawner(SimpleLocalProcessSpawner):
    """Runs the notebook server as a local process (as the hub's user) in a fresh clone of
    the project at the requested commit, as the Kubernetes spawner does in its init container
    (restoring the autosave named in the user options, if any). However the server stops, its
    unsaved work is pushed to an autosave branch with `chart/files/autosave.sh` and a fresh
    GitLab token, and its work directory is removed, as a pod's emptyDir goes with the pod —
    unless session volumes are on (JHUB_SESSION_VOLUMES=1): then the directory is kept, as a
    PersistentVolumeClaim outlives its pod, and the next start resumes it."""

    def _log_path(self):
        return os.path.join(LOGS_DIR, f"{_safe(self.user.name)}--{_safe(self.name)}.log")

    def _append_log(self, text):
        with open(self._log_path(), "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def _fail(self, message):
        self._append_log(f"[{_now()}] spawn failed: {message}")
        # log_message is what the REST API returns; jupyterhub_message what progress shows.
        err = web.HTTPError(500, message.replace("%", "%%"))
        err.jupyterhub_message = message
        raise err

    async def _clone(self, launch, target, token, git_env=None):
        lfs = launch.server_options.get("lfs_auto_fetch") is True
        clone_env = {
            **(git_env or {}),
            "GIT_REPOSITORY_URL": launch.repository,
            "GIT_COMMIT_SHA": launch.commit_sha,
            "GIT_BRANCH": launch.branch,
            "GIT_TARGET_DIR": target,
            "GIT_LFS_AUTO_FETCH": "true" if lfs else "false",
            "GIT_ACCESS_TOKEN": token or "",
        }
        if launch.autosave:
            clone_env["GIT_AUTOSAVE_BRANCH"] = launch.autosave
        finished, returncode, text = await self._run_script(CLONE_SCRIPT, clone_env, CLONE_TIMEOUT, token)
        if not finished:
            self._fail(f"cloning {clone_env['GIT_REPOSITORY_URL']} timed out after {CLONE_TIMEOUT} s")
        if text:
            self._append_log(text)
        if returncode != 0:
            lines = [line for line in text.splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {returncode}"
            reason = reason.removeprefix("clone-repo: error: ")
            self._fail(f"could not check out the repository: {reason}")

    async def _run_script(self, script, script_env, timeout, token):
        """Runs one of the chart's shell scripts (the same the pod runs) in its own session with
        only the given environment; returns (finished in time, exit status, output). The token
        is masked in the output, though the scripts never print it."""
        os.makedirs(self.home_dir, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            script,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": self.home_dir,
                "LANG": os.environ.get("LANG", "C.UTF-8"),
                "JHUB_MARKER": MARKER,
                **script_env,
            },
            cwd=self.home_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            # The whole session: git's helpers too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()
            return False, proc.returncode, ""
        text = out.decode("utf-8", "replace")
        if token:
            text = text.replace(token, "***")
        return True, proc.returncode, text

    # --- work tree and autosave ---------------------------------------------------------------
    # What a save at stop time needs, kept in the spawner's state (get_state/load_state) so that it
    # survives a hub restart and the clear_state() that poll() makes when the process has ended.
    # None when no work tree is left to save.
    autosave_launch = None

    def _work_dir(self):
        root = VOLUMES_DIR if SESSION_VOLUMES else WORK_DIR
        return os.path.join(root, _safe(self.user.name), _safe(self.name))

    # --- session volumes: the work directory outlives the server -----------------------------

    def _volume_file(self):
        return os.path.join(self._work_dir(), "volume.json")

    def _write_volume(self, **changes):
        """Updates volume.json (written whole, then renamed: the service never reads half of it)."""
        path = self._volume_file()
        try:
            with open(path) as f:
                volume = json.load(f)
        except (OSError, ValueError):
            volume = {}
        volume.update(changes)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(volume, f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)

    def _start_volume(self, opts, target):
        """Whether the start resumes a kept checkout; records the volume as in use."""
        resumed = os.path.isfile(os.path.join(target, ".git", "renku-clone-done"))
        created = None if resumed else _now()
        self._write_volume(
            user=self.user.name,
            server=self.name,
            namespace=str(opts.get("namespace") or ""),
            project=str(opts.get("project") or ""),
            branch=str(opts.get("branch") or ""),
            commit=str(opts.get("commit_sha") or ""),
            stopped_at=None,
            **({"created": created} if created else {}),
        )
        return resumed

    def load_state(self, state):
        super().load_state(state)
        launch = state.get("autosave_launch")
        self.autosave_launch = launch if isinstance(launch, dict) else None
        self.git_proxy_pid = state.get("git_proxy_pid") or 0

    def get_state(self):
        state = super().get_state()
        if self.autosave_launch:
            state["autosave_launch"] = self.autosave_launch
        if self.git_proxy_pid:
            state["git_proxy_pid"] = self.git_proxy_pid
        return state

    def _autosave_lock(self):
        lock = getattr(self, "_autosave_lock_obj", None)
        if lock is None:
            lock = self._autosave_lock_obj = asyncio.Lock()
        return lock

    async def _run_autosave(self, launch, token):
        """Runs autosave.sh on the work tree; returns its one line."""
        save_env = {
            "GIT_TARGET_DIR": launch["target"],
            "AUTOSAVE_USER": self.user.name,
            "GIT_BRANCH": str(launch.get("branch") or ""),
            "GIT_COMMIT_SHA": str(launch.get("commit_sha") or ""),
            "GIT_REPOSITORY_URL": str(launch.get("repository") or ""),
            "GIT_ACCESS_TOKEN": token or "",
            "AUTOSAVE_TIMEOUT": str(AUTOSAVE_TIMEOUT),
        }
        finished, returncode, text = await self._run_script(AUTOSAVE_SCRIPT, save_env, AUTOSAVE_TIMEOUT + 5, token)
        if not finished:
            return f"autosave: error: timed out after {AUTOSAVE_TIMEOUT} s"
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else f"autosave: error: exit status {returncode}"

    async def _save_work(self, why):
        """Saves the work tree's unsaved work to GitLab, then removes the server's work directory,
        as a pod's emptyDir goes with the pod. Never raises: a stop must complete."""
        async with self._autosave_lock():
            launch = self.autosave_launch
            work = self._work_dir()
            try:
                # Only a work tree the clone completed (it leaves a marker): a failed clone holds no work.
                marker = os.path.join((launch or {}).get("target", ""), ".git", "renku-clone-done")
                cloned = launch and os.path.isfile(marker)
                if cloned:
                    began = time.monotonic()
                    server_log = _ServerLog(self)
                    try:
                        token = await self._fresh_token(launch, server_log)
                    except asyncio.TimeoutError:
                        # GitLab does not answer: the push will say so with its own reason.
                        server_log.warning("Checking the GitLab token of %s timed out", self.user.name)
                        token = (await self.user.get_auth_state() or {}).get("access_token")
                    if token:
                        line = await self._run_autosave(launch, token)
                    else:
                        line = "autosave: error: no usable GitLab token (the user has to log in again)"
                    self._append_log(f"[{_now()}] {line} ({why}; {time.monotonic() - began:.1f} s)")
                    failed = ": error: " in line
                    AUTOSAVES.labels("failed" if failed else "pushed" if ": pushed " in line else "nothing").inc()
                    level = self.log.warning if failed else self.log.info
                    level("%s %s: %s", why, self._log_name, line)
            except Exception:
                self.log.exception("Autosave of %s failed", self._log_name)
            finally:
                self.autosave_launch = None
                if SESSION_VOLUMES and os.path.isfile(self._volume_file()):
                    # Kept for the next start; the service lists it and deletes it when asked or
                    # when it has been stopped longer than the retention.
                    self._write_volume(stopped_at=_now())
                else:
                    await asyncio.to_thread(shutil.rmtree, work, True)

    async def stop(self, now=False):
        await super().stop(now=now)
        await self._save_work("stopped")
        await self._stop_git_proxy()

    async def run_post_stop_hook(self):
        # Also when the process ended on its own: the hub then stops the server without stop().
        await self._save_work("ended")
        await self._stop_git_proxy()
        result = super().run_post_stop_hook()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            await result

    async def start(self):
        opts = dict(self.user_options or {})
        harness = {key: opts.pop(key) for key in HARNESS_OPTIONS if key in opts}
        launch = None
        if opts:
            # The production parser, on the service's server options: what the chart's hub refuses,
            # this one refuses too.
            try:
                launch = parse_user_options(opts, SERVER_OPTIONS)
                refuse_foreign_autosave(launch, self.user.name)
            except SpawnRefused as e:
                self._fail(str(e))
        user = _safe(self.user.name)
        server = _safe(self.name)
        self._append_log(f"[{_now()}] starting {self.user.name}/{self.name}")
        self._launch_reset()  # progress(): this start's steps
        if os.path.exists(self._work_dir()) and not SESSION_VOLUMES:
            # Left by a hub that ended without stopping the server: never silently reused, as a
            # new pod starts empty; its work is saved first, as at a stop.
            if self.autosave_launch is None and launch is not None:
                self.autosave_launch = self._launch_of(launch)
            await self._save_work("left from an earlier run")
            await self._stop_git_proxy()

        with open(os.path.join(SPAWNED_DIR, f"{user}--{server}.json"), "w") as f:
            json.dump(dict(self.user_options or {}), f, indent=2, sort_keys=True)

        if harness.get("jhub_test_delay"):
            await asyncio.sleep(float(harness["jhub_test_delay"]))
        if harness.get("jhub_test_fail") == "raise":
            self._fail("jhub_test_fail asked this spawn to fail")

        work = self._work_dir()
        if launch is not None:
            target = os.path.join(work, _safe(launch.project))
            resumed = SESSION_VOLUMES and self._start_volume(opts, target)
            # From here on a stop saves what is in the work tree (also after a failed clone).
            self.autosave_launch = self._launch_of(launch)
            auth_state = await self.user.get_auth_state() or {}
            token = auth_state.get("access_token")
            git_env = await self._git_session_env(launch, token)
            if resumed:
                # The clone script finds its own finished checkout and leaves it as it is.
                self._report(60, "Resuming the kept working directory")
            else:
                self._report_clone(launch)  # progress(): the `cloning` step
            await self._clone(launch, target, token, git_env)
            await self._start_git_proxy(launch, token, git_env["GIT_PROXY_URL"])
        else:
            target = work
            os.makedirs(target, exist_ok=True)
        self.notebook_dir = _escape_format(target)

        server_options = launch.server_options if launch is not None else {}
        default_url = str(server_options.get("defaultUrl") or "/tree")
        # Only the classic notebook is installed here: it has no /lab.
        if default_url == "/lab" or default_url.startswith("/lab/"):
            default_url = "/tree"
        notebook = launch.notebook if launch is not None else None
        if notebook and os.path.isfile(os.path.join(target, str(notebook).lstrip("/"))):
            default_url = "/notebooks/" + str(notebook).lstrip("/")
        self.default_url = _escape_format(default_url)

        # The spawner object is reused when the same server starts again: reset the command.
        self.cmd = ["/bin/sh", "-c", "exit 3"] if harness.get("jhub_test_fail") == "exit" else SINGLEUSER_CMD

        self._report(80, "Starting the notebook server")  # progress(): the `starting` step
        # The server's output goes to the per-server log file.
        log = open(self._log_path(), "ab")
        try:
            self.popen_kwargs = {"stdout": log, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL}
            return await super().start()
        finally:
            log.close()

    def _launch_of(self, launch):
        return {
            "target": os.path.join(self._work_dir(), _safe(launch.project)),
            "namespace": launch.namespace,
            "project": launch.project,
            "branch": launch.branch,
            "commit_sha": launch.commit_sha,
            "repository": launch.repository,
        }

    # --- git inside the server: the credential proxy and its token file ------------------------
    git_proxy_pid = 0

    def _git_token_file(self):
        return os.path.join(GIT_PROXY_TOKENS_DIR, f"{_safe(self.user.name)}--{_safe(self.name)}.token")

    def _write_git_token(self, token):
        # Replaced whole (a rename), so the proxy never reads half a token; only the hub's user reads it.
        path = self._git_token_file()
        fd = os.open(f"{path}.new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token or "")
        os.replace(f"{path}.new", path)

    async def _git_session_env(self, launch, token):
        """What the clone configures for git in the server: the proxy's address, and the
        user's name and e-mail from GitLab (commits made in the server are the user's)."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        git_env = {"GIT_PROXY_URL": f"http://127.0.0.1:{port}"}
        base = _gitlab_url(self._launch_of(launch))
        if token and base:
            try:
                status, body = await asyncio.to_thread(
                    gitlab_request,
                    f"{base.rstrip('/')}/api/v4/user",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=TOKEN_TIMEOUT,
                )
                me = json.loads(body) if status == 200 else {}
            except (OSError, ValueError) as err:
                self.log.warning("Cannot read the GitLab user of %s: %s", self.user.name, err)
                me = {}
            if isinstance(me, dict):
                name = me.get("name") or me.get("username")
                email = me.get("commit_email") or me.get("email") or me.get("public_email")
                if isinstance(name, str) and name:
                    git_env["GIT_USER_NAME"] = name
                if isinstance(email, str) and email:
                    git_env["GIT_USER_EMAIL"] = email
        return git_env

    async def _start_git_proxy(self, launch, token, proxy_url):
        """Starts the proxy beside the server (its own session, its output in the server's log)
        and waits until it listens."""
        await self._stop_git_proxy()
        self._write_git_token(token)
        port = int(proxy_url.rsplit(":", 1)[1])
        log = open(self._log_path(), "ab")
        try:
            proc = subprocess.Popen(
                _git_proxy_command(),
                cwd=REPO_ROOT,
                env={
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "HOME": self.home_dir,
                    "JHUB_MARKER": MARKER,
                    "GIT_PROXY_REPOSITORY_URL": launch.repository,
                    "GIT_ACCESS_TOKEN_FILE": self._git_token_file(),
                    "GIT_PROXY_PORT": str(port),
                },
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self.git_proxy_pid = proc.pid
        self._git_proxy_proc = proc
        self._git_token_synced = time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.git_proxy_pid = 0
                self._fail(f"the git proxy exited with status {proc.returncode} (see the server's log)")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.2)
        await self._stop_git_proxy()
        self._fail("the git proxy did not start within 20 s")

    async def _stop_git_proxy(self):
        """Ends the proxy (after the requests in flight, 5 s at most) and removes the token file."""
        pid, self.git_proxy_pid = self.git_proxy_pid, 0
        proc, self._git_proxy_proc = getattr(self, "_git_proxy_proc", None), None
        if pid:

            def ended():
                if proc is not None and proc.pid == pid:
                    return proc.poll() is not None  # also reaps it
                try:
                    os.kill(pid, 0)  # (a hub restarted since: not our child)
                except ProcessLookupError:
                    return True
                return False

            try:
                os.kill(pid, signal.SIGINT)
                for _ in range(50):
                    if ended():
                        break
                    await asyncio.sleep(0.1)
                else:
                    os.killpg(pid, signal.SIGKILL)
                    ended()
            except (ProcessLookupError, PermissionError):
                pass
        for path in (self._git_token_file(), f"{self._git_token_file()}.new"):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    async def poll(self):
        status = await super().poll()
        task = getattr(self, "_git_token_task", None)
        if (
            status is None
            and self.git_proxy_pid
            and (task is None or task.done())
            and time.monotonic() - getattr(self, "_git_token_synced", 0) >= TOKEN_SYNC_SECONDS
        ):
            # In the background: the hub's poll must stay quick.
            self._git_token_synced = time.monotonic()
            self._git_token_task = asyncio.ensure_future(self._sync_git_token())
        return status

    async def _fresh_token(self, launch, log):
        """The user's GitLab token, checked and refreshed if it expired; TimeoutError if GitLab hangs."""
        return await asyncio.wait_for(
            fresh_gitlab_token(
                self.user,
                _gitlab_url(launch),
                GITLAB_CLIENT_ID,
                GITLAB_CLIENT_SECRET,
                log=log,
                timeout=TOKEN_TIMEOUT / 2,
            ),
            TOKEN_TIMEOUT,
        )

    async def _sync_git_token(self):
        """Keeps the proxy's token one GitLab accepts: checked, refreshed when it expired."""
        launch = self.autosave_launch
        if not launch or not self.git_proxy_pid:
            return
        try:
            token = await self._fresh_token(launch, _ServerLog(self))
            try:
                with open(self._git_token_file()) as f:
                    current = f.read()
            except FileNotFoundError:
                return  # stopped meanwhile
            if token and token != current and self.git_proxy_pid:
                self._write_git_token(token)
                self.log.info("Updated the git proxy's GitLab token of %s", self._log_name)
        except Exception as err:  # noqa: BLE001 - tried again at the next poll
            self.log.warning("Keeping the git proxy's token of %s fresh failed: %s", self._log_name, err)

    # --- progress: the steps of a start for the hub's progress stream (Spawner.progress) --------
    # The service maps these messages to its steps (lib/progress/steps.ts `stepOfHubMessage`).

    def _launch_waker(self):
        if getattr(self, "_launch_changed", None) is None:
            self._launch_changed = asyncio.Event()
        return self._launch_changed

    def _wake_progress(self):
        # Wakes every open progress() at once; later waits use a fresh event.
        waker = self._launch_waker()
        self._launch_changed = asyncio.Event()
        waker.set()

    def _launch_reset(self):
        self._launch_events = []
        self._wake_progress()

    def _report(self, progress, message):
        if getattr(self, "_launch_events", None) is None:
            self._launch_events = []
        self._launch_events.append({"progress": progress, "message": message})
        self._wake_progress()

    def _report_clone(self, launch):
        if launch.autosave:
            self._report(60, f"Restoring autosave {launch.autosave} into a fresh clone of the repository")
        else:
            self._report(60, f"Cloning the repository {launch.repository} at {launch.commit_sha[:7]}")

    async def progress(self):
        """Every step of this start so far, then each new one until the hub stops asking (it
        stops when the start ends). Each progress stream replays from the first step."""
        sent = 0
        while True:
            waker = self._launch_waker()
            events = getattr(self, "_launch_events", None) or []
            sent = min(sent, len(events))  # a new start began meanwhile
            while sent < len(events):
                yield events[sent]
                sent += 1
            await waker.wait()

    def get_env(self):
        env = super().get_env()
        env["JUPYTERHUB_USER_OPTIONS"] = json.dumps(self.user_options or {}, sort_keys=True)
        return env


c.JupyterHub.spawner_class = LocalRenkuSpawner
c.LocalRenkuSpawner.home_dir_template = os.path.join(RUN_DIR, "home", "{username}")
c.Spawner.cmd = SINGLEUSER_CMD
# The hub runs as root here; the notebook server refuses root without this.
c.Spawner.args = ["--allow-root"]
c.Spawner.environment = {
    "JUPYTERHUB_SINGLEUSER_APP": "notebook.notebookapp.NotebookApp",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    "JHUB_MARKER": MARKER,
}
c.Spawner.http_timeout = env_int("JHUB_HTTP_TIMEOUT", 30)
c.Spawner.poll_interval = env_int("JHUB_POLL_INTERVAL", 30)
c.Spawner.start_timeout = CLONE_TIMEOUT + 60
