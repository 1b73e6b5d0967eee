"""NHS number check digit (modulus 11)."""

from __future__ import annotations


def nhs_number_valid(number: str) -> bool:
    digits = number.replace(" ", "").replace("-", "")
    if len(digits) != 10 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def normalise_nhs_number(number: str) -> str:
    return number.replace(" ", "").replace("-", "")


def with_check_digit(first_nine: str) -> str | None:
    """Complete nine digits into a valid NHS number, or None if no check digit exists."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return None if check == 10 else first_nine + str(check)
