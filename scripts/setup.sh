# Sourced by ./stylize and ./test: make .venv hold stylekit, its test extra and the two
# plugin packages. Quick when they are there: it compares a stamp (a hash of the files that
# say what to install) and only runs pip when one of them changed or .venv is missing.
# Set STYLEKIT_PYTHON to choose the interpreter the venv is made from (default python3).

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.stylekit-setup"
wanted="$(cat "$root/pyproject.toml" "$root"/plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)"

if [ ! -x "$venv/bin/stylekit" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "setting up $venv (first use, or pyproject.toml changed) ..." >&2
    [ -x "$venv/bin/python" ] || "${STYLEKIT_PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install -q -e "$root[test]" "$root/plugins/stylekit-mrf" "$root/plugins/stylekit-wasserstein"
    echo "$wanted" > "$stamp"
fi
