"""Prices in cents, with a discount rule."""

PRICES = {"apple": 40, "pear": 55, "plum": 30}


def price_of(name, quantity):
    total = PRICES[name] * quantity
    if quantity > 10:
        total = total * 0.9
    return total
