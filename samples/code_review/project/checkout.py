"""Checkout: totals a basket."""
from prices import price_of


def total(basket):
    amount = 0
    for name, quantity in basket.items():
        amount += price_of(name, quantity)
    return amount / 100


def main():
    print(total({"apple": 3, "plum": 12}))


if __name__ == "__main__":
    main()
