# Shared by scripts/deploy and scripts/destroy (sourced, not run): a Python that has boto3.
# The deploy tooling needs boto3 and requests only (no torch): it uses .venv when scripts/run or
# scripts/test made one, and otherwise makes a small one of its own in .run/venv-deploy (seconds),
# with the pins of requirements.txt.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

deploy_python() {
  local venv
  for venv in "$ROOT/.venv" "$ROOT/.run/venv-deploy"; do
    if "$venv/bin/python" -c 'import boto3, requests' 2>/dev/null; then
      echo "$venv/bin/python"
      return 0
    fi
  done
  venv="$ROOT/.run/venv-deploy"
  echo "Setting up $venv (boto3 and requests only)..." >&2
  python3 -m venv "$venv" >&2
  # shellcheck disable=SC2046
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    $(grep -E '^(boto3|requests)==' "$ROOT/requirements.txt") >&2
  echo "$venv/bin/python"
}
