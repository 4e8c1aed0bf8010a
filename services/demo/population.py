"""A realistic demo population and its year of events (pure: a seed and a clock in, messages out).

Each person follows one lifecycle path (visitor, lead, first-time, repeat, loyal, lapsing,
churned) and leaves the traces real sources would: anonymous website and app visits that
later sign up, social posts under a handle, shop orders with line items and refunds,
help-desk tickets with CSAT and NPS surveys, second devices and a second email. Messages
are in Segment's format, as the SDKs and webhooks send them; identity has to stitch them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# persona: (weight, orders, days since the last order). Lapse thresholds are the default
# lifecycle rules' (at_risk after 90 days, churned after 180), so each path lands in its stage.
PERSONAS = {
    "visitor": (30, (0, 0), None),
    "lead": (20, (0, 0), None),
    "customer": (15, (1, 1), (3, 80)),
    "repeat": (12, (2, 4), (2, 75)),
    "loyal": (8, (5, 9), (1, 40)),
    "at_risk": (8, (1, 4), (100, 170)),
    "churned": (7, (1, 3), (200, 300)),
}
SOURCES = ("website", "mobile", "shop", "helpdesk", "social")  # the kind of source that sends each message
FIRST = ("Ada", "Ben", "Chloé", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kofi", "Lena", "Mateo",
         "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tess", "Uma", "Viktor", "Wen", "Yara", "Zoe")
LAST = ("Okafor", "Schmidt", "Martin", "Rossi", "Novak", "Silva", "Kim", "Jensen", "Haddad", "Ivanova",
        "Laurent", "Nguyen", "Byrne", "Costa", "Tanaka", "Weber", "Moreau", "Ahmed", "Lindqvist", "Garcia")
# country, city, a phone number pattern (# is a random digit; the UK and US ones are fictional ranges)
PLACES = (("DE", "Berlin", "+49 151 ########"), ("FR", "Lyon", "+33 6 ## ## ## ##"), ("GB", "Leeds", "+44 7700 900###"),
          ("US", "Austin", "+1 512 555 01##"), ("US", "Denver", "+1 303 555 01##"), ("NL", "Utrecht", "+31 6 ########"))
PRODUCTS = (("sku-tea-01", "Sencha green tea", "tea", 14.0), ("sku-tea-02", "Earl grey", "tea", 11.5),
            ("sku-mug-01", "Stoneware mug", "kitchen", 18.0), ("sku-pot-01", "Cast iron teapot", "kitchen", 64.0),
            ("sku-set-01", "Tasting set", "gifts", 39.0), ("sku-kettle", "Gooseneck kettle", "kitchen", 89.0))
PAGES = (("Home", "/"), ("Teas", "/teas"), ("Kitchen", "/kitchen"), ("Journal", "/journal"),
         ("Pricing", "/subscribe"), ("About", "/about"))
PLATFORMS = (("x", "twitter"), ("instagram", "instagram"))  # catalogue platform, identity's externalIds type
BROKEN_RATE = 0.01  # messages a buggy client sends without what the call needs: shown as rejected


@dataclass(frozen=True)
class Outgoing:
    """One message as its source sends it: `source` picks the write key, `body` is the call."""

    source: str
    body: dict[str, Any]

    @property
    def at(self) -> str:
        return self.body["timestamp"]


@dataclass
class Person:
    index: int
    persona: str
    user_id: str | None
    name: str
    emails: list[str]
    handle: str | None
    messages: list[Outgoing] = field(default_factory=list)


def population(people: int, seed: int, now: datetime) -> list[Person]:
    """`people` people over the year before `now`, the same for the same seed and clock."""
    rng = random.Random(seed)
    names = list(PERSONAS)
    weights = [PERSONAS[n][0] for n in names]
    return [_person(rng, i, rng.choices(names, weights)[0], seed, now) for i in range(people)]


def in_time_order(persons: list[Person]) -> list[Outgoing]:
    """Every message of the population, oldest first, as the sources would send them."""
    return sorted((m for p in persons for m in p.messages), key=lambda m: (m.at, m.body["messageId"]))


class _Journey:
    """Writes one person's messages; ids are derived from the seed, so a re-run is deduplicated."""

    def __init__(self, rng: random.Random, person: Person, seed: int, now: datetime):
        self.rng, self.person, self.now = rng, person, now
        self.prefix = f"demo-{seed}-{person.index}"
        self.anonymous = [f"anon-{seed}-{person.index}-{d}" for d in range(rng.choice((1, 1, 2, 3)))]
        self.device = f"dev-{seed}-{person.index}"

    def send(self, source: str, call: str, at: datetime, **fields: Any) -> dict:
        at = min(at, self.now - timedelta(minutes=1)).replace(microsecond=0)  # nothing from the future
        body = {"type": call, "messageId": f"{self.prefix}-{len(self.person.messages)}",
                "timestamp": at.isoformat().replace("+00:00", "Z"), **fields}
        # a buggy tracking snippet now and then (never on what decides the lifecycle stage)
        if source in ("website", "mobile") and fields.get("event") in (None, "Product Viewed") \
                and call != "identify" and self.rng.random() < BROKEN_RATE:
            for name in ("event", "userId", "anonymousId") if call == "track" else ("userId", "anonymousId"):
                body.pop(name, None)
        self.person.messages.append(Outgoing(source, body))
        return body

    def who(self, signed_up: bool, device: int = 0) -> dict:
        ids = {"anonymousId": self.anonymous[device % len(self.anonymous)]}
        return ids | ({"userId": self.person.user_id} if signed_up and self.person.user_id else {})

    def visit(self, at: datetime, signed_up: bool) -> None:
        """A website session of a few pages, or an app session on the phone."""
        device = self.rng.randrange(len(self.anonymous))
        for n in range(self.rng.randint(1, 4)):
            moment = at + timedelta(minutes=3 * n)
            if device == 1:  # the second device is the mobile app
                self.send("mobile", "screen", moment, name=self.rng.choice(PAGES)[0],
                          context={"device": {"id": self.device, "type": "ios"}}, **self.who(signed_up, device))
            elif n and self.rng.random() < 0.4:
                sku, name, category, price = self.rng.choice(PRODUCTS)
                self.send("website", "track", moment, event="Product Viewed", **self.who(signed_up, device),
                          properties={"product_id": sku, "name": name, "category": category, "price": price})
            else:
                title, path = self.rng.choice(PAGES)
                self.send("website", "page", moment, name=title, **self.who(signed_up, device),
                          properties={"path": path, "url": f"https://demo.rapport.example{path}"})


def _person(rng: random.Random, index: int, persona: str, seed: int, now: datetime) -> Person:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    slug = f"{first.lower().replace('é', 'e')}.{last.lower()}{index}"
    person = Person(index, persona, None if persona == "visitor" else f"u-{seed}-{index:04d}",
                    f"{first} {last}", [], f"{slug.replace('.', '_')}" if rng.random() < 0.35 else None)
    journey = _Journey(rng, person, seed, now)
    _, (fewest, most), last_order_age = PERSONAS[persona]
    orders = rng.randint(fewest, most)
    last_order = now - timedelta(days=rng.uniform(*last_order_age)) if orders else None
    # the journey starts early enough to sign up and fit its orders before the last one
    days = rng.uniform(60, 364) if last_order is None else \
        min((now - last_order).days + rng.uniform(25 + 10 * orders, 200), 364)
    start = now - timedelta(days=days, hours=rng.uniform(0, 23))
    for v in range(rng.randint(1, 3)):
        journey.visit(start + timedelta(days=2 * v), signed_up=False)
    if person.handle:
        _social(journey, start + timedelta(days=rng.uniform(0, 20)), follow_only=persona != "loyal")
    if person.user_id is None:
        return person
    signed_up = start + timedelta(days=rng.uniform(3, 20))
    _sign_up(journey, signed_up)
    if last_order is not None:
        _orders(journey, signed_up, last_order, orders)
        _support(journey, signed_up, last_order, persona)
    return person


def _sign_up(journey: _Journey, at: datetime) -> None:
    rng, person = journey.rng, journey.person
    country, city, phone = rng.choice(PLACES)
    email = f"{person.name.split()[0].lower().replace('é', 'e')}.{person.index}@{rng.choice(('mail.example', 'post.example'))}"
    person.emails.append(email)
    journey.send("website", "track", at, event="Signed Up", properties={"method": rng.choice(("email", "google"))},
                 **journey.who(True))
    traits = {"email": email, "name": person.name, "firstName": person.name.split()[0],
              "lastName": person.name.split()[1], "address": {"city": city, "country": country},
              "plan": rng.choice(("free", "free", "tea-club"))}
    if rng.random() < 0.4:
        traits["phone"] = "".join(str(rng.randrange(10)) if c == "#" else c for c in phone)
    context: dict[str, Any] = {"consent": {"categoryPreferences": {
        "email": rng.random() < 0.7, "sms": rng.random() < 0.3, "analytics": True}}}
    if person.handle:  # the profile form asks for a social handle: it ties the posts to the person
        context["externalIds"] = [{"type": PLATFORMS[person.index % 2][1], "id": person.handle, "collection": "users",
                                   "encoding": "none"}]
    journey.send("website", "identify", at + timedelta(minutes=1), traits=traits, context=context, **journey.who(True))
    if rng.random() < 0.2:  # a second address later, e.g. a work one: both stay identities
        work = f"{person.name.split()[1].lower()}.{person.index}@work.example"
        person.emails.append(work)
        journey.send("website", "identify", at + timedelta(days=rng.uniform(5, 60)), traits={"email": work},
                     userId=person.user_id)


def _orders(journey: _Journey, signed_up: datetime, last: datetime, count: int) -> None:
    rng, person = journey.rng, journey.person
    gap = max((last - signed_up).total_seconds() / max(count - 1, 1), 3600)
    currency = rng.choice(("USD", "USD", "EUR", "GBP"))
    for n in range(count):
        at = last - timedelta(seconds=gap * (count - 1 - n)) if count > 1 else last
        journey.visit(at - timedelta(minutes=20), signed_up=True)
        items = [(rng.choice(PRODUCTS), rng.randint(1, 3)) for _ in range(rng.randint(1, 3))]
        revenue = round(sum(price * qty for (_, _, _, price), qty in items), 2)
        order_id = f"{journey.prefix}-o{n}"
        journey.send("shop", "track", at, event="Order Completed", userId=person.user_id,
                     context={"externalIds": [{"type": "shop_customer_id", "id": f"shop-{person.user_id}",
                                               "collection": "users", "encoding": "none"}]},
                     properties={"order_id": order_id, "revenue": revenue, "currency": currency,
                                 "products": [{"product_id": sku, "name": name, "category": cat, "price": price,
                                               "quantity": qty} for (sku, name, cat, price), qty in items]})
        if rng.random() < 0.08:  # part of the order comes back
            (sku, name, cat, price), qty = items[0]
            journey.send("shop", "track", min(at + timedelta(days=rng.uniform(2, 10)), journey.now),
                         event="Order Refunded", userId=person.user_id,
                         properties={"order_id": order_id, "revenue": price * qty, "currency": currency,
                                     "products": [{"product_id": sku, "name": name, "price": price, "quantity": qty}]})


def _support(journey: _Journey, signed_up: datetime, last_order: datetime, persona: str) -> None:
    """Tickets (by whichever email the person writes from) with CSAT, and an NPS survey whose
    answer fits the path: promoters among loyal customers, detractors among the lapsed."""
    rng, person = journey.rng, journey.person
    for t in range(rng.choice((0, 0, 1, 1, 2))):
        opened = signed_up + (last_order - signed_up) * rng.random()
        ticket = f"{journey.prefix}-t{t}"
        requester = {"traits": {"email": rng.choice(person.emails)},
                     "externalIds": [{"type": "helpdesk_requester_id", "id": f"hd-{person.user_id}",
                                      "collection": "users", "encoding": "none"}]}
        channel = rng.choice(("email", "chat", "phone"))
        journey.send("helpdesk", "track", opened, event="Ticket Opened", userId=person.user_id, context=requester,
                     properties={"ticket_id": ticket, "channel": channel, "priority": rng.choice(("low", "normal", "high")),
                                 "subject": rng.choice(("Where is my order?", "Damaged mug", "Change my address"))})
        if persona == "at_risk" and t == 0:
            continue  # still open: it counts towards the churn risk
        resolved = opened + timedelta(hours=rng.uniform(2, 72))
        journey.send("helpdesk", "track", resolved, event="Ticket Resolved", userId=person.user_id, context=requester,
                     properties={"ticket_id": ticket, "channel": channel})
        journey.send("helpdesk", "track", resolved + timedelta(hours=1), event="Survey Responded",
                     userId=person.user_id, properties={"survey_id": f"csat-{ticket}", "csat": rng.randint(2, 5)})
    nps = {"loyal": (9, 10), "repeat": (6, 8), "customer": (5, 10), "at_risk": (3, 8), "churned": (0, 6)}[persona]
    if rng.random() < 0.6:
        journey.send("helpdesk", "track", last_order + (journey.now - last_order) * rng.uniform(0.05, 0.5),
                     event="Survey Responded", userId=person.user_id,
                     properties={"survey_id": "nps-yearly", "nps": rng.randint(*nps)})


def _social(journey: _Journey, at: datetime, follow_only: bool) -> None:
    """A follow and, for fans, mentions: sent by the social listener under the handle alone."""
    rng, person = journey.rng, journey.person
    platform, id_type = PLATFORMS[person.index % 2]
    social = {"anonymousId": f"{platform}:{person.handle}",
              "context": {"externalIds": [{"type": id_type, "id": person.handle, "collection": "users",
                                           "encoding": "none"}]}}
    journey.send("social", "track", at, event="Account Followed",
                 properties={"platform": platform, "handle": person.handle}, **social)
    for m in range(0 if follow_only else rng.randint(2, 5)):
        post = f"{journey.prefix}-p{m}"
        journey.send("social", "track", min(at + timedelta(days=rng.uniform(5, 200)), journey.now),
                     event="Mention Posted", properties={
                         "platform": platform, "handle": person.handle, "post_id": post,
                         "text": rng.choice(("Loving my new teapot", "Best sencha I've had", "@rapporttea thanks!"))},
                     **social)
