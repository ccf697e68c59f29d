"""`python -m web_tier.webhooks`: the webhook deliverer (web_tier/webhooks/deliver.py)."""
import sys

from web_tier.webhooks.deliver import main

if __name__ == "__main__":
    sys.exit(main())
