#!/bin/bash
# Boot script of a Sightfleet {{role}} instance, rendered by sightfleet/deploy/templates.py.
# It carries the stack's settings and region only: credentials come from the instance
# profile, never from user data (which anyone with ec2:DescribeInstanceAttribute can read).
set -euo pipefail
# A stock image (scripts/deploy's default) has no Sightfleet yet: install the code bundle that
# scripts/deploy uploaded (Amazon Linux ships the AWS CLI; the instance profile may read it).
# An image baked with ami/packer already holds /opt/sightfleet/venv and skips this. The bundle runs as
# root: it is installed only if its bytes have the SHA-256 this script names (scripts/deploy wrote it
# here), so whoever can write to the artefacts bucket still cannot change what an instance runs.
CODE_BUNDLE='{{code_bundle}}'
CODE_BUNDLE_SHA256='{{code_bundle_digest}}'
if [ -n "$CODE_BUNDLE" ] && [ ! -x /opt/sightfleet/venv/bin/python ]; then
  WORK="$(mktemp -d)"
  aws s3 cp --only-show-errors "$CODE_BUNDLE" "$WORK/sightfleet.tar.gz"
  if ! echo "$CODE_BUNDLE_SHA256  $WORK/sightfleet.tar.gz" | sha256sum --check --status; then
    echo "sightfleet: $CODE_BUNDLE does not have the SHA-256 $CODE_BUNDLE_SHA256: not installing it" >&2
    rm -rf "$WORK"
    exit 1
  fi
  mkdir "$WORK/code"
  tar -xzf "$WORK/sightfleet.tar.gz" -C "$WORK/code"
  bash "$WORK/code/ami/install.sh" "$WORK/code"
  rm -rf "$WORK"
fi
install -d -m 0755 /etc/sightfleet
# Quoted delimiter: the values below reach systemd verbatim, never a shell expansion.
cat > /etc/sightfleet/{{role}}.env <<'SIGHTFLEET_ENV'
{{environment}}
SIGHTFLEET_ENV
chmod 0644 /etc/sightfleet/{{role}}.env
systemctl daemon-reload
systemctl enable --now sightfleet-{{role}}.service
