#!/bin/bash
# Boot script of a Sightfleet {{role}} instance, rendered by sightfleet/deploy/templates.py.
# It carries the stack's settings and region only: credentials come from the instance
# profile, never from user data (which anyone with ec2:DescribeInstanceAttribute can read).
set -euo pipefail
# A stock image (scripts/deploy's default) has no Sightfleet yet: install the code bundle that
# scripts/deploy uploaded (Amazon Linux ships the AWS CLI; the instance profile may read it).
# An image baked with ami/packer already holds /opt/sightfleet/venv and skips this.
CODE_BUNDLE='{{code_bundle}}'
if [ -n "$CODE_BUNDLE" ] && [ ! -x /opt/sightfleet/venv/bin/python ]; then
  rm -rf /tmp/sightfleet && mkdir -p /tmp/sightfleet
  aws s3 cp --only-show-errors "$CODE_BUNDLE" /tmp/sightfleet.tar.gz
  tar -xzf /tmp/sightfleet.tar.gz -C /tmp/sightfleet
  bash /tmp/sightfleet/ami/install.sh /tmp/sightfleet
  rm -rf /tmp/sightfleet /tmp/sightfleet.tar.gz
fi
install -d -m 0755 /etc/sightfleet
# Quoted delimiter: the values below reach systemd verbatim, never a shell expansion.
cat > /etc/sightfleet/{{role}}.env <<'SIGHTFLEET_ENV'
{{environment}}
SIGHTFLEET_ENV
chmod 0644 /etc/sightfleet/{{role}}.env
systemctl daemon-reload
systemctl enable --now sightfleet-{{role}}.service
