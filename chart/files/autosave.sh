#!/bin/sh
# Save a notebook server's unsaved work to GitLab when the server stops.
#
# Inputs (environment):
#   GIT_TARGET_DIR         the work tree
#   AUTOSAVE_USER          the user's hub name
#   GIT_BRANCH             the launch's branch
#   GIT_COMMIT_SHA         the launch's commit (full sha)
#   GIT_ACCESS_TOKEN       the user's GitLab token, or
#   GIT_ACCESS_TOKEN_FILE  a file holding it (read when the save runs)
#   GIT_REPOSITORY_URL     where to push; optional, the work tree's origin by default. Spawners
#                          pass the launch's URL, so that an edited .git/config cannot send the
#                          token elsewhere.
#   AUTOSAVE_TIMEOUT       seconds the whole save may take (both hubs set it; default 45,
#                          chart/values.yaml's gitContainers.autosaveTimeoutSeconds)
#
# Unsaved work is: changes to tracked files, untracked files that .gitignore does not exclude,
# and local commits the remote lacks. It is pushed as one commit (parent: the local HEAD, tree:
# the working directory) to the branch renku/autosave/<user>/<branch>/<sha[:7]>/<head[:7]>.
# The user's index and working tree are left as they are (the commit is built in a temporary
# index). Nothing is pushed when there is nothing to save.
#
# Files that .gitattributes routes to Git LFS: their objects are uploaded before the branch is
# pushed, smallest first; a file whose upload does not fit in the save's time is left out of the
# autosave and named: "autosave: pushed <branch>; not saved, too large for the N s save: <files>".
#
# Prints one line and exits 0:  "autosave: pushed <branch>" or "autosave: nothing to save";
# or prints "autosave: error: <reason>" and exits 1.
#
# The token only ever travels in the environment of the one git process that pushes
# (GIT_CONFIG_* -> http.extraHeader): never on a command line, in a git config file or in the
# output. That push runs in a scratch repository borrowing the work tree's objects, with no
# system or global configuration, so nothing the notebook's user can configure (hooks,
# credential helpers, URL rewrites) runs with the token or redirects it.
set -u

say() { printf 'autosave: %s\n' "$*"; }
fail() {
  say "error: $*"
  exit 1
}

timeout_s=${AUTOSAVE_TIMEOUT:-45}
case "$timeout_s" in
  '' | *[!0-9]*) fail "AUTOSAVE_TIMEOUT '$timeout_s' is not a whole number of seconds" ;;
esac
[ "$timeout_s" -gt 0 ] || fail 'AUTOSAVE_TIMEOUT must be at least 1'

# Bound the whole save: run this script again under timeout(1), which ends the process group
# (git and its helpers included). Without timeout(1), git's low-speed limit still applies.
if [ -z "${AUTOSAVE_BOUNDED:-}" ] && [ -f "$0" ] && command -v timeout >/dev/null 2>&1; then
  # (stderr: only the shell's notes on processes the timeout ended; the result line is on stdout)
  AUTOSAVE_BOUNDED=1 timeout -k 2 "$timeout_s" /bin/sh "$0" 2>/dev/null
  rc=$?
  case "$rc" in
    0 | 1) exit "$rc" ;;
    124 | 137) fail "timed out after $timeout_s s" ;;
    *) fail "ended with status $rc" ;;
  esac
fi

target=${GIT_TARGET_DIR:-}
user=${AUTOSAVE_USER:-}
branch=${GIT_BRANCH:-}
sha=${GIT_COMMIT_SHA:-}
url=${GIT_REPOSITORY_URL:-}
token=${GIT_ACCESS_TOKEN:-}
token_file=${GIT_ACCESS_TOKEN_FILE:-}
unset GIT_ACCESS_TOKEN GIT_ACCESS_TOKEN_FILE
# Git must work on the target alone; tracing would print request headers; prompting would hang.
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
unset GIT_TRACE GIT_TRACE_CURL GIT_CURL_VERBOSE GIT_TRACE_PACKET GIT_TRACE_SETUP GIT_ASKPASS SSH_ASKPASS
unset GIT_CONFIG_COUNT GIT_CONFIG_PARAMETERS
export GIT_TERMINAL_PROMPT=0

[ -n "$target" ] || fail 'GIT_TARGET_DIR is not set'
[ -n "$user" ] || fail 'AUTOSAVE_USER is not set'
[ -n "$branch" ] || fail 'GIT_BRANCH is not set'
[ -n "$sha" ] || fail 'GIT_COMMIT_SHA is not set'
case "$sha" in
  *[!0-9a-fA-F]*) fail "GIT_COMMIT_SHA '$sha' is not a hexadecimal commit sha" ;;
esac
[ ${#sha} -ge 7 ] || fail "GIT_COMMIT_SHA '$sha' is too short"
sha=$(printf '%s' "$sha" | tr 'A-F' 'a-f')

if [ -z "$token" ] && [ -n "$token_file" ]; then
  [ -r "$token_file" ] || fail 'the token file cannot be read'
  token=$(tr -d ' \t\r\n' <"$token_file")
fi
[ -d "$target" ] || fail "$target does not exist"
cd "$target" || fail "cannot enter $target"
[ "$(git rev-parse --is-inside-work-tree 2>/dev/null)" = true ] || fail "$target is not a git work tree"
head=$(git rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null) || fail "no commit is checked out in $target"

name="renku/autosave/$user/$branch/$(printf '%s' "$sha" | cut -c1-7)/$(printf '%s' "$head" | cut -c1-7)"
git check-ref-format "refs/heads/$name" || fail "'$name' is not a valid branch name"

if [ -z "$url" ]; then
  url=$(git config --get remote.origin.url) || fail 'the work tree has no origin to push to'
fi
case "$url" in
  http://* | https://*) ;;
  *) fail 'the repository URL must be an http(s) URL' ;;
esac
authority=${url#*://}
authority=${authority%%/*}
case "$authority" in
  *@*) fail 'the repository URL must not contain credentials' ;;
esac

scratch=$(mktemp -d "${TMPDIR:-/tmp}/autosave.XXXXXX") || fail 'cannot create a temporary directory'
trap 'rm -rf "$scratch"' EXIT
trap 'exit 1' HUP INT TERM

# The working directory as a tree, through a copy of the index (its stat data makes `add` fast).
index=$(git rev-parse --git-path index)
if [ -f "$index" ]; then
  cp "$index" "$scratch/index" || fail 'cannot copy the index'
fi
# --ignore-errors: an unreadable file must not cost the rest of the work.
GIT_INDEX_FILE="$scratch/index" git add -A --ignore-errors . >/dev/null 2>&1
tree=$(GIT_INDEX_FILE="$scratch/index" git write-tree 2>/dev/null) || fail 'cannot record the working directory'

# Local commits: reachable from HEAD but neither from the launch's commit nor from any remote
# branch fetched into the work tree.
known=
git cat-file -e "$sha^{commit}" 2>/dev/null && known=$sha
ahead=$(git rev-list -n 1 "$head" --not --remotes $known 2>/dev/null) || ahead=$head

if [ "$tree" = "$(git rev-parse "$head^{tree}")" ] && [ -z "$ahead" ]; then
  say 'nothing to save'
  exit 0
fi

[ -n "$token" ] || fail 'no GitLab token to push with'

if ! git var GIT_AUTHOR_IDENT >/dev/null 2>&1 || ! git var GIT_COMMITTER_IDENT >/dev/null 2>&1; then
  export GIT_AUTHOR_NAME="$user" GIT_COMMITTER_NAME="$user"
  export GIT_AUTHOR_EMAIL="$user@autosave.invalid" GIT_COMMITTER_EMAIL="$user@autosave.invalid"
fi
commit=$(printf 'Autosave of %s on %s at %s\n\nUnsaved work of the notebook server, saved when it stopped.\n' \
  "$user" "$branch" "$(printf '%s' "$sha" | cut -c1-7)" | git commit-tree "$tree" -p "$head" 2>/dev/null) ||
  fail 'cannot create the autosave commit'

objects=$(git rev-parse --git-path objects) && objects=$(cd "$objects" && pwd -P) ||
  fail 'cannot find the object directory'
push_repo="$scratch/push.git"
GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null git init -q --bare "$push_repo" >/dev/null 2>&1 ||
  fail 'cannot create a scratch repository'
printf '%s\n' "$objects" >"$push_repo/objects/info/alternates"

# Runs git in the scratch repository with the token; stdout and stderr only, the token is in the
# subshell's exported environment.
with_token() (
  export GIT_DIR="$push_repo" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
  export GIT_CONFIG_COUNT=3
  export GIT_CONFIG_KEY_0=http.extraHeader
  GIT_CONFIG_VALUE_0="Authorization: Basic $(printf 'oauth2:%s' "$token" | base64 | tr -d '\n')"
  export GIT_CONFIG_VALUE_0
  export GIT_CONFIG_KEY_1=http.lowSpeedLimit GIT_CONFIG_VALUE_1=1000
  export GIT_CONFIG_KEY_2=http.lowSpeedTime GIT_CONFIG_VALUE_2="$timeout_s"
  "$@" 2>&1
)

# LFS: GitLab refuses a branch that points at LFS pointers whose objects it lacks, so the objects
# of the new pointers (the `git add` above stored them through the repository's LFS filter) go
# first, smallest first. What does not fit in the save's time leaves the autosave and is named.
skipped=
if git lfs version >/dev/null 2>&1; then
  git rev-list --objects "$commit" --not --remotes $known >"$scratch/new-objects" 2>/dev/null
  # Blobs small enough to be pointers, then those that are: "<blob> <oid> <size>".
  cut -d' ' -f1 "$scratch/new-objects" |
    git cat-file --batch-check='%(objectname) %(objecttype) %(objectsize)' 2>/dev/null |
    awk '$2 == "blob" && $3 < 1024 { print $1 }' |
    git cat-file --batch 2>/dev/null | LC_ALL=C awk '
      function emit() { if (ptr && oid != "" && lsize != "") print blob, oid, lsize }
      state == 0 { blob = $1; size = $3 + 0; got = 0; first = 1; ptr = 0; oid = ""; lsize = ""
                   state = size == 0 ? 2 : 1; next }
      state == 1 { if (first) { ptr = $0 == "version https://git-lfs.github.com/spec/v1"; first = 0 }
                   if ($0 ~ /^oid sha256:[0-9a-f]+$/ && length($0) == 75) oid = substr($0, 12)
                   if ($0 ~ /^size [0-9]+$/) lsize = substr($0, 6)
                   got += length($0) + 1
                   if (got > size) { emit(); state = 0 } else if (got == size) state = 2
                   next }
      state == 2 { emit(); state = 0 }' >"$scratch/pointers"
  # "<size> <oid> <path>", smallest first.
  LC_ALL=C awk 'NR == FNR { oid[$1] = $2; size[$1] = $3; next }
    ($1 in oid) { print size[$1], oid[$1], substr($0, index($0, " ") + 1) }' \
    "$scratch/pointers" "$scratch/new-objects" | sort -n -k1,1 >"$scratch/lfs-files"
  if [ -s "$scratch/lfs-files" ]; then
    lfs_dir=$(git rev-parse --git-common-dir)/lfs && lfs_dir=$(cd "$(dirname "$lfs_dir")" && pwd -P)/lfs
    git --git-dir="$push_repo" config lfs.storage "$lfs_dir"
    # What is left for the branch's push once the objects are up.
    deadline=$(($(date +%s) + timeout_s - (timeout_s / 4 > 5 ? timeout_s / 4 : 5)))
    : >"$scratch/skipped"
    while read -r size oid file; do
      left=$((deadline - $(date +%s)))
      if [ "$left" -lt 1 ]; then
        printf '%s\n' "$file" >>"$scratch/skipped"
        continue
      fi
      out=$(with_token timeout -k 2 "$left" git lfs push --object-id "$url" "$oid")
      rc=$?
      if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        printf '%s\n' "$file" >>"$scratch/skipped"
        deadline=0
      elif [ "$rc" -ne 0 ]; then
        last=$(printf '%s\n' "$out" | sed '/^[[:space:]]*$/d' | tail -n 1)
        fail "uploading the LFS content of $file failed${last:+: $last}"
      fi
    done <"$scratch/lfs-files"
    if [ -s "$scratch/skipped" ]; then
      # The autosave without them (GitLab would refuse it whole otherwise).
      while read -r file; do
        GIT_INDEX_FILE="$scratch/index" git rm -q --cached --ignore-unmatch -- "$file" >/dev/null 2>&1
      done <"$scratch/skipped"
      tree=$(GIT_INDEX_FILE="$scratch/index" git write-tree 2>/dev/null) || fail 'cannot record the working directory'
      commit=$(printf 'Autosave of %s on %s at %s\n\nUnsaved work of the notebook server, saved when it stopped.\n' \
        "$user" "$branch" "$(printf '%s' "$sha" | cut -c1-7)" | git commit-tree "$tree" -p "$head" 2>/dev/null) ||
        fail 'cannot create the autosave commit'
      skipped=$(sort -u "$scratch/skipped" | tr '\n' ',' | sed 's/,$//; s/,/, /g')
    fi
  fi
fi

out=$(with_token git push -q "$url" "+$commit:refs/heads/$name")
rc=$?
unset token
if [ "$rc" -ne 0 ]; then
  last=$(printf '%s\n' "$out" | sed '/^[[:space:]]*$/d' | tail -n 1 | sed 's/^fatal: //; s/^error: //')
  fail "push to $url failed${last:+: $last}${skipped:+ (not saved, too large for the $timeout_s s save: $skipped)}"
fi
if [ -n "$skipped" ]; then
  say "pushed $name; not saved, too large for the $timeout_s s save: $skipped"
  exit 0
fi
say "pushed $name"
