"""gunicorn entry point: `gunicorn -c web_tier/gunicorn.conf.py web_tier.wsgi:app`."""
from sightfleet.logs import setup_logging
from web_tier import create_app

setup_logging("web")
app = create_app()
