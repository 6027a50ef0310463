"""The sample shop database the sqlite tool serves when the operator names none:
customers, products and orders (120,000 rows), the same on every machine
(random.Random with a fixed seed)."""
from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20240611
CUSTOMERS = 5_000
PRODUCTS = 500
ORDERS = 120_000
SAMPLE_VERSION = 1  # PRAGMA user_version of the file we build

_FIRST = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Radia", "Edsger", "Frances",
          "John", "Katherine", "Tim", "Hedy", "Guido", "Anita", "Donald", "Sophie", "Niklaus"]
_LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie", "Perlman",
         "Dijkstra", "Allen", "McCarthy", "Johnson", "Berners-Lee", "Lamarr", "van Rossum", "Borg", "Knuth",
         "Wilson", "Wirth"]
_PLACES = [("FR", "Paris"), ("FR", "Lyon"), ("DE", "Berlin"), ("DE", "Munich"), ("US", "New York"),
           ("US", "San Francisco"), ("GB", "London"), ("JP", "Tokyo"), ("BR", "São Paulo"), ("IN", "Bangalore"),
           ("CA", "Toronto"), ("NL", "Amsterdam")]
_CATEGORIES = {
    "books": ["Field Guide", "Handbook", "Atlas", "Novel", "Cookbook"],
    "electronics": ["Headphones", "Keyboard", "Monitor", "Router", "Charger"],
    "garden": ["Trowel", "Hose", "Planter", "Seed Kit", "Pruner"],
    "kitchen": ["Kettle", "Skillet", "Knife Set", "Grinder", "Teapot"],
    "outdoor": ["Tent", "Backpack", "Lantern", "Stove", "Sleeping Bag"],
}
_ADJECTIVES = ["Compact", "Classic", "Deluxe", "Eco", "Pro", "Travel", "Vintage", "Smart", "Mini", "Ultra"]
_STATUSES = ["delivered"] * 14 + ["shipped"] * 3 + ["pending"] * 2 + ["cancelled"]

SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    country TEXT NOT NULL,
    city TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price REAL NOT NULL,
    stock INTEGER NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL,
    total REAL NOT NULL,
    status TEXT NOT NULL,
    ordered_at TEXT NOT NULL
);
CREATE INDEX orders_customer ON orders(customer_id);
CREATE VIEW order_totals_by_country AS
    SELECT c.country, COUNT(*) AS orders, ROUND(SUM(o.total), 2) AS revenue
    FROM orders o JOIN customers c ON c.id = o.customer_id
    GROUP BY c.country;
"""


def build_sample_db(path: Path) -> None:
    """Write the sample database to `path` (which must not exist): one
    transaction, executemany, no journal (the file is renamed into place only
    once complete, so a crash leaves nothing usable behind). Blocking."""
    rng = random.Random(SEED)
    start = datetime(2022, 1, 1)
    customers = []
    for cid in range(1, CUSTOMERS + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        country, city = rng.choice(_PLACES)
        joined = start + timedelta(seconds=rng.randrange(0, 365 * 86400))
        email = f"{first}.{last}.{cid}@example.com".lower().replace(" ", "")
        customers.append((cid, f"{first} {last}", email, country, city, joined.strftime("%Y-%m-%dT%H:%M:%S")))
    products = []
    prices = [0.0]
    for pid in range(1, PRODUCTS + 1):
        category = rng.choice(list(_CATEGORIES))
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_CATEGORIES[category])}"
        price = round(rng.uniform(2, 400), 2)
        prices.append(price)
        products.append((pid, name, category, price, rng.randrange(0, 1000)))
    # orders, in time order: ISO strings from a running clock are cheaper than strftime per row
    orders = []
    t = 0.0
    epoch = datetime(2023, 1, 1)
    step = (2 * 365 * 86400) / ORDERS
    randrange, choice, random_ = rng.randrange, rng.choice, rng.random
    for oid in range(1, ORDERS + 1):
        t += step * 2 * random_()
        pid = randrange(1, PRODUCTS + 1)
        qty = 1 + int(random_() ** 3 * 5)
        price = prices[pid]
        orders.append((oid, randrange(1, CUSTOMERS + 1), pid, qty, price, round(price * qty, 2), choice(_STATUSES),
                       (epoch + timedelta(seconds=int(t))).strftime("%Y-%m-%dT%H:%M:%S")))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?)", customers)
        conn.executemany("INSERT INTO products VALUES (?,?,?,?,?)", products)
        conn.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?)", orders)
        conn.execute(f"PRAGMA user_version={SAMPLE_VERSION}")
        conn.execute("COMMIT")
    finally:
        conn.close()
