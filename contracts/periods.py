"""Monthly billing periods anchored on a day of the month (1-28)."""

import datetime


def add_months(day: datetime.date, months: int, anchor: int) -> datetime.date:
    index = day.year * 12 + (day.month - 1) + months
    return datetime.date(index // 12, index % 12 + 1, anchor)


def period_for(start: datetime.date, anchor: int) -> tuple[datetime.date, datetime.date, bool]:
    """The period beginning at `start`: (start, last day inclusive, is_full_month).

    A contract that starts off its anchor day gets a short first period up to the
    day before the next anchor date; every later period is a full month.
    """
    if start.day == anchor:
        end = add_months(start, 1, anchor)
        return start, end - datetime.timedelta(days=1), True
    next_anchor = datetime.date(start.year, start.month, anchor)
    if next_anchor <= start:
        next_anchor = add_months(next_anchor, 1, anchor)
    return start, next_anchor - datetime.timedelta(days=1), False
