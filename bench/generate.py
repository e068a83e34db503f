"""Deterministic synthetic B2B SaaS product data: companies, contacts and events.

It feeds both the bundled example data and the benchmarks. The same arguments
always give byte-identical files: every draw comes from one seeded
`random.Random`, nothing depends on set or dict iteration order, gzip headers
carry no time stamp, and no clock is read.

Activity is heavy-tailed on purpose, so that product-qualified-lead rules have
something to find: a few large, engaged accounts produce most of the API calls,
most accounts stay quiet, and cancelled contacts fall silent when they cancel.

Usage::

    python bench/generate.py --contacts 20000 --events-per-contact 8 --out data
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip as gzip_module
import io
import random
import sys
import time
from array import array
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import accumulate, combinations
from math import comb
from pathlib import Path
from typing import IO, Generic, TypeVar, cast

import orjson

T = TypeVar("T")

DAY = 86_400
EVENT_WINDOW_DAYS = 90
SIGNUP_WINDOW_DAYS = 730
TRIAL_SIGNUP_DAYS = 45
FREE_MAIL_SHARE = 0.12
# Share of free-mail contacts whose company is known all the same.
FREE_MAIL_MATCHED = 0.5
# Share of business-address contacts without a company_domain cell.
MISSING_COMPANY_DOMAIN = 0.03
# Share of contacts living in their company's country.
AT_HOME = 0.85
LIVE_SHARE = 0.80
DORMANT_SHARE = 0.20
CANCELLED_ACTIVITY = 0.25
ACCOUNTLESS_ENGAGEMENT = 0.5
CONTACTS_PER_COMPANY = 8
# Contacts go to companies in proportion to employees ** SIZE_EXPONENT.
SIZE_EXPONENT = 0.85
# Chance that an account is busy, by head count (up to 200, 1000, 5000, more),
# and how much busier its contacts then are.
BUSY_EMPLOYEES = (201, 1001, 5001)
BUSY_CHANCE = (0.05, 0.25, 0.45, 0.6)
BUSY_FACTOR = 8.0
INTEGRATION_BOOST = 3
# Event times are drawn as `end - span * u ** DENSITY`: above 1 they crowd
# towards the end of a contact's active span, so recent weeks are busiest.
DENSITY = 2.2
CHUNK_LINES = 32_768

# Packed event key: time offset | contact index | kind | parameter. Sorting the
# integers sorts events by time, and 64 bits hold all of it.
TIME_SHIFT = 40
USER_SHIFT = 16
KIND_SHIFT = 13
PARAM_MASK = (1 << KIND_SHIFT) - 1
USER_MASK = (1 << (TIME_SHIFT - USER_SHIFT)) - 1
BUCKET_SHIFT = 12


class Weighted(Generic[T]):
    """A fixed set of values with weights, drawn with one random number."""

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        """Build the cumulative table.

        Args:
            pairs: `(value, weight)` pairs; weights need not sum to one.
        """
        self.values = [value for value, _ in pairs]
        self.cum = list(accumulate(weight for _, weight in pairs))
        self.total = self.cum[-1]
        self.last = len(self.cum) - 1

    def draw(self, rng: random.Random) -> T:
        """Return one value, chosen with probability proportional to its weight."""
        return self.values[bisect(self.cum, rng.random() * self.total, 0, self.last)]


@dataclass(frozen=True, slots=True)
class IndustryProfile:
    """What a company's industry implies for its name, revenue and funding."""

    suffixes: tuple[str, ...]
    revenue_per_employee: int
    funded_share: float


INDUSTRY_PROFILES = {
    "Software": IndustryProfile(("Labs", "Software", "Systems", "Cloud"), 210_000, 0.6),
    "Financial Services": IndustryProfile(("Capital", "Finance", "Pay"), 320_000, 0.45),
    "Healthcare": IndustryProfile(("Health", "Care", "Medical"), 160_000, 0.35),
    "Retail": IndustryProfile(("Goods", "Market", "Outfitters"), 120_000, 0.25),
    "Manufacturing": IndustryProfile(
        ("Industries", "Works", "Fabrication"), 190_000, 0.2
    ),
    "Education": IndustryProfile(("Learning", "Academy", "Education"), 80_000, 0.0),
    "Media": IndustryProfile(("Media", "Studios", "Press"), 150_000, 0.3),
    "Logistics": IndustryProfile(("Logistics", "Freight", "Shipping"), 170_000, 0.25),
    "Energy": IndustryProfile(("Energy", "Power", "Solar"), 420_000, 0.3),
    "Government": IndustryProfile(("Agency", "Council", "Authority"), 100_000, 0.0),
}
INDUSTRIES = Weighted(
    [
        ("Software", 24),
        ("Financial Services", 12),
        ("Healthcare", 10),
        ("Retail", 10),
        ("Manufacturing", 9),
        ("Education", 8),
        ("Media", 7),
        ("Logistics", 8),
        ("Energy", 6),
        ("Government", 6),
    ]
)
COUNTRIES = Weighted(
    [
        ("US", 38),
        ("GB", 10),
        ("DE", 8),
        ("IN", 7),
        ("FR", 6),
        ("CA", 6),
        ("BR", 5),
        ("JP", 5),
        ("NL", 4),
        ("AU", 4),
        ("ES", 4),
        ("SE", 3),
    ]
)
EMPLOYEE_BANDS = Weighted(
    [
        ((1, 10), 30),
        ((11, 50), 30),
        ((51, 200), 20),
        ((201, 1000), 12),
        ((1001, 5000), 6),
        ((5001, 50_000), 2),
    ]
)
SMALL_TIERS = Weighted([("free", 45), ("starter", 35), ("pro", 15), ("enterprise", 5)])
MID_TIERS = Weighted([("free", 20), ("starter", 30), ("pro", 35), ("enterprise", 15)])
LARGE_TIERS = Weighted([("free", 5), ("starter", 15), ("pro", 35), ("enterprise", 45)])
COMPANY_WORDS = (
    "Acme", "Apex", "Arbor", "Atlas", "Aurora", "Beacon", "Birch", "Blue", "Bright",
    "Canyon", "Cedar", "Cobalt", "Copper", "Crest", "Delta", "Ember", "Falcon", "Fern",
    "Granite", "Harbor", "Helix", "Horizon", "Iris", "Juniper", "Keystone", "Lark",
    "Lumen", "Maple", "Meridian", "Mosaic", "Nimbus", "North", "Oak", "Orbit", "Pine",
    "Pioneer", "Quartz", "Redwood", "Ridge", "River", "Sable", "Summit", "Terra",
    "Tidal", "Vector", "Willow", "Zenith", "Zephyr",
)  # fmt: skip

JOB_ROLES = Weighted(
    [
        ("Engineering", 30),
        ("Product", 16),
        ("Sales", 13),
        ("Marketing", 11),
        ("Support", 10),
        ("Operations", 9),
        ("Finance", 6),
        ("Executive", 5),
    ]
)
SENIORITIES = Weighted(
    [
        ("Individual Contributor", 55),
        ("Manager", 24),
        ("Director", 11),
        ("VP", 6),
        ("C-Level", 4),
    ]
)
EXECUTIVE_SENIORITIES = Weighted([("Director", 10), ("VP", 45), ("C-Level", 45)])
PLANS = Weighted(
    [("free", 30), ("trial", 28), ("starter", 17), ("pro", 17), ("enterprise", 8)]
)
FREE_MAIL_DOMAINS = Weighted(
    [("gmail.com", 55), ("outlook.com", 18), ("hotmail.com", 15), ("yahoo.com", 12)]
)
TAGS = ("beta", "webinar", "newsletter", "partner", "champion")
# Weight of carrying no tag, one, two or three; any set of a given size is as
# likely as another.
TAG_COUNT_WEIGHTS = (45, 30, 17, 8)
TAG_SETS = Weighted(
    [
        (";".join(tags), weight / comb(len(TAGS), size))
        for size, weight in enumerate(TAG_COUNT_WEIGHTS)
        for tags in combinations(TAGS, size)
    ]
)
FIRST_NAMES = (
    "Aaron", "Abigail", "Adam", "Aisha", "Alex", "Amara", "Ana", "Andre", "Anna",
    "Arjun", "Ben", "Carla", "Chen", "Chloe", "Daniel", "David", "Diego", "Elena",
    "Emma", "Ethan", "Fatima", "Felix", "Grace", "Hana", "Hugo", "Isabel", "Ivan",
    "James", "Jana", "Jin", "Julia", "Kai", "Karim", "Kenji", "Laura", "Leo", "Lina",
    "Lucas", "Maria", "Mateo", "Maya", "Mei", "Nadia", "Nina", "Noah", "Olivia",
    "Omar", "Paul", "Priya", "Rafael", "Ravi", "Rosa", "Sam", "Sara", "Sofia",
    "Tariq", "Thomas", "Tom", "Uma", "Victor", "Wei", "Yara", "Yusuf", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Ahmed", "Alvarez", "Andersen", "Baker", "Bauer", "Brown", "Carter",
    "Chen", "Clark", "Costa", "Cruz", "Das", "Davis", "Diaz", "Dubois", "Evans",
    "Fischer", "Garcia", "Gomez", "Gupta", "Hall", "Hansen", "Hill", "Ito", "Jensen",
    "Jones", "Khan", "Kim", "King", "Kowalski", "Kumar", "Lee", "Lopez", "Martin",
    "Meyer", "Miller", "Moreau", "Murphy", "Nakamura", "Nguyen", "Novak", "Okafor",
    "Olsen", "Park", "Patel", "Perez", "Petrov", "Rossi", "Sato", "Schmidt", "Silva",
    "Singh", "Smith", "Suzuki", "Taylor", "Tanaka", "Wagner", "Walker", "Wang",
    "Weber", "Wilson", "Wright", "Young",
)  # fmt: skip

EVENT_KINDS = (
    "api_call",
    "login",
    "report_created",
    "dashboard_shared",
    "integration_added",
    "team_invited",
    "identify",
    "group",
)
(
    API_CALL,
    LOGIN,
    REPORT_CREATED,
    DASHBOARD_SHARED,
    INTEGRATION_ADDED,
    TEAM_INVITED,
    IDENTIFY,
    GROUP,
) = range(len(EVENT_KINDS))
# Share of each kind per job role, in EVENT_KINDS order. Invitations are not in
# the mix: whether a contact invites their team is decided once per contact.
ROLE_EVENT_MIX = {
    "Engineering": (78, 7, 3, 2, 4, 0, 3, 3),
    "Product": (52, 15, 11, 7, 4, 0, 5.5, 5.5),
    "Support": (40, 22, 12, 8, 3, 0, 7.5, 7.5),
    "Operations": (36, 22, 15, 9, 4, 0, 7, 7),
    "Sales": (18, 28, 18, 14, 3, 0, 9.5, 9.5),
    "Marketing": (20, 26, 18, 14, 4, 0, 9, 9),
    "Finance": (10, 32, 26, 12, 2, 0, 9, 9),
    "Executive": (5, 36, 20, 19, 2, 0, 9, 9),
}
# How busy a contact in each job role is, relative to the others.
ROLE_ACTIVITY = {
    "Engineering": 2.0,
    "Product": 1.3,
    "Support": 1.0,
    "Operations": 0.9,
    "Sales": 0.7,
    "Marketing": 0.7,
    "Finance": 0.5,
    "Executive": 0.4,
}
# Chance that a contact with any activity invites their team, by seniority.
INVITE_CHANCE = {
    "Individual Contributor": 0.28,
    "Manager": 0.5,
    "Director": 0.5,
    "VP": 0.45,
    "C-Level": 0.4,
}
ENDPOINTS = Weighted(
    [
        ("/v1/events", 40),
        ("/v1/users", 20),
        ("/v1/reports", 14),
        ("/v1/segments", 12),
        ("/v1/export", 8),
        ("/v1/webhooks", 6),
    ]
)
STATUSES = Weighted([(200, 90), (201, 4), (400, 2), (429, 2), (401, 1), (500, 1)])
# Ordered by how often accounts adopt them.
INTEGRATIONS = (
    "slack", "github", "salesforce", "hubspot", "jira", "zapier", "google-sheets",
    "segment", "intercom", "zendesk", "stripe", "snowflake", "gitlab", "linear",
    "notion",
)  # fmt: skip
# How many integrations an account adopts, from 1 up to all 15.
INTEGRATION_COUNTS = Weighted(
    list(enumerate((18, 16, 13, 11, 9, 8, 7, 6, 4, 3, 2, 1.5, 1, 0.5, 0.5), start=1))
)
# Relative activity in each UTC hour of the day: business hours are busiest.
HOUR_WEIGHTS = (
    1, 1, 1, 1, 1, 1, 2, 3, 6, 10, 10, 10, 8, 10, 10, 10, 9, 7, 4, 3, 2, 2, 1, 1,
)  # fmt: skip


COMPANY_HEADER = (
    "domain",
    "name",
    "industry",
    "employees",
    "country",
    "annual_revenue",
    "funding_raised",
    "plan_tier",
)
CONTACT_HEADER = (
    "id",
    "email",
    "first_name",
    "last_name",
    "job_role",
    "seniority",
    "country",
    "company_domain",
    "status",
    "plan",
    "signed_up_at",
    "tags",
)


@dataclass(frozen=True, slots=True)
class Company:
    """One account, as written to companies.csv, plus what drives its activity."""

    domain: str
    name: str
    industry: str
    employees: int
    country: str
    annual_revenue: int
    funding_raised: int
    plan_tier: str
    # Not written: how many contacts it gets, how busy they are, what they connect.
    size_weight: float
    engagement: float
    integrations: tuple[int, ...]

    def row(self) -> tuple[str | int, ...]:
        """Return the companies.csv cells."""
        return (
            self.domain,
            self.name,
            self.industry,
            self.employees,
            self.country,
            self.annual_revenue,
            self.funding_raised,
            self.plan_tier,
        )


@dataclass(slots=True)
class Contact:
    """One person, as written to contacts.csv, plus the span they were active."""

    id: str
    email: str
    first_name: str
    last_name: str
    job_role: str
    seniority: str
    country: str
    company_domain: str
    status: str
    plan: str
    signed_up_at: int
    tags: str
    # Not written: the company index (-1 when no account joins), and the epoch
    # second the contact stopped using the product (as-of when still live).
    account: int
    active_until: int

    def row(self, clock: Clock) -> tuple[str, ...]:
        """Return the contacts.csv cells, with times formatted by `clock`."""
        return (
            self.id,
            self.email,
            self.first_name,
            self.last_name,
            self.job_role,
            self.seniority,
            self.country,
            self.company_domain,
            self.status,
            self.plan,
            clock.iso(self.signed_up_at),
            self.tags,
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """What one `generate` call wrote."""

    out_dir: Path
    companies: int
    contacts: int
    events: int
    events_by_kind: dict[str, int]
    files: tuple[Path, ...]
    bytes_written: int


class Clock:
    """Formats epoch seconds as ISO-8601 UTC quickly, from cached pieces."""

    def __init__(self) -> None:
        """Precompute the time-of-day suffix of every second of a day."""
        self._epoch = date(1970, 1, 1).toordinal()
        self._days: dict[int, str] = {}
        self._times = [
            f"T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
            for second in range(DAY)
        ]

    def iso(self, epoch: int) -> str:
        """Return `epoch` as `YYYY-MM-DDTHH:MM:SSZ`."""
        day, second = divmod(epoch, DAY)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = date.fromordinal(self._epoch + day).isoformat()
            self._days[day] = prefix
        return prefix + self._times[second]


def pick(rng: random.Random, values: Sequence[T]) -> T:
    """Return one of `values`, each as likely as another."""
    return values[int(rng.random() * len(values))]


def parse_as_of(value: datetime | str) -> int:
    """Return the as-of moment in epoch seconds.

    Args:
        value: An aware datetime, or an ISO-8601 string such as
            `2026-12-01T00:00:00Z`; a naive one is taken as UTC.
    """
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError as exc:
        raise ValueError(
            f"as-of must be an ISO-8601 moment such as 2026-12-01T00:00:00Z, "
            f"got {value!r}"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def slug(text: str) -> str:
    """Return `text` lower-cased with runs of non-alphanumerics as one dash."""
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    return "-".join(words)


def make_company(rng: random.Random, index: int) -> Company:
    """Draw one company; `index` makes its domain unique."""
    industry = INDUSTRIES.draw(rng)
    profile = INDUSTRY_PROFILES[industry]
    name = f"{pick(rng, COMPANY_WORDS)} {pick(rng, profile.suffixes)}"
    employees = draw_employees(rng)
    revenue = employees * profile.revenue_per_employee * rng.lognormvariate(0, 0.5)
    engagement = draw_engagement(rng, employees)
    return Company(
        domain=f"{slug(name)}-{index + 1}.com",
        name=name,
        industry=industry,
        employees=employees,
        country=COUNTRIES.draw(rng),
        annual_revenue=int(round(revenue, -3)),
        funding_raised=draw_funding(rng, profile, employees),
        plan_tier=tiers_for(employees).draw(rng),
        size_weight=employees**SIZE_EXPONENT * rng.lognormvariate(0, 0.5),
        engagement=engagement,
        integrations=draw_integrations(rng, engagement),
    )


def draw_employees(rng: random.Random) -> int:
    """Draw a head count: log-uniform within a band, most bands small."""
    low, high = EMPLOYEE_BANDS.draw(rng)
    return min(high, int(low * (high / low) ** rng.random()))


def draw_funding(rng: random.Random, profile: IndustryProfile, employees: int) -> int:
    """Draw venture funding in USD, zero for most companies."""
    if rng.random() >= profile.funded_share:
        return 0
    amount = 250_000 * employees**0.7 * rng.lognormvariate(0, 0.8)
    return max(100_000, int(round(amount, -5)))


def tiers_for(employees: int) -> Weighted[str]:
    """Return the plan tier mix for a company of this size."""
    if employees <= 50:
        return SMALL_TIERS
    if employees <= 1000:
        return MID_TIERS
    return LARGE_TIERS


def draw_engagement(rng: random.Random, employees: int) -> float:
    """Draw how busy an account's contacts are: most quiet, a few very busy.

    Large companies are more often busy, so busy accounts have many users.
    """
    chance = BUSY_CHANCE[bisect(BUSY_EMPLOYEES, employees)]
    busy = BUSY_FACTOR if rng.random() < chance else 1.0
    return busy * rng.lognormvariate(0, 0.7)


def draw_integrations(rng: random.Random, engagement: float) -> tuple[int, ...]:
    """Draw the integrations an account adopts, popular ones more often.

    Busier accounts adopt more of them.
    """
    extra = int(engagement / BUSY_FACTOR * INTEGRATION_BOOST)
    count = min(len(INTEGRATIONS), INTEGRATION_COUNTS.draw(rng) + extra)
    # Weighted sampling without replacement: keep the largest u ** (1 / weight).
    popularity = range(len(INTEGRATIONS), 0, -1)
    keys = [(rng.random() ** (1 / weight), i) for i, weight in enumerate(popularity)]
    return tuple(i for _, i in sorted(keys, reverse=True)[:count])


def assign_companies(
    rng: random.Random, companies: Sequence[Company], n: int
) -> list[int]:
    """Return a company index for each of `n` contacts.

    Every company gets at least one contact when there are enough; the rest
    go to companies in proportion to their size weight, which is heavy-tailed.
    """
    first = list(range(min(n, len(companies))))
    cum = list(accumulate(company.size_weight for company in companies))
    rest = rng.choices(range(len(companies)), cum_weights=cum, k=n - len(first))
    assigned = first + rest
    rng.shuffle(assigned)
    return assigned


def make_contact(
    rng: random.Random,
    contact_id: str,
    company_index: int,
    company: Company,
    as_of: int,
    emails: set[str],
) -> Contact:
    """Draw one contact working at `company`.

    Args:
        rng: The generator's random source.
        contact_id: The contact's id, such as `u0000123`.
        company_index: Index of `company` in the company list.
        company: The company the contact works at.
        as_of: The as-of moment in epoch seconds.
        emails: Addresses already taken; the new one is added.
    """
    first, last = pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES)
    role = JOB_ROLES.draw(rng)
    seniorities = EXECUTIVE_SENIORITIES if role == "Executive" else SENIORITIES
    plan = PLANS.draw(rng)
    signed_up = draw_signup(rng, plan, as_of)
    live = rng.random() < LIVE_SHARE
    email_domain, company_domain = draw_domains(rng, company)
    account = company_index if company_domain or email_domain == company.domain else -1
    cancelled_at = signed_up + int(rng.random() * (as_of - signed_up))
    active_until = as_of if live else cancelled_at
    return Contact(
        id=contact_id,
        email=unique_email(rng, first, last, email_domain, emails),
        first_name=first,
        last_name=last,
        job_role=role,
        seniority=seniorities.draw(rng),
        country=company.country if rng.random() < AT_HOME else COUNTRIES.draw(rng),
        company_domain=company_domain,
        status="live" if live else "cancelled",
        plan=plan,
        signed_up_at=signed_up,
        tags=TAG_SETS.draw(rng),
        account=account,
        active_until=active_until,
    )


def draw_signup(rng: random.Random, plan: str, as_of: int) -> int:
    """Draw a sign-up moment: recent for trials, within two years otherwise."""
    days = TRIAL_SIGNUP_DAYS if plan == "trial" else SIGNUP_WINDOW_DAYS
    return as_of - 1 - int(rng.random() * days * DAY)


def draw_domains(rng: random.Random, company: Company) -> tuple[str, str]:
    """Draw the email domain and the company_domain cell of a contact.

    Some contacts sign up with a free-mail address; half of those are never
    matched to their company. A few business addresses lack the company_domain
    cell too, so that joining by email domain has work to do.
    """
    if rng.random() < FREE_MAIL_SHARE:
        matched = rng.random() < FREE_MAIL_MATCHED
        return FREE_MAIL_DOMAINS.draw(rng), company.domain if matched else ""
    missing = rng.random() < MISSING_COMPANY_DOMAIN
    return company.domain, "" if missing else company.domain


def unique_email(
    rng: random.Random, first: str, last: str, domain: str, emails: set[str]
) -> str:
    """Return an address at `domain` not yet in `emails`, and add it there."""
    style = rng.random()
    if style < 0.8:
        local = f"{first}.{last}"
    elif style < 0.9:
        local = f"{first[0]}{last}"
    else:
        local = first
    local = local.lower()
    email = f"{local}@{domain}"
    suffix = 1
    while email in emails:
        suffix += 1
        email = f"{local}{suffix}@{domain}"
    emails.add(email)
    return email


def active_span(contact: Contact, start: int, as_of: int) -> tuple[int, int]:
    """Return the first and last second, relative to `start`, a contact acts in."""
    first = max(start, contact.signed_up_at) - start
    last = min(as_of, contact.active_until) - start - 1
    return first, last


def activity_weight(
    rng: random.Random, contact: Contact, companies: Sequence[Company], span: int
) -> float:
    """Return a contact's share of the event budget, before normalising.

    Args:
        rng: The generator's random source.
        contact: The contact.
        companies: All companies, indexed by `contact.account`.
        span: Seconds the contact could act in within the event window.
    """
    noise = rng.lognormvariate(0, 0.8)
    dormant = rng.random() < DORMANT_SHARE
    if span <= 0 or dormant:
        return 0.0
    account = companies[contact.account] if contact.account >= 0 else None
    engagement = account.engagement if account else ACCOUNTLESS_ENGAGEMENT
    status = 1.0 if contact.status == "live" else CANCELLED_ACTIVITY
    window = span / (EVENT_WINDOW_DAYS * DAY)
    return engagement * ROLE_ACTIVITY[contact.job_role] * noise * status * window


def allocate(rng: random.Random, weights: Sequence[float], total: int) -> list[int]:
    """Split `total` events over contacts in proportion to `weights`, exactly.

    Each contact gets the whole part of its share; the remainder is handed out
    one event at a time by weighted draws.
    """
    weight_sum = sum(weights)
    if weight_sum <= 0 or total <= 0:
        return [0] * len(weights)
    counts = [int(total * weight / weight_sum) for weight in weights]
    left = total - sum(counts)
    cum = list(accumulate(weights))
    for index in rng.choices(range(len(weights)), cum_weights=cum, k=left):
        counts[index] += 1
    return counts


class Schedule:
    """Every event of a run, as packed integer keys bucketed by time."""

    def __init__(self, rng: random.Random, start: int, as_of: int) -> None:
        """Prepare empty buckets and the lookup tables the hot loop uses.

        Args:
            rng: The generator's random source.
            start: Epoch second the event window opens.
            as_of: Epoch second the event window closes (exclusive).
        """
        self.start = start
        self.as_of = as_of
        self.buckets = [
            array("Q") for _ in range(((as_of - start) >> BUCKET_SHIFT) + 1)
        ]
        hours = Weighted(list(enumerate(HOUR_WEIGHTS)))
        self.times_of_day = [
            hours.draw(rng) * 3600 + rng.randrange(3600) for _ in range(4096)
        ]
        self.api_params = [
            ENDPOINTS.values.index(ENDPOINTS.draw(rng)) * 8
            + STATUSES.values.index(STATUSES.draw(rng))
            for _ in range(4096)
        ]
        self.mixes = {
            role: Weighted(list(enumerate(mix))) for role, mix in ROLE_EVENT_MIX.items()
        }

    def add_contact(
        self, rng: random.Random, user: int, contact: Contact, company: Company, n: int
    ) -> None:
        """Schedule `n` events for one contact within its active span.

        Args:
            rng: The generator's random source.
            user: The contact's index, packed into each key.
            contact: The contact.
            company: The contact's company, whose integrations it adds.
            n: How many events to schedule.
        """
        first, last = active_span(contact, self.start, self.as_of)
        invites = self.invitations(rng, contact, n)
        kinds = self.mixes[contact.job_role]
        draw_kind = kinds.draw
        random_, bits = rng.random, rng.getrandbits
        integrations = company.integrations
        span, offset = last - first, self.start % DAY
        times, api_params, buckets = self.times_of_day, self.api_params, self.buckets
        user_bits = user << USER_SHIFT
        # The hot path of the generator, kept in one loop on local names: a
        # call per event would cost more than everything else it does.
        for i in range(n):
            moment = last - int(span * random_() ** DENSITY)
            shifted = moment - (moment + offset) % DAY + times[bits(12)]
            if first <= shifted <= last:
                moment = shifted
            kind = TEAM_INVITED if i < invites else draw_kind(rng)
            if kind == API_CALL:
                param = api_params[bits(12)]
            elif kind == INTEGRATION_ADDED:
                param = integrations[int(random_() * len(integrations))]
            elif kind == TEAM_INVITED:
                param = bits(12)
            else:
                param = 0
                if kind == GROUP and contact.account < 0:
                    kind = LOGIN
            key = moment << TIME_SHIFT | user_bits | kind << KIND_SHIFT | param
            buckets[moment >> BUCKET_SHIFT].append(key)

    @staticmethod
    def invitations(rng: random.Random, contact: Contact, n: int) -> int:
        """Return how many of a contact's `n` events are team invitations."""
        if n == 0 or rng.random() >= INVITE_CHANCE[contact.seniority]:
            return 0
        return min(n, 1 + (n >= 25) + (n >= 100) + (n >= 400))

    def keys(self) -> Iterator[int]:
        """Yield every packed key in time order, releasing buckets as it goes."""
        for index, bucket in enumerate(self.buckets):
            self.buckets[index] = array("Q")
            yield from sorted(bucket)


class EventRenderer:
    """Turns packed event keys into Segment-spec JSON lines."""

    def __init__(
        self,
        contacts: Sequence[Contact],
        companies: Sequence[Company],
        start: int,
        clock: Clock,
    ) -> None:
        """Precompute the parts events share.

        Args:
            contacts: All contacts, indexed by the key's contact index.
            companies: All companies, indexed by `Contact.account`.
            start: Epoch second the key's time offset counts from.
            clock: Formats times.
        """
        self.contacts = contacts
        self.companies = companies
        self.start = start
        self.clock = clock
        self.api_properties: dict[int, dict[str, object]] = {
            e * 8 + s: {"endpoint": endpoint, "status": status}
            for e, endpoint in enumerate(ENDPOINTS.values)
            for s, status in enumerate(STATUSES.values)
        }
        self.integration_properties: list[dict[str, object]] = [
            {"integration": name} for name in INTEGRATIONS
        ]
        self.counts = [0] * len(EVENT_KINDS)
        self._moment = -1
        self._timestamp = ""

    def line(self, key: int, sequence: int) -> bytes:
        """Return the JSON line of one event; `sequence` makes its messageId."""
        moment = key >> TIME_SHIFT
        if moment != self._moment:
            self._moment = moment
            self._timestamp = self.clock.iso(self.start + moment)
        contact = self.contacts[key >> USER_SHIFT & USER_MASK]
        kind = key >> KIND_SHIFT & 7
        self.counts[kind] += 1
        message_id = f"m{sequence:x}"
        if kind == IDENTIFY:
            record = self.identify(contact, message_id)
        elif kind == GROUP:
            record = self.group(contact, message_id)
        else:
            record = {
                "type": "track",
                "messageId": message_id,
                "userId": contact.id,
                "event": EVENT_KINDS[kind],
                "timestamp": self._timestamp,
                "properties": self.properties(kind, key & PARAM_MASK, contact),
            }
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)

    def properties(self, kind: int, param: int, contact: Contact) -> dict[str, object]:
        """Return the properties of a track event."""
        if kind == API_CALL:
            return self.api_properties[param]
        if kind == INTEGRATION_ADDED:
            return self.integration_properties[param]
        if kind == TEAM_INVITED:
            first = FIRST_NAMES[param >> 6].lower()
            last = LAST_NAMES[param & 63].lower()
            domain = contact.email.rpartition("@")[2]
            return {"invitee_email": f"{first}.{last}@{domain}"}
        return {}

    def identify(self, contact: Contact, message_id: str) -> dict[str, object]:
        """Return an identify call carrying the contact's role and plan."""
        return {
            "type": "identify",
            "messageId": message_id,
            "userId": contact.id,
            "timestamp": self._timestamp,
            "traits": {"job_role": contact.job_role, "plan": contact.plan},
        }

    def group(self, contact: Contact, message_id: str) -> dict[str, object]:
        """Return a group call tying the contact to its account."""
        company = self.companies[contact.account]
        return {
            "type": "group",
            "messageId": message_id,
            "userId": contact.id,
            "groupId": company.domain,
            "timestamp": self._timestamp,
            "traits": {"employees": company.employees, "plan_tier": company.plan_tier},
        }


@contextlib.contextmanager
def open_output(path: Path, compress: bool) -> Iterator[IO[bytes]]:
    """Open `path` for binary writing, gzip-compressed without a time stamp."""
    with path.open("wb") as raw:
        if not compress:
            yield raw
            return
        with gzip_module.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            # A GzipFile is a binary file in all but its declared type.
            yield cast("IO[bytes]", out)


def write_csv(
    path: Path, header: Sequence[str], rows: Iterator[Sequence[object]], compress: bool
) -> None:
    """Write a CSV file with `\\n` line endings, gzip-compressed if asked."""
    with open_output(path, compress) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="", write_through=False)
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        text.flush()
        text.detach()


def write_entities(
    out: Path,
    companies: Sequence[Company],
    contacts: Sequence[Contact],
    clock: Clock,
    compress: bool,
) -> tuple[Path, Path]:
    """Write companies.csv and contacts.csv (`.csv.gz` if compressed).

    Returns:
        The two paths written.
    """
    suffix = ".csv.gz" if compress else ".csv"
    company_path, contact_path = out / f"companies{suffix}", out / f"contacts{suffix}"
    write_csv(company_path, COMPANY_HEADER, (c.row() for c in companies), compress)
    rows = (c.row(clock) for c in contacts)
    write_csv(contact_path, CONTACT_HEADER, rows, compress)
    return company_path, contact_path


def event_paths(events_dir: Path, files: int, compress: bool) -> list[Path]:
    """Return the event file paths, removing stale ones from earlier runs."""
    events_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(events_dir.glob("events-*.jsonl*")):
        stale.unlink()
    suffix = ".jsonl.gz" if compress else ".jsonl"
    return [events_dir / f"events-{i + 1:04d}{suffix}" for i in range(files)]


def write_events(
    paths: Sequence[Path], schedule: Schedule, renderer: EventRenderer, total: int
) -> None:
    """Write all scheduled events in time order, split evenly over `paths`."""
    keys = schedule.keys()
    sequence = 0
    for number, path in enumerate(paths):
        end = total * (number + 1) // len(paths)
        with open_output(path, path.suffix == ".gz") as out:
            chunk: list[bytes] = []
            append, line = chunk.append, renderer.line
            for key in keys:
                append(line(key, sequence))
                sequence += 1
                if len(chunk) >= CHUNK_LINES:
                    out.write(b"".join(chunk))
                    chunk.clear()
                if sequence >= end:
                    break
            out.write(b"".join(chunk))


def generate(
    out_dir: Path | str,
    contacts: int,
    events_per_contact: float,
    seed: int = 7,
    as_of: datetime | str = "2026-12-01T00:00:00Z",
    gzip: bool = False,
    event_files: int = 1,
    gzip_csv: bool = False,
) -> Summary:
    """Generate companies, contacts and events into `out_dir`.

    Args:
        out_dir: Directory to write into; created if missing.
        contacts: Number of contacts.
        events_per_contact: Average events per contact; the total is exact.
        seed: Seed of the one random source; same arguments, same bytes.
        as_of: The moment the data describes; events fall in the 90 days before.
        gzip: Write event files gzip-compressed (`.jsonl.gz`).
        event_files: Number of event files to split the events over.
        gzip_csv: Write `companies.csv.gz` and `contacts.csv.gz` instead.

    Returns:
        Counts of what was written, and the paths.

    Raises:
        ValueError: If a count is out of range, or `as_of` is no moment.
    """
    check_counts(contacts, events_per_contact, event_files)
    rng = random.Random(seed)
    end = parse_as_of(as_of)
    start = end - EVENT_WINDOW_DAYS * DAY
    clock = Clock()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    company_count = max(1, round(contacts / CONTACTS_PER_COMPANY))
    company_list = [make_company(rng, i) for i in range(company_count)]
    contact_list = make_contacts(rng, company_list, contacts, end)
    total = round(contacts * events_per_contact)
    schedule = build_schedule(rng, company_list, contact_list, start, end, total)

    csv_paths = write_entities(out, company_list, contact_list, clock, gzip_csv)
    paths = event_paths(out / "events", event_files, gzip)
    renderer = EventRenderer(contact_list, company_list, start, clock)
    write_events(paths, schedule, renderer, total)

    files = (*csv_paths, *paths)
    return Summary(
        out_dir=out,
        companies=len(company_list),
        contacts=len(contact_list),
        events=sum(renderer.counts),
        events_by_kind=dict(zip(EVENT_KINDS, renderer.counts, strict=True)),
        files=files,
        bytes_written=sum(path.stat().st_size for path in files),
    )


def check_counts(contacts: int, events_per_contact: float, event_files: int) -> None:
    """Raise ValueError naming the first count `generate` cannot work with."""
    if not 1 <= contacts <= USER_MASK:
        raise ValueError(f"contacts must be from 1 to {USER_MASK}, got {contacts}")
    if events_per_contact < 0:
        raise ValueError(
            f"events per contact must not be negative, got {events_per_contact}"
        )
    if event_files < 1:
        raise ValueError(f"event files must be at least 1, got {event_files}")


def make_contacts(
    rng: random.Random, companies: Sequence[Company], n: int, as_of: int
) -> list[Contact]:
    """Draw `n` contacts spread over `companies`, with ids `u` + zero-padded number."""
    width = len(str(n))
    emails: set[str] = set()
    return [
        make_contact(
            rng, f"u{number + 1:0{width}d}", index, companies[index], as_of, emails
        )
        for number, index in enumerate(assign_companies(rng, companies, n))
    ]


def build_schedule(
    rng: random.Random,
    companies: Sequence[Company],
    contacts: Sequence[Contact],
    start: int,
    as_of: int,
    total: int,
) -> Schedule:
    """Share `total` events among contacts and schedule each contact's events."""
    spans = [active_span(c, start, as_of) for c in contacts]
    weights = [
        activity_weight(rng, c, companies, last - first)
        for c, (first, last) in zip(contacts, spans, strict=True)
    ]
    counts = allocate(rng, weights, total)
    schedule = Schedule(rng, start, as_of)
    for user, (contact, n) in enumerate(zip(contacts, counts, strict=True)):
        if n:
            company = companies[max(contact.account, 0)]
            schedule.add_contact(rng, user, contact, company, n)
    return schedule


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, required=True)
    parser.add_argument("--events-per-contact", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", default="2026-12-01T00:00:00Z")
    parser.add_argument("--gzip", action="store_true", help="gzip the event files")
    parser.add_argument("--gzip-csv", action="store_true", help="gzip the CSV files")
    parser.add_argument("--event-files", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the generator from the command line and print what it wrote."""
    args = parse_args(argv)
    began = time.perf_counter()
    try:
        summary = generate(
            args.out,
            contacts=args.contacts,
            events_per_contact=args.events_per_contact,
            seed=args.seed,
            as_of=args.as_of,
            gzip=args.gzip,
            event_files=args.event_files,
            gzip_csv=args.gzip_csv,
        )
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary, time.perf_counter() - began))
    return 0


def format_summary(summary: Summary, seconds: float | None = None) -> str:
    """Return a few lines describing a generated data set.

    Args:
        summary: What `generate` returned.
        seconds: How long it took, if that should be shown.
    """
    took = "" if seconds is None else f" in {seconds:.1f}s"
    lines = [
        f"wrote {summary.out_dir}{took}: {summary.companies} companies, "
        f"{summary.contacts} contacts, {summary.events} events, "
        f"{summary.bytes_written / 1e6:.1f} MB in {len(summary.files)} files",
    ]
    for kind, count in summary.events_by_kind.items():
        share = count / summary.events if summary.events else 0.0
        lines.append(f"  {kind:<18} {count:>10} {share:6.1%}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
