"""Formats a stock report."""


def format_report(stock):
    lines = []
    for name, count in sorted(stock.items()):
        lines.append(f"{name}: {count}"
    return "\n".join(lines)
