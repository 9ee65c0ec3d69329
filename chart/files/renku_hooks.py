"""The hub's hooks for a launch, and ``configure``, which hooks renku-notebooks into ``c``."""

import logging
from typing import Any

from renku_options import SpawnRefused, parse_user_options, refuse_foreign_autosave
from renku_pod import apply_launch, git_identity
from renku_secret import load_fresh_gitlab_token, make_spawner_class, maybe_await
from renku_settings import Settings
from renku_volume import configure_session_volumes

log = logging.getLogger("renku_notebooks.spawner")


async def _resolved(spawner: Any, name: str) -> Any:
    # KubeSpawner's uid/gid may be callables taking the spawner, possibly async.
    value = getattr(spawner, name, None)
    if callable(value):
        value = await maybe_await(value(spawner))
    return value


async def configure_launch(spawner: Any, user_options: Any, settings: Settings) -> None:
    """Checks the launch, gets a fresh token, sets up the pod."""
    if not getattr(spawner, "_renku_manages_secret", False):
        raise SpawnRefused(
            "The hub's spawner class does not create the GitLab token Secret: "
            "spawner_config.py must set c.JupyterHub.spawner_class."
        )
    launch = parse_user_options(user_options, settings.server_options)
    refuse_foreign_autosave(launch, getattr(spawner.user, "name", ""))
    token = await spawner._renku_current_token(for_start=True)
    try:
        auth_state = await maybe_await(spawner.user.get_auth_state())
    except Exception:  # noqa: BLE001 - commits are then attributed as git's defaults say
        auth_state = None
    try:
        apply_launch(
            spawner,
            launch,
            settings,
            await _resolved(spawner, "uid"),
            await _resolved(spawner, "gid"),
            git_identity(auth_state),
        )
    except SpawnRefused:
        raise
    except ValueError as e:
        # A server options file whose values Kubernetes would not take.
        raise SpawnRefused(f"The hub's server options cannot be applied: {e}") from None
    # Kept in the hub's memory until start() writes it into the Secret.
    spawner._renku_token = token
    spawner.log.info(
        "renku-notebooks: %s/%s at %s for %s%s",
        launch.namespace,
        launch.project,
        launch.commit_sha[:7],
        getattr(spawner.user, "name", "?"),
        f", restoring {launch.autosave}" if launch.autosave else "",
    )


def make_apply_user_options(settings: Settings, previous: Any = None):
    """The ``apply_user_options`` hook (JupyterHub 5.3+), which runs before ``pre_spawn_hook``.

    Set in ``c.KubeSpawner`` (so that 5.3 does not warn of unhandled user options); if a
    later config replaces it, ``RenkuLaunchMixin.run_pre_spawn_hook`` takes the launch.
    """

    async def apply_user_options(spawner: Any, user_options: Any) -> None:
        if callable(previous):
            await maybe_await(previous(spawner, user_options))
        try:
            await configure_launch(spawner, user_options, settings)
        except SpawnRefused as e:
            # JupyterHub turns any other exception here into "Invalid user options".
            raise _http_error(e) from None
        spawner._renku_applied = True

    return apply_user_options


def _http_error(refusal: SpawnRefused) -> Exception:
    try:
        from tornado.web import HTTPError
    except ImportError:
        return refusal
    error = HTTPError(400, "%s", refusal.jupyterhub_message)
    error.jupyterhub_message = refusal.jupyterhub_message
    return error


def make_guard_hook(previous: Any = None):
    """``c.KubeSpawner.pre_spawn_hook``: an earlier configured hook, and a refusal when the
    spawner class is not this config's (an operator's config replaced ``spawner_class``),
    which would start pods without the launch. The launch itself is the class's."""

    async def pre_spawn_hook(spawner: Any) -> None:
        if previous is not None:
            await maybe_await(previous(spawner))
        if not isinstance(spawner, RenkuLaunchMixin):
            await configure_launch(spawner, getattr(spawner, "user_options", None), spawner_settings(spawner))

    return pre_spawn_hook


def spawner_settings(spawner: Any) -> Settings:
    return getattr(spawner, "_renku_settings", None) or Settings(server_options={})


class RenkuLaunchMixin:
    """Takes the launch in ``run_pre_spawn_hook`` unless ``apply_user_options`` did.

    Not through the ``pre_spawn_hook`` trait: a later ``hub.extraConfig`` that sets
    ``c.KubeSpawner.pre_spawn_hook`` (or ``c.Spawner``'s) would replace it. That hook,
    whenever it was configured, runs first, as JupyterHub runs it.
    """

    _renku_settings: Settings
    _renku_applied = False

    async def run_pre_spawn_hook(self) -> None:
        hook = getattr(self, "pre_spawn_hook", None)
        if hook:
            # This config's guard (with the hook configured before it), or a later one.
            await maybe_await(hook(self))
        if self._renku_applied:
            self._renku_applied = False
            return
        await configure_launch(self, getattr(self, "user_options", None), self._renku_settings)


def _configured(section: Any, name: str) -> Any:
    try:
        return section[name] if name in section else None
    except TypeError:
        return getattr(section, name, None)


def _kubespawner_class() -> Any:
    try:
        from kubespawner import KubeSpawner
    except ImportError:
        return None
    return KubeSpawner


def configure(
    c: Any,
    settings: Settings | None = None,
    *,
    spawner_base: Any = None,
    fresh_gitlab_token: Any = None,
    apply_user_options: bool | None = None,
) -> Settings:
    """Hooks renku-notebooks into the hub's configuration ``c``.

    Without arguments (as the hub loads it) it finds KubeSpawner, JupyterHub's
    version and ``gitlab_token.py`` itself; tests pass them.
    """
    settings = settings or Settings.from_env()
    kube = c.KubeSpawner
    spawner_section = c.Spawner
    jupyterhub = c.JupyterHub
    configured_class = _configured(jupyterhub, "spawner_class")
    base = spawner_base or (configured_class if isinstance(configured_class, type) else None) or _kubespawner_class()
    if base is None:
        raise RuntimeError("renku-notebooks: kubespawner is not installed in the hub")

    if apply_user_options is None:
        # JupyterHub 5.3+ (z2jh 4.2's) declares it on Spawner, and User.spawn calls it
        # before pre_spawn_hook; 3.x has neither.
        apply_user_options = "apply_user_options" in base.class_trait_names()
    if apply_user_options:
        previous_apply = _configured(kube, "apply_user_options") or _configured(spawner_section, "apply_user_options")
        if previous_apply is not None and not callable(previous_apply):
            log.warning("renku-notebooks: replacing a non-callable apply_user_options")
            previous_apply = None
        kube.apply_user_options = make_apply_user_options(settings, previous_apply)
    # Keep a hook an operator configured before: KubeSpawner's, else the one for every spawner.
    previous = _configured(kube, "pre_spawn_hook") or _configured(spawner_section, "pre_spawn_hook")
    kube.pre_spawn_hook = make_guard_hook(previous)
    grace = _configured(kube, "delete_grace_period")
    kube.delete_grace_period = max(int(grace or 0), settings.termination_grace_seconds)
    configure_session_volumes(kube, settings)
    if fresh_gitlab_token is None:
        fresh_gitlab_token = load_fresh_gitlab_token(settings.hub_files_dir)
    jupyterhub.spawner_class = make_spawner_class(base, settings, fresh_gitlab_token, RenkuLaunchMixin)
    return settings
