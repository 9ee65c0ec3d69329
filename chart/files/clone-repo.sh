#!/bin/sh
# Check out a GitLab repository at an exact commit for a notebook server.
#
# Inputs (environment):
#   GIT_REPOSITORY_URL   http(s) clone URL, without credentials
#   GIT_COMMIT_SHA       commit to check out (full sha)
#   GIT_BRANCH           branch to create at that commit
#   GIT_TARGET_DIR       work tree to create (or reuse)
#   GIT_LFS_AUTO_FETCH   "true" to fetch LFS objects, anything else skips them
#   GIT_ACCESS_TOKEN     the user's GitLab OAuth token; empty for public projects
#   GIT_AUTOSAVE_BRANCH  optional: an autosave branch (renku/autosave/...) to restore on top
#   GIT_PROXY_URL        optional: the git credential proxy beside the server
#                        (http://127.0.0.1:<port>); git inside the server reaches the repository
#                        through it (`http.<repository>.proxy`), so it never holds the token
#   GIT_PROXY_CA_FILE    with an https:// repository: the proxy's CA certificate, as the notebook
#                        sees it (`http.<repository>.sslCAInfo`)
#   GIT_USER_NAME        optional: the user's name and e-mail on GitLab, for the commits made in
#   GIT_USER_EMAIL       the server (`user.name`, `user.email`)
#
# Restoring an autosave (see autosave.sh): HEAD goes to the saved HEAD (the autosave commit's
# parent) on GIT_BRANCH, the working directory becomes the saved one with the differences
# unstaged and uncommitted, and the autosave branch is deleted on the remote. An autosave
# that cannot be restored is logged and the plain checkout stands: it never fails the clone.
#
# LFS: the filters are installed in the repository (`git lfs install --local`); content is
# fetched at the clone only with GIT_LFS_AUTO_FETCH, but the files a restored autosave brings
# back always get their content.
#
# The token only ever travels in the environment of the git processes
# (GIT_CONFIG_* -> http.extraHeader): never on a command line, in .git/config
# or in the output. What the clone leaves in .git/config for later is the proxy's address.
set -eu

log() { printf 'clone-repo: %s\n' "$*"; }
fail() {
  printf 'clone-repo: error: %s\n' "$*" >&2
  exit 1
}

url=${GIT_REPOSITORY_URL:-}
sha=${GIT_COMMIT_SHA:-}
branch=${GIT_BRANCH:-}
target=${GIT_TARGET_DIR:-}
lfs=${GIT_LFS_AUTO_FETCH:-false}
autosave=${GIT_AUTOSAVE_BRANCH:-}
proxy=${GIT_PROXY_URL:-}
proxy_ca=${GIT_PROXY_CA_FILE:-}
user_name=${GIT_USER_NAME:-}
user_email=${GIT_USER_EMAIL:-}
token=${GIT_ACCESS_TOKEN:-}
unset GIT_ACCESS_TOKEN

[ -n "$url" ] || fail 'GIT_REPOSITORY_URL is not set'
[ -n "$sha" ] || fail 'GIT_COMMIT_SHA is not set'
[ -n "$branch" ] || fail 'GIT_BRANCH is not set'
[ -n "$target" ] || fail 'GIT_TARGET_DIR is not set'

case "$url" in
  http://* | https://*) ;;
  *) fail "GIT_REPOSITORY_URL must be an http(s) URL" ;;
esac
# Credentials in the URL would end up in .git/config.
authority=${url#*://}
authority=${authority%%/*}
case "$authority" in
  *@*) fail 'GIT_REPOSITORY_URL must not contain credentials' ;;
esac

case "$sha" in
  *[!0-9a-fA-F]*) fail "GIT_COMMIT_SHA '$sha' is not a hexadecimal commit sha" ;;
esac
[ ${#sha} -ge 7 ] || fail "GIT_COMMIT_SHA '$sha' is too short"
sha=$(printf '%s' "$sha" | tr 'A-F' 'a-f')

git check-ref-format --branch "$branch" >/dev/null 2>&1 || fail "GIT_BRANCH '$branch' is not a valid branch name"

case "$proxy" in
  '' | http://127.0.0.1:* | http://localhost:*) ;;
  *) fail "GIT_PROXY_URL must be http://127.0.0.1:<port>" ;;
esac
case "$url" in
  https://*) [ -z "$proxy" ] || [ -n "$proxy_ca" ] || fail 'GIT_PROXY_CA_FILE is needed for an https:// repository' ;;
esac
has_lfs=false
git lfs version >/dev/null 2>&1 && has_lfs=true

# Tracing would print the request headers; prompting would hang without a terminal.
unset GIT_TRACE GIT_TRACE_CURL GIT_CURL_VERBOSE GIT_TRACE_PACKET GIT_TRACE_SETUP
export GIT_TERMINAL_PROMPT=0
if [ -n "$token" ]; then
  basic=$(printf 'oauth2:%s' "$token" | base64 | tr -d '\n')
  export GIT_CONFIG_COUNT=1
  export GIT_CONFIG_KEY_0=http.extraHeader
  export GIT_CONFIG_VALUE_0="Authorization: Basic $basic"
  unset basic
fi
unset token

if [ "$lfs" != true ]; then
  export GIT_LFS_SKIP_SMUDGE=1
fi

# Run git quietly; on failure print one line: what failed and git's last word.
run_git() {
  what=$1
  shift
  if ! out=$(git "$@" 2>&1 >/dev/null); then
    last=$(printf '%s\n' "$out" | sed '/^[[:space:]]*$/d' | tail -n 1)
    fail "$what${last:+: $last}"
  fi
}

# Written when a run completes: a rerun (a restarted init container) keeps the work tree as it is.
done_marker=.git/renku-clone-done
is_repo=false
if [ -d "$target/.git" ]; then
  is_repo=true
  origin=$(git -C "$target" config --get remote.origin.url 2>/dev/null || true)
  [ "$origin" = "$url" ] || fail "$target already holds a different repository"
  prepared=$(cat "$target/$done_marker" 2>/dev/null || true)
  case "$prepared" in
    "$sha"*" $branch")
      log "$target is already at $sha on $branch, prepared by an earlier run"
      exit 0
      ;;
  esac
  head=$(git -C "$target" rev-parse -q --verify HEAD 2>/dev/null || true)
  current=$(git -C "$target" symbolic-ref -q --short HEAD 2>/dev/null || true)
  case "$head" in
    "$sha"*)
      if [ "$current" = "$branch" ]; then
        log "$target is already at $head on $branch"
        exit 0
      fi
      ;;
  esac
elif [ -e "$target" ] && [ -n "$(ls -A "$target" 2>/dev/null)" ]; then
  fail "$target exists and is not empty"
fi

if [ "$is_repo" = false ]; then
  mkdir -p "$target" || fail "cannot create $target"
  run_git "cannot initialise $target" -C "$target" init -q
  run_git 'cannot configure origin' -C "$target" remote add origin "$url"
fi
cd "$target"
if [ "$has_lfs" = true ]; then
  # Before the checkout: its filters decide whether LFS files get content or stay pointers.
  run_git 'cannot set up git-lfs' lfs install --local
fi

log "fetching $branch from $url"
set +e
out=$(git ls-remote --exit-code --heads origin "refs/heads/$branch" 2>&1 >/dev/null)
rc=$?
set -e
if [ "$rc" -eq 2 ]; then
  fail "branch '$branch' not found in $url"
elif [ "$rc" -ne 0 ]; then
  last=$(printf '%s\n' "$out" | sed '/^[[:space:]]*$/d' | tail -n 1)
  fail "cannot read $url (not found or access denied)${last:+: $last}"
fi
run_git "cannot fetch branch '$branch'" fetch -q --no-tags origin "+refs/heads/$branch:refs/remotes/origin/$branch"

if ! git cat-file -e "$sha^{commit}" 2>/dev/null; then
  # Not in the branch's history: ask for the commit itself (needs a full sha).
  git fetch -q --no-tags origin "$sha" >/dev/null 2>&1 || true
fi
full=$(git rev-parse -q --verify "$sha^{commit}" 2>/dev/null) || fail "commit $sha not found in $url"

run_git "cannot check out $full" checkout -q -B "$branch" "$full"
git branch -q --set-upstream-to="origin/$branch" "$branch" >/dev/null 2>&1 || true

head=$(git rev-parse HEAD)
[ "$head" = "$full" ] || fail "HEAD is $head, expected $full"
log "checked out $branch at $full"

# Last line of a failed git's output, for a log line.
last_words() { printf '%s\n' "$1" | sed '/^[[:space:]]*$/d' | tail -n 1 | sed 's/^fatal: //; s/^error: //'; }

restore_autosave() {
  case "$autosave" in
    renku/autosave/*) ;;
    *)
      log "'$autosave' is not an autosave branch; not restored"
      return 0
      ;;
  esac
  if ! git check-ref-format --branch "$autosave" >/dev/null 2>&1; then
    log "'$autosave' is not a valid branch name; not restored"
    return 0
  fi
  saved_ref=refs/renku/autosave
  if ! out=$(git fetch -q --no-tags origin "+refs/heads/$autosave:$saved_ref" 2>&1); then
    last=$(last_words "$out")
    log "could not fetch autosave $autosave${last:+: $last}; starting from $full"
    return 0
  fi
  saved=$(git rev-parse -q --verify "$saved_ref^{commit}" 2>/dev/null)
  if ! saved_head=$(git rev-parse -q --verify "$saved^1^{commit}" 2>/dev/null); then
    git update-ref -d "$saved_ref" >/dev/null 2>&1
    log "autosave $autosave has no parent commit; not restored, starting from $full"
    return 0
  fi
  # HEAD at the saved HEAD; then index and files from the saved tree, and the index back to HEAD:
  # the saved differences are left unstaged, new files untracked.
  # The saved files get their LFS content (uploaded by the save) whatever lfs_auto_fetch says;
  # an object GitLab lacks (a save made without LFS support) leaves its pointer, not a failure.
  if ! out=$(git checkout -q -B "$branch" "$saved_head" 2>&1 &&
    GIT_LFS_SKIP_SMUDGE=0 GIT_LFS_SKIP_DOWNLOAD_ERRORS=1 git read-tree -u --reset "$saved" 2>&1 &&
    git reset -q 2>&1); then
    last=$(last_words "$out")
    git checkout -q -f -B "$branch" "$full" >/dev/null 2>&1
    git update-ref -d "$saved_ref" >/dev/null 2>&1
    log "could not restore autosave $autosave${last:+: $last}; starting from $full"
    return 0
  fi
  git branch -q --set-upstream-to="origin/$branch" "$branch" >/dev/null 2>&1 || true
  git update-ref -d "$saved_ref" >/dev/null 2>&1
  log "restored autosave $autosave"
  # Restored once: the branch goes, so a later stop saves afresh and nothing is restored twice.
  if out=$(git push -q origin --delete "$autosave" 2>&1); then
    log "deleted autosave branch $autosave"
  else
    last=$(last_words "$out")
    log "could not delete autosave branch $autosave${last:+: $last}"
  fi
}
if [ -n "$autosave" ]; then
  restore_autosave || true # (and `set -e` does not apply inside)
fi

if [ "$lfs" = true ]; then
  if [ "$has_lfs" = true ]; then
    run_git 'cannot fetch LFS objects' lfs pull
    log 'fetched LFS objects'
  else
    log 'git-lfs is not installed; LFS objects were not fetched'
  fi
fi

# Git inside the server: through the proxy for this repository's URLs only (smart HTTP and LFS
# are under it); origin stays the project's URL. Set last: the clone itself does not use it.
if [ -n "$proxy" ]; then
  run_git 'cannot configure the git proxy' config "http.$url.proxy" "$proxy"
  if [ -n "$proxy_ca" ]; then
    run_git 'cannot configure the git proxy' config "http.$url.sslCAInfo" "$proxy_ca"
  fi
fi
[ -z "$user_name" ] || run_git 'cannot set user.name' config user.name "$user_name"
[ -z "$user_email" ] || run_git 'cannot set user.email' config user.email "$user_email"

printf '%s %s\n' "$full" "$branch" >"$done_marker" 2>/dev/null || true
