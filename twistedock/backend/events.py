"""
The event log every backend publishes to: a bounded history for C{since} and
C{until}, and live subscriptions for C{GET /events} (moby's daemon/events).
"""

import collections
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple

import attr
from twisted.internet.defer import Deferred, DeferredQueue, QueueOverflow

from ..filters import Filters
from ..logs import Logger
from ..reference import familiar_name

log = Logger()

#: How many past events are kept, as dockerd keeps.
HISTORY_LIMIT = 256

#: How many undelivered events a slow subscriber may have before it misses some.
SUBSCRIBER_BACKLOG = 1024

#: Event types that carry the deprecated top-level status, id and from keys.
_LEGACY_TYPES = ("container", "image")


@attr.s(frozen=True, auto_attribs=True)
class Actor:
    id: str
    attributes: Dict[str, str] = attr.Factory(dict)


@attr.s(frozen=True, auto_attribs=True)
class Event:
    type: str
    action: str
    actor: Actor
    time_nano: int
    scope: str = "local"

    def to_json(self) -> dict:
        doc: dict = {}
        if self.type in _LEGACY_TYPES:
            # Go's omitempty: empty legacy keys are left out.
            doc["status"] = self.action
            if self.actor.id:
                doc["id"] = self.actor.id
            source = self.actor.attributes.get("image")
            if self.type == "container" and source:
                doc["from"] = source
        doc.update(
            {
                "Type": self.type,
                "Action": self.action,
                "Actor": {"ID": self.actor.id, "Attributes": dict(self.actor.attributes)},
                "scope": self.scope,
                "time": self.time_nano // 1_000_000_000,
                "timeNano": self.time_nano,
            }
        )
        return doc


def event_matches(filters: Filters, event: Event) -> bool:
    """Whether C{event} passes C{filters}, by moby's events.Filter.Include."""
    attributes = event.actor.attributes
    fuzzy_actions = {"health_status", "exec_create", "exec_start"}
    if filters.get("event") & fuzzy_actions:
        action_ok = filters.fuzzy_match("event", event.action)
    else:
        action_ok = filters.exact_match("event", event.action)

    def by_name(kind: str) -> bool:
        return filters.fuzzy_match(kind, event.actor.id) or filters.fuzzy_match(
            kind, attributes.get("name", "")
        )

    image_name = attributes.get("name" if event.type == "image" else "image", "")
    image_ok = (
        filters.exact_match("image", event.actor.id)
        or filters.exact_match("image", image_name)
        or filters.exact_match("image", familiar_name(event.actor.id))
        or filters.exact_match("image", familiar_name(image_name))
    )
    return (
        action_ok
        and filters.exact_match("type", event.type)
        and (not filters.contains("scope") or filters.exact_match("scope", event.scope))
        and all(
            by_name(kind)
            for kind in (
                "daemon",
                "container",
                "plugin",
                "volume",
                "network",
                "node",
                "service",
                "secret",
                "config",
            )
        )
        and image_ok
        and filters.match_kv_list("label", attributes)
    )


class Subscription:
    """One listener's queue of live events."""

    def __init__(self, accepts: Callable[[Event], bool]) -> None:
        self._accepts = accepts
        self._queue: DeferredQueue = DeferredQueue(size=SUBSCRIBER_BACKLOG)
        self.missed = 0

    def deliver(self, event: Event) -> None:
        if not self._accepts(event):
            return
        try:
            self._queue.put(event)
        except QueueOverflow:
            self.missed += 1

    def get(self) -> Deferred:
        """The next event, or C{None} once the subscription is closed."""
        return self._queue.get()

    def close(self) -> None:
        self._queue.size = None
        self._queue.put(None)


class EventLog:
    """Publish events and subscribe to them."""

    def __init__(self, now: Callable[[], int] = time.time_ns, limit: int = HISTORY_LIMIT):
        self._now = now
        self._history: Deque[Event] = collections.deque(maxlen=limit)
        self._subscriptions: List[Subscription] = []

    def log(self, type: str, action: str, actor_id: str, attributes=None, scope="local") -> Event:
        event = Event(
            type=type,
            action=action,
            actor=Actor(actor_id, dict(attributes or {})),
            time_nano=self._now(),
            scope=scope,
        )
        self.publish(event)
        return event

    def publish(self, event: Event) -> None:
        self._history.append(event)
        for subscription in list(self._subscriptions):
            subscription.deliver(event)

    def subscribe(
        self, since: Optional[int], until: Optional[int], filters: Filters
    ) -> Tuple[List[Event], Subscription]:
        """Past events between C{since} and C{until} (nanoseconds), and a live feed.

        As dockerd, history is replayed only when C{since} or C{until} is
        given, and the live feed is not cut by them: the caller stops reading
        at C{until}.
        """

        def accepts(event: Event) -> bool:
            return not filters or event_matches(filters, event)

        buffered: List[Event] = []
        if since is not None or until is not None:
            lower = since or 0
            for event in self._history:
                if event.time_nano < lower:
                    continue
                if until is not None and event.time_nano > until:
                    continue
                if accepts(event):
                    buffered.append(event)
        subscription = Subscription(accepts)
        self._subscriptions.append(subscription)
        return buffered, subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    @property
    def listeners(self) -> int:
        return len(self._subscriptions)

    def close(self) -> None:
        """End every live feed (the daemon is stopping)."""
        for subscription in list(self._subscriptions):
            subscription.close()
        self._subscriptions.clear()
