"""Locust load test for the counter app.

    locust -f compose/locustfile.py --headless -u 100 -r 50 -t 60s \
        --host http://127.0.0.1:80

Each simulated user hits GET / (one Redis INCR) and now and then reads
/api/count, like the seed's test. Settings from the environment:

  WAIT_MIN, WAIT_MAX   think time per user between requests, seconds
                       (default 1 and 2: the seed's pace; a user then sends
                       about 0.67 requests/s, so the offered load is
                       ~0.67 x users requests/s whatever the server can do).
                       WAIT_MAX=0 removes the think time: every user sends
                       its next request as soon as the answer arrives
                       (a closed loop measuring capacity).
  TARGETS              comma-separated base URLs to spread the users over
                       (user i talks to TARGETS[i % n]), e.g. one per Swarm
                       task when the routing mesh is not available; without
                       it every user talks to --host.
"""

import itertools
import os

from locust import HttpUser, between, constant, task

WAIT_MIN = float(os.environ.get("WAIT_MIN", "1"))
WAIT_MAX = float(os.environ.get("WAIT_MAX", "2"))
TARGETS = [t.strip().rstrip("/") for t in os.environ.get("TARGETS", "").split(",") if t.strip()]
_next_target = itertools.count()


class CounterUser(HttpUser):
    wait_time = constant(0) if WAIT_MAX <= 0 else between(WAIT_MIN, WAIT_MAX)

    def on_start(self):
        if TARGETS:
            # Client-side round robin, like DNS round robin (dnsrr) gives a
            # client inside the swarm.
            self.client.base_url = TARGETS[next(_next_target) % len(TARGETS)]

    @task(10)
    def hit(self):
        with self.client.get("/", name="GET /", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif not response.text.startswith("Hello World! I have been seen "):
                response.failure(f"unexpected body: {response.text[:80]!r}")

    @task(1)
    def count(self):
        with self.client.get("/api/count", name="GET /api/count", catch_response=True) as response:
            if response.status_code != 200 or "count" not in response.text:
                response.failure(f"status {response.status_code}: {response.text[:80]!r}")
