"""An adversarial population with ground truth: which real person sent each event.

`population(seed)` makes households of people and the events their devices and tools
send, with the traps identity resolution must not fall into:
- a family sharing a tablet: one device id and one recycled anonymous id, every member
  logging in on it with their own user id, plus anonymous tablet browsing nobody can tell apart;
- an office sharing an email (info@...), stated beside each colleague's own user id;
- typos: an email mistyped once (a value of its own, stated with the user id) and emails in
  other case and with spaces (the same after normalisation);
- identify(null)-style values: userId null, "null", "undefined", "0", "-1", "anonymous",
  emails "test@test.com" and whitespace, beside a real identifier of the sender;
- recycled anonymous ids: one anonymous id a buggy SDK gives unrelated people.
Each person stays within the default per-profile limits (1 user id, at most 3 emails).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

JUNK_USER_IDS = [None, "null", "undefined", "0", "-1", "anonymous", "  ", "NULL"]
JUNK_EMAILS = ["test@test.com", " ", "null", "undefined"]
START = datetime(2026, 3, 1, tzinfo=timezone.utc)


@dataclass
class Population:
    events: list[dict] = field(default_factory=list)
    person: dict[str, str] = field(default_factory=dict)  # messageId -> the real person


class _Maker:
    def __init__(self, seed: int):
        self.rng, self.out, self.n = random.Random(seed), Population(), 0
        self.seed = seed

    def event(self, who: str, user_id=None, anonymous_id=None, email=None, device=None, **extra) -> None:
        self.n += 1
        message_id = f"p{self.seed}-{self.n:05d}"
        at = START + timedelta(minutes=self.rng.randrange(60 * 24 * 30), microseconds=self.n)
        event = {"type": "identify" if email is not None else "track", "event": "Seen",
                 "messageId": message_id, "timestamp": at.isoformat().replace("+00:00", "Z"),
                 "sourceId": "population", **extra}
        if user_id is not None:
            event["userId"] = user_id
        if anonymous_id is not None:
            event["anonymousId"] = anonymous_id
        if email is not None:
            event["traits"] = {"email": email}
        if device is not None:
            event.setdefault("context", {})["device"] = {"id": device}
        event["receivedAt"] = event["timestamp"]
        self.out.events.append(event)
        self.out.person[message_id] = who

    def person(self, who: str, *, shared_anonymous: str | None = None, shared_device: str | None = None,
               shared_email: str | None = None) -> None:
        """One person: their own phone (anonymous id, device), a user id, one or two emails;
        and, when given, a device, anonymous id or email they share with others."""
        rng, uid = self.rng, f"user-{who}"
        own_anon, own_device = f"anon-{who}", f"device-{who}"
        emails = [f"{who}@mail.example", f"{who}.work@corp.example"][:rng.randint(1, 2)]
        for _ in range(rng.randint(1, 3)):  # browsing before logging in
            self.event(who, anonymous_id=own_anon, device=own_device)
        self.event(who, user_id=uid, anonymous_id=own_anon, device=own_device)  # login
        for email in emails:  # identify with traits; later stated in other case and spacing
            self.event(who, user_id=uid, email=email)
            self.event(who, email=f"  {email.upper()} ")  # an email tool, email only
        if rng.random() < 0.5:  # a typo, stated once with the user id
            self.event(who, user_id=uid, email=emails[0].replace("@", "@@").replace("@@", "@g", 1))
        junk_user = rng.choice(JUNK_USER_IDS)  # identify(null)-style values beside a real one
        self.event(who, anonymous_id=own_anon, email=rng.choice(JUNK_EMAILS), userId=junk_user)
        self.event(who, user_id=rng.choice(JUNK_USER_IDS[1:]), email=emails[0])
        if shared_anonymous or shared_device:  # logging in on a shared device
            for _ in range(rng.randint(1, 3)):
                self.event(who, user_id=uid, anonymous_id=shared_anonymous, device=shared_device)
        if shared_email:
            self.event(who, user_id=uid, email=shared_email)


def population(seed: int, people: int = 6, families: int = 2, offices: int = 2,
               recycled: int = 3, guests: bool = False) -> Population:
    """`guests`: each family also has a guest with no account who identifies on the tablet by
    email only; nothing in that event tells it from a person adding an email, only the tablet
    being shared does (docs/identity.md, "Shared identifiers")."""
    make = _Maker(seed)
    for i in range(people):
        make.person(f"solo{i}")
    for f in range(families):
        tablet, anon = f"family{f}-tablet", f"family{f}-tablet-anon"
        for member in range(make.rng.randint(2, 4)):
            make.person(f"fam{f}m{member}", shared_anonymous=anon, shared_device=tablet)
        if guests:
            guest = f"fam{f}guest"
            make.event(guest, anonymous_id=f"anon-{guest}", email=f"{guest}@mail.example")
            make.event(guest, anonymous_id=anon, device=tablet, email=f"{guest}@mail.example")
        for _ in range(3):  # anonymous browsing on the tablet: nobody can tell whose
            make.event(f"fam{f}?", anonymous_id=anon, device=tablet)
    for o in range(offices):
        for colleague in range(make.rng.randint(2, 4)):
            make.person(f"office{o}c{colleague}", shared_email=f"info@office{o}.example")
    for r in range(recycled):  # a buggy SDK's one anonymous id, for unrelated people
        make.person(f"recycled{r}", shared_anonymous="00000000-sdk-default")
    make.rng.shuffle(make.out.events)
    return make.out
