#!/bin/bash
# The project's virtualenv interpreter (.venv at the workspace root, made by
# the README's install step); resolved through the runfiles symlink.
here="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
exec "$here/../../.venv/bin/python3" "$@"
