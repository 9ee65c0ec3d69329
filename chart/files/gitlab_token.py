"""A usable GitLab access token for a hub user, refreshed through OAuth when it has expired.

GitLab's OAuth access tokens live 2 hours; a server that outlives its token still has to save
its work when it stops. The hub keeps the user's tokens in ``auth_state``
(``access_token``, ``refresh_token``). GitLab's refresh grant returns a new pair and the old
refresh token is then used up, so the new pair is stored at once, and refreshes of one user are
serialised within this process (two servers stopping together must not both spend the same
refresh token).

Standard library only: the hub image and the local stack import it as it is.
"""

import asyncio
import json
import logging
import urllib.error
import urllib.parse
import urllib.request

REQUEST_TIMEOUT = 10

_locks = {}


def _lock_for(name):
    lock = _locks.get(name)
    if lock is None:
        lock = _locks[name] = asyncio.Lock()
    return lock


def _request(url, data=None, headers=None, timeout=REQUEST_TIMEOUT):
    """(status, body bytes) of one HTTP request; raises OSError when GitLab cannot be reached."""
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Accept": "application/json", **(headers or {})},
        method="POST" if data is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


def _oauth_error(body):
    try:
        data = json.loads(body)
    except ValueError:
        return "no JSON in the answer"
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return "unexpected answer"


async def fresh_gitlab_token(user, gitlab_url, client_id, client_secret, log=None, timeout=REQUEST_TIMEOUT):
    """The user's GitLab access token, refreshed if GitLab says it has expired.

    Returns None (and logs why, never a token) when the user has no token, or it was refused and
    cannot be refreshed. When GitLab cannot be reached to check it, returns the stored token: what
    it is used for then fails with GitLab's own reason.
    """
    log = log or logging.getLogger(__name__)
    async with _lock_for(user.name):
        auth_state = await user.get_auth_state() or {}
        token = auth_state.get("access_token")
        if not token:
            log.warning("No GitLab token for %s: the user has to log in again", user.name)
            return None
        if not gitlab_url:
            return token
        base = gitlab_url.rstrip("/")
        try:
            status, _ = await asyncio.to_thread(
                _request, f"{base}/api/v4/user", headers={"Authorization": f"Bearer {token}"}, timeout=timeout
            )
        except Exception as err:  # unreachable, reset, timed out
            log.warning("Cannot check the GitLab token of %s: %s", user.name, err)
            return token
        if status != 401:
            return token

        refresh_token = auth_state.get("refresh_token")
        if not refresh_token:
            log.warning("The GitLab token of %s was refused and there is no refresh token", user.name)
            return None
        if not client_id or not client_secret:
            log.warning(
                "The GitLab token of %s was refused and cannot be refreshed: no OAuth client configured",
                user.name,
            )
            return None
        body = urllib.parse.urlencode(
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id,
                "client_secret": client_secret,
            }
        ).encode()
        try:
            status, raw = await asyncio.to_thread(
                _request,
                f"{base}/oauth/token",
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=timeout,
            )
        except Exception as err:
            log.warning("Cannot refresh the GitLab token of %s: %s", user.name, err)
            return None
        if status != 200:
            log.warning(
                "GitLab refused to refresh the token of %s: %s (HTTP %s)",
                user.name,
                _oauth_error(raw),
                status,
            )
            return None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        new_token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(new_token, str) or not new_token:
            log.warning("GitLab's refresh answer for %s holds no access token", user.name)
            return None
        new_state = dict(auth_state, access_token=new_token)
        if isinstance(answer.get("refresh_token"), str):
            new_state["refresh_token"] = answer["refresh_token"]
        await user.save_auth_state(new_state)
        log.info("Refreshed the GitLab token of %s", user.name)
        return new_token
