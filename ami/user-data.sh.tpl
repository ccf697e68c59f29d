#!/bin/bash
# Boot script of a Sightfleet {{role}} instance, rendered by controller/templates.py.
# It carries the stack's settings and region only: credentials come from the instance
# profile, never from user data (which anyone with ec2:DescribeInstanceAttribute can read).
set -euo pipefail
install -d -m 0755 /etc/sightfleet
# Quoted delimiter: the values below reach systemd verbatim, never a shell expansion.
cat > /etc/sightfleet/{{role}}.env <<'SIGHTFLEET_ENV'
{{environment}}
SIGHTFLEET_ENV
chmod 0644 /etc/sightfleet/{{role}}.env
systemctl daemon-reload
systemctl enable --now sightfleet-{{role}}.service
