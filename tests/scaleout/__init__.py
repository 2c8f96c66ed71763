"""Scale-out tests: a real Redis-compatible server (tests/redis_server.py) and real Celery workers."""
