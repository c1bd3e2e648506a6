"""Requests per token (or per user for a signed-in session), at PMLM_API_RATE.

Counted with atomic increments in the cache, in a sliding window (this window's count plus the
previous window's, weighted by how much of it still overlaps). With the cache in Redis
(PMLM_CACHE_URL) every process and host shares one count, and two requests at the same moment
cannot both take the last place, as they can with DRF's read-then-write request history."""

import math

from rest_framework.throttling import SimpleRateThrottle


class TokenRateThrottle(SimpleRateThrottle):
    scope = "token"

    def get_cache_key(self, request, view):
        if request.auth is not None and hasattr(request.auth, "prefix"):
            ident = f"token-{request.auth.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def _count(self, key: str) -> int:
        """Add one to this window's count, atomically, and return it."""
        self.cache.add(
            key, 0, timeout=2 * self.duration + 1
        )  # kept through the next window, which reads it as "previous"
        try:
            return self.cache.incr(key)
        except ValueError:  # expired between the two calls
            self.cache.set(key, 1, timeout=2 * self.duration + 1)
            return 1

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        elapsed = now - window * self.duration
        current_key = f"{self.key}:{window}"
        previous = self.cache.get(f"{self.key}:{window - 1}", 0)
        count = self._count(current_key)
        overlap = 1 - elapsed / self.duration
        if previous * overlap + count <= self.num_requests:
            return True
        try:
            self.cache.decr(current_key)  # a refused request does not use up the budget
        except ValueError:
            pass
        self._wait = self._seconds_until_free(previous, count - 1, elapsed)
        return False

    def _seconds_until_free(self, previous: int, used: int, elapsed: float) -> float:
        limit, duration = self.num_requests, self.duration
        if used + 1 <= limit and previous:
            # This window has room once enough of the previous window has slid out.
            return max(1.0, duration * (1 - (limit - used - 1) / previous) - elapsed)
        # This window is full: wait for the next one, then for enough of this one to slide out.
        return max(1.0, duration - elapsed + max(0.0, duration * (1 - (limit - 1) / max(used, 1))))

    def wait(self):
        return math.ceil(getattr(self, "_wait", self.duration))
