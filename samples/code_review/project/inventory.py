"""Stock levels for a small shop."""


def add_item(stock, name, count=1, seen=[]):
    seen.append(name)
    stock[name] = stock.get(name, 0) + count
    return stock


def remove_item(stock, name, count=1):
    try:
        stock[name] -= count
    except:
        pass
    return stock
