"""gunicorn settings for the web tier; PORT and SIGHTFLEET_WEB_* override."""
import os

bind = f"{os.environ.get('SIGHTFLEET_WEB_HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Threads, not processes, carry the concurrency: most requests wait on the results table
# (CSE546 requests block until recognition ends), so 2 processes x 64 threads hold 128 waits.
workers = int(os.environ.get("SIGHTFLEET_WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("SIGHTFLEET_WEB_THREADS", "64"))
# Above the longest synchronous wait (120 s for POST /) so gunicorn never kills a waiting request.
timeout = 150
graceful_timeout = 20
keepalive = 5
backlog = 512
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
